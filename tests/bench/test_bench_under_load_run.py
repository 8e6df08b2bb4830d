"""One small real wave of the under-load benchmark: 2 VMs of 2 disks, per disk, on a stack of
its own; the figures come from the simulator and hold what a freeze must."""

from __future__ import annotations

import pytest

from bench.under_load import benchmark

pytestmark = pytest.mark.e2e


async def test_a_small_wave_is_measured_from_the_simulators_logs() -> None:
    figures = await benchmark([2], [2], ["per-disk"], "200ms", [{}], record_figures=False,
                              command="")
    [setting] = figures["settings"]
    [cell] = setting["cells"]
    assert (cell["mode"], cell["vms"], cell["disks"]) == ("per-disk", 2, 2)
    assert (cell["guests"], cell["succeeded"], cell["frozen"]) == (2, 2, 2)
    # The guest is frozen before its disks' VolumeSnapshots are created and thawed after
    # they are cut 200 ms later: never less than the cut, and thawed after the last cut.
    assert cell["frozen_per_cut"]["median"] >= 1.0
    assert cell["frozen_ms"]["max"] >= 200
    assert 0 <= cell["thaw_after_last_cut_ms"]["median"] < cell["frozen_ms"]["median"]
    assert cell["worker_cpu_s"] > 0 and cell["wall_s"] > 0.2
    assert cell["group_cuts"] == 0 and cell["failures"] == {}
