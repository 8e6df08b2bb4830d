"""What `--wait` shows for a snapshot's `progress` answer: plain lines and the live panel."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from contracts.snapshot import SnapshotProgress, VolumeProgress
from starter.progress import counts, panel, plain_line, status_key

CUT = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def progress(states: list[str], **fields: object) -> SnapshotProgress:
    volumes = [VolumeProgress(volume_name=f"disk{i}", volume_snapshot=f"s-disk{i}",
                              state=state,  # type: ignore[arg-type]
                              creation_time=CUT if state in ("cut", "ready") else None,
                              ready_to_use=state == "ready")
               for i, state in enumerate(states)]
    base: dict[str, object] = dict(
        namespace="demo", name="s", vm="web-1", step="cut", phase="InProgress", frozen=True,
        indications=["Online", "GuestAgent"], volumes=volumes, elapsed_seconds=1.25,
        failure_deadline_seconds=300.0, time_left_seconds=298.75)
    base.update(fields)
    return SnapshotProgress.model_validate(base)


def test_counts_cut_and_ready() -> None:
    assert counts(progress(["creating", "cut", "ready"])) == (3, 2, 1)


def test_plain_line_during_the_cut() -> None:
    line = plain_line(progress(["creating", "cut", "cut"]))
    assert line == "[   1.2s] cut: 2/3 cut, 0/3 ready, guest frozen, 299s left of 5m0s"


def test_plain_line_waiting_for_readiness_and_without_deadline() -> None:
    line = plain_line(progress(["ready", "cut"], step="ready", phase="Succeeded", frozen=False,
                               failure_deadline_seconds=None, time_left_seconds=None))
    assert line == "[   1.2s] ready: 2/2 cut, 1/2 ready, phase Succeeded"


def test_plain_line_before_volumes_are_chosen_and_on_error() -> None:
    line = plain_line(progress([], step="compensating", phase="Failed", frozen=False,
                               error="snapshot deadline exceeded (5m0s)"))
    assert line == ("[   1.2s] compensating: volumes not chosen yet, phase Failed, "
                    "error: snapshot deadline exceeded (5m0s)")


def test_a_new_line_only_when_more_than_the_clock_changes() -> None:
    first = progress(["creating"])
    later = progress(["creating"], elapsed_seconds=9.0, time_left_seconds=291.0)
    cut = progress(["cut"], elapsed_seconds=9.0)
    assert status_key(first) == status_key(later)
    assert status_key(first) != status_key(cut)


def test_the_live_panel_shows_step_counts_and_deadline() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=100, force_terminal=False).print(
        panel(progress(["cut", "ready", "creating"])))
    text = buffer.getvalue()
    assert "snapshot demo/s of VM web-1" in text and "step cut" in text
    assert "guest frozen" in text
    assert "2/3" in text and "1/3" in text
    assert "1.2s, 299s left of 5m0s" in text


def test_the_panel_before_any_answer_says_why() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=80).print(panel(None, "waiting for a worker"))
    assert buffer.getvalue().strip() == "waiting for a worker"
