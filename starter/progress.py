"""Live progress of a snapshot for `vmsnap snapshot create --wait`.

The display polls the workflow's `progress` query (step, volumes cut and
ready, elapsed against the failure deadline) while it awaits the result. On a
terminal it is a rich live panel; otherwise (CI logs, pipes) it prints one
plain line each time something but the clock changes, so logs stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from contracts.snapshot import SnapshotProgress, SnapshotVirtualMachineResult
from rules.durations import format_go_duration
from starter.sdk_errors import VmsnapError
from starter.sdk_handles import SnapshotHandle

POLL_INTERVAL = 0.5


def counts(progress: SnapshotProgress) -> tuple[int, int, int]:
    """(volumes, cut, ready); a ready volume was cut too."""
    volumes = progress.volumes
    cut = sum(1 for v in volumes if v.state in ("cut", "ready") or v.creation_time is not None)
    ready = sum(1 for v in volumes if v.ready_to_use or v.state == "ready")
    return len(volumes), cut, ready


def deadline_text(progress: SnapshotProgress) -> str:
    if progress.failure_deadline_seconds is None:
        return "no deadline"
    deadline = format_go_duration(progress.failure_deadline_seconds)
    if progress.time_left_seconds is None:
        return f"deadline {deadline}"
    return f"{progress.time_left_seconds:.0f}s left of {deadline}"


def status_key(progress: SnapshotProgress) -> tuple[object, ...]:
    """What a plain line reports; a new line only when it changes (not the clock)."""
    return (progress.step, progress.phase, progress.frozen, counts(progress), progress.error)


def plain_line(progress: SnapshotProgress) -> str:
    """One log line: `[  1.2s] cut: 2/3 cut, 0/3 ready, frozen, 298s left of 5m0s`."""
    total, cut, ready = counts(progress)
    parts = [f"[{progress.elapsed_seconds:6.1f}s] {progress.step}"]
    detail = [f"{cut}/{total} cut, {ready}/{total} ready" if total else "volumes not chosen yet"]
    if progress.frozen:
        detail.append("guest frozen")
    if progress.phase == "InProgress":
        detail.append(deadline_text(progress))
    else:
        detail.append(f"phase {progress.phase}")
    if progress.error:
        detail.append(f"error: {progress.error}")
    return f"{parts[0]}: {', '.join(detail)}"


def panel(progress: SnapshotProgress | None, note: str | None = None) -> RenderableType:
    """The live display: the step, a bar per count, and the deadline as a bar."""
    if progress is None:
        return Text(note or "starting...", style="dim")
    total, cut, ready = counts(progress)
    title = Text.assemble(
        ("snapshot ", "bold"), f"{progress.namespace}/{progress.name}",
        " of VM ", (progress.vm, "bold"), "  step ", (progress.step, "cyan bold"),
        ("  guest frozen" if progress.frozen else "", "yellow bold"))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=9)
    grid.add_column(width=30)
    grid.add_column()
    grid.add_row("cut", ProgressBar(total=max(total, 1), completed=cut, width=30),
                 f"{cut}/{total}")
    grid.add_row("ready", ProgressBar(total=max(total, 1), completed=ready, width=30),
                 f"{ready}/{total}")
    elapsed = progress.elapsed_seconds
    if progress.failure_deadline_seconds:
        bar = ProgressBar(total=progress.failure_deadline_seconds,
                          completed=min(elapsed, progress.failure_deadline_seconds), width=30,
                          complete_style="yellow")
        grid.add_row("deadline", bar, f"{elapsed:.1f}s, {deadline_text(progress)}")
    else:
        grid.add_row("elapsed", Text(""), f"{elapsed:.1f}s (no deadline)")
    parts: list[RenderableType] = [title, grid]
    if progress.error:
        parts.append(Text(f"error: {progress.error}", style="red"))
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)


async def follow_snapshot(
    handle: SnapshotHandle,
    console: Console,
    *,
    live: bool | None = None,
    interval: float = POLL_INTERVAL,
) -> SnapshotVirtualMachineResult:
    """Show progress until the snapshot ends; its result, or SnapshotFailed."""
    live = console.is_terminal if live is None else live
    result = asyncio.create_task(handle.result())
    started = time.monotonic()
    shown: tuple[object, ...] | None = None
    waiting_said = False
    try:
        with _live_display(console, live) as display:
            while not result.done():
                progress, note = None, None
                try:
                    progress = await handle.progress()
                except VmsnapError:
                    if time.monotonic() - started > 2 * interval:
                        note = "waiting for a worker to pick the snapshot up ..."
                if display is not None:
                    display.update(panel(progress, note))
                elif progress is not None and status_key(progress) != shown:
                    shown = status_key(progress)
                    console.print(plain_line(progress), highlight=False)
                elif progress is None and note and not waiting_said:
                    waiting_said = True
                    console.print(note, highlight=False)
                await asyncio.wait([result], timeout=interval)
            if display is not None:
                with contextlib.suppress(VmsnapError):
                    display.update(panel(await handle.progress()))
        return await result
    finally:
        if not result.done():
            result.cancel()
            with contextlib.suppress(asyncio.CancelledError, VmsnapError):
                await result


@contextlib.contextmanager
def _live_display(console: Console, live: bool) -> Iterator[Live | None]:
    if not live:
        yield None
        return
    with Live(panel(None), console=console, refresh_per_second=8, transient=False) as display:
        yield display
