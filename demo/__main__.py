"""`make demo`: the embedded stack and the main job, told as a short story.

Starts the Temporal dev server (SQLite file and UI), the cluster simulator on
the sample seed, a vmsnap worker and the web console (`vmsnap console`), as real
processes; then snapshots the
sample VMs through Temporal exactly as a user would from the Temporal CLI,
and prints what happened. With a terminal attached it keeps the stack up for
exploring (Temporal UI, kubectl) until Ctrl-C; every child is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from demo.story import CLUSTER_ID, run_story
from starter.codec import CodecSettings
from starter.local_stack import (
    REPO_ROOT,
    ManagedProcess,
    StackError,
    port_open,
    start_console,
    start_dev_server,
    start_simulator,
    start_worker,
)

# Piped output (CI, logs) gets wide lines instead of 80-column wrapping.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def _preferred(port: int) -> int | None:
    """The usual port when it is free, else let the stack pick one."""
    return None if port_open("127.0.0.1", port) else port


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "demo")
    parser.add_argument(
        "--keep-running",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty(),
        help="keep the stack up after the story until Ctrl-C (default: when run from a terminal)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.environ["VMSNAP_CLUSTER_ID"] = CLUSTER_ID  # the worker's and every CLI call's
    state: Path = args.state_dir
    state.mkdir(parents=True, exist_ok=True)
    children: list[Any] = []

    def stop_all(*_: object) -> None:
        for child in reversed(children):
            child.stop()
        children.clear()

    # Ctrl-C and SIGTERM both stop the stack; SIGINT explicitly, since a shell that starts
    # the demo in the background hands it SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with console.status("starting the Temporal dev server"):
            temporal = start_dev_server(
                state,
                port=_preferred(7233),
                ui_port=_preferred(8233),
                db_file=state / "temporal.db",
            )
        children.append(temporal)
        console.print(
            f"[green]✓[/] Temporal dev server at {temporal.address}, UI {temporal.ui_url}"
        )
        with console.status("starting the cluster simulator"):
            sim = start_simulator(state, [REPO_ROOT / "simulator" / "seeds" / "demo.yaml"])
        children.append(sim)
        console.print(f"[green]✓[/] cluster simulator at {sim.url}")
        console.print(f"    kubectl --kubeconfig {sim.kubeconfig} get vms -A")
        with console.status("starting the vmsnap worker"):
            worker: ManagedProcess = start_worker(state, temporal.address, sim.kubeconfig,
                                                  task_queue=None)
        children.append(worker)
        console.print(f"[green]✓[/] vmsnap worker (pid {worker.pid}), logs in {worker.log_path}")
        with console.status("starting the vmsnap console"):
            web = start_console(state, temporal.address, sim.kubeconfig,
                                port=_preferred(8090), task_queue=None,
                                temporal_ui=temporal.ui_url,
                                options=["--allow-actions"])
        children.append(web)
        console.print(f"[green]✓[/] vmsnap console at {web.url} (actions enabled, loopback "
                      f"only), beside the Temporal UI at {temporal.ui_url}")
        if CodecSettings.from_env() is None:
            console.print("[yellow]![/] payload encryption is off: this demo's Temporal history "
                          "holds inputs, results and failures in clear (docs/security.md)")
        console.print()
        ok = asyncio.run(run_story(console, temporal.address, sim.kubeconfig, temporal.ui_url))
        if args.keep_running:
            console.print(f"\nThe stack stays up: explore it (console {web.url}, Temporal UI "
                          f"{temporal.ui_url}), then press Ctrl-C to stop everything.")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0 if ok else 1
    except StackError as error:
        console.print(f"[red]✗ {error}[/]")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        with console.status("stopping the worker, the simulator and the dev server"):
            stop_all()
        console.print("stopped.")


if __name__ == "__main__":
    sys.exit(main())
