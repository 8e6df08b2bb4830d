"""The freeze window of an 8-disk snapshot (200 ms cut each): thawed right after the last cut.

A few snapshots, each thawed right after its last cut and far below the 1.6 s
a one-by-one approach would take. The benchmark with the figures of record is
`python -m bench.freeze_window --runs 20` (docs/benchmarks.md).
"""

from __future__ import annotations

import pytest

from bench.freeze_window import CUT_SECONDS, DISKS, SEED, measure, summary
from tests.e2e.conftest import StartStack


@pytest.mark.e2e
async def test_eight_disks_are_frozen_only_as_long_as_the_storage_needs(
    start_stack: StartStack,
) -> None:
    stack = start_stack(SEED)
    try:
        runs = await measure(stack, 3, "window")
    finally:
        stack.worker.stop()
        stack.sim.process.stop()
    print(summary(runs))
    for run in runs:
        assert run.window_ms >= run.slowest_cut_ms >= CUT_SECONDS * 1000
        assert run.window_ms < DISKS * CUT_SECONDS * 1000  # well under one-by-one
        assert run.window_ms < 2 * run.slowest_cut_ms  # the storage, not us, sets the window
        assert 0 <= run.after_last_cut_ms < 250  # thawed right after the last cut
        assert run.reported_ms is not None and run.reported_ms >= run.window_ms - 5
        assert run.history_events < 100
