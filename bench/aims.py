"""The aims the benchmarks are held to, in one place for the benchmarks and the report.

Why apart: the report states each aim and computes whether the stored figures meet it;
the benchmarks print the same aims beside their live figures. Neither should carry a
copy that can drift from the other.
"""

from __future__ import annotations

FREEZE_AIM_DISKS = 8  # the disk count the freeze-window aim is stated for
FREEZE_AIM_RATIO = 1.25  # window at most this many times the slowest disk's cut
TAKEOVER_AIM_SECONDS = 2.0  # a worker killed mid-freeze: at most this much frozen past the cut
ORCHESTRATION_AIM_RATIO = 1.5  # vmsnap's wave at most this many times the bare wave
UNDER_LOAD_AIM_RATIO = 1.25  # p95 of frozen ÷ the class's cut latency, in the cells below
UNDER_LOAD_AIM_CELLS = (("per-disk", 50, 8), ("group", 200, 8))  # (mode, VMs, disks)
UNDER_LOAD_AIM_THAW_MS = 50.0  # p95 of the thaw after the last cut, in every cell


def request_budget(disks: int) -> int:
    """At most 8 + 3 x disks Kubernetes requests per snapshot."""
    return 8 + 3 * disks


def history_budget(disks: int) -> int:
    """At most 30 + 6 x disks events in one snapshot workflow's history."""
    return 30 + 6 * disks


def within(value: float, aim: float, places: int = 2) -> bool:
    """Whether VALUE, as the report shows it (rounded to PLACES), is at most AIM: a figure
    shown as 1.50 against an aim of 1.5 is within it, whatever its third decimal."""
    return round(value, places) <= aim
