"""The freeze window of an 8-disk snapshot (200 ms cut each): thawed right after the last cut.

A few snapshots, each thawed right after its last cut and far below the 1.6 s
a one-by-one approach would take, with no more Kubernetes requests and history
events than today (see the guards' comment for the aims of issue 6). The benchmark with
the figures of record is `python -m bench.freeze_window` (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.freeze_window import BenchStack, snapshot_once, summary
from tests.e2e.conftest import StartStack

SEED = Path(__file__).resolve().parent / "snapshot_seeds" / "snapshot.yaml"
DISKS, CUT_MS = 8, 200


@pytest.mark.e2e
async def test_eight_disks_are_frozen_only_as_long_as_the_storage_needs(
    start_stack: StartStack,
) -> None:
    stack = start_stack(SEED)
    bench = BenchStack(stack.sim, stack.client, stack.task_queue)
    try:
        runs = [await snapshot_once(bench, DISKS, f"window-{i}", vm="eight", namespace="snap")
                for i in range(3)]
    finally:
        stack.worker.stop()
        stack.sim.process.stop()
    print(summary(runs))
    for run in runs:
        assert run.succeeded
        assert run.window_ms is not None and run.after_last_cut_ms is not None
        assert run.window_ms >= run.slowest_cut_ms >= CUT_MS
        assert run.window_ms < DISKS * CUT_MS  # well under one-by-one
        assert run.window_ms < 2 * run.slowest_cut_ms  # the storage, not us, sets the window
        assert 0 <= run.after_last_cut_ms < 250  # thawed right after the last cut
        assert run.reported_ms is not None and run.reported_ms >= run.window_ms - 5
        # Regression guards at today's figures (39 requests, 40 when the watch is re-opened;
        # was 60; 79 events): the aims of
        # issue 6 (8 + 3 x disks = 32 requests, 30 + 6 x disks = 78 events) are not met yet.
        assert run.requests <= 40, " ".join(f"{k}={v}" for k, v in run.by_kind.items())
        assert run.by_kind["list persistentvolumeclaims"] == 3
        assert "get persistentvolumeclaims" not in run.by_kind
        assert run.history_events <= 79
