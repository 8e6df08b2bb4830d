"""The under-load benchmark's figures: per guest from the simulator's logs, then per wave.

Why apart from the harness: these are pure functions of what the simulator recorded (its
freeze log entries, each VolumeSnapshot's and VolumeGroupSnapshot's `creationTime`) and
of what the client saw (each snapshot's outcome, the wave's wall time, the worker's CPU),
so they are tested without a stack, and the harness only collects their inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.orchestration import percentile
from rules.group_plan import GroupSnapshotMode

# Each mode and the `group_snapshot` input it sends.
MODES: dict[str, GroupSnapshotMode] = {"per-disk": "never", "group": "auto"}
FAILURE_REASONS_KEPT = 3  # the commonest failure messages a cell keeps
FAILURE_MESSAGE_CHARS = 160


def when(text: str) -> datetime:
    """An RFC 3339 instant as the simulator writes it (`Z` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


@dataclass(frozen=True)
class Guest:
    """One VM of one wave, as the simulator saw it."""

    vm: str
    failure: str | None  # None: the snapshot Succeeded
    frozen_ms: float | None  # freeze call to unfreeze call, summed over its freezes; None: never
    freezes: int
    thaw_after_last_cut_ms: float | None  # thawed at - the last cut of its disks
    group_cut: bool  # its disks were cut by a VolumeGroupSnapshot
    # The storage's own time for its slowest cut: creationTime - the arrival of the create
    # (a VolumeSnapshot's or the group's) in the simulator's request log; None: unknown.
    storage_cut_ms: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None


def storage_cut_ms(cuts: Iterable[tuple[str, str | None]]) -> float | None:
    """The slowest of (creationTime, arrival of its create) pairs: what the storage itself
    took for a guest's cut, whatever the worker did before or after; None when no create's
    arrival is known."""
    own = [_ms(when(cut), when(arrived)) for cut, arrived in cuts if arrived]
    return max(own) if own else None


def guest_figures(vm: str, namespace: str, freeze_log: Iterable[Mapping[str, Any]],
                  cuts: Sequence[str], group_cuts: Sequence[str],
                  failure: str | None, storage_ms: float | None = None) -> Guest:
    """The figures of `vm` from the wave's slice of the freeze log and the creationTimes
    of its snapshot's VolumeSnapshots (`cuts`) and VolumeGroupSnapshots (`group_cuts`);
    `storage_ms` is its storage's own cut time (`storage_cut_ms`).

    A guest frozen more than once in the wave (a retried cut) counts every window; its
    thaw is its last one. A guest still frozen when the wave ended has no frozen time
    and fails with that reason, whatever the workflow said."""
    mine = [entry for entry in freeze_log
            if entry.get("vmi") == vm and entry.get("namespace", namespace) == namespace]
    if any(not entry.get("thawed_at") for entry in mine):
        return Guest(vm, failure or "still frozen when the wave ended", None, len(mine),
                     None, bool(group_cuts), storage_ms)
    frozen_ms = (sum(_ms(when(e["thawed_at"]), when(e["frozen_at"])) for e in mine)
                 if mine else None)
    after_ms = None
    all_cuts = [when(cut) for cut in (*cuts, *group_cuts)]
    if mine and all_cuts:
        thawed = max(when(entry["thawed_at"]) for entry in mine)
        after_ms = _ms(thawed, max(all_cuts))
    return Guest(vm, failure, frozen_ms, len(mine), after_ms, bool(group_cuts), storage_ms)


def spread(values: Sequence[float], places: int = 1) -> dict[str, float] | None:
    """Median, p95 and max of `values`, rounded; None when there are none."""
    if not values:
        return None
    return {"median": round(percentile(values, 50), places),
            "p95": round(percentile(values, 95), places),
            "max": round(max(values), places)}


def failure_reasons(guests: Iterable[Guest]) -> dict[str, int]:
    """The commonest failure messages (shortened) and how many guests each."""
    counted = Counter((g.failure or "")[:FAILURE_MESSAGE_CHARS] for g in guests if g.failure)
    return dict(counted.most_common(FAILURE_REASONS_KEPT))


@dataclass(frozen=True)
class Wave:
    """N VMs of D disks snapshotted at once in one mode, and what it cost."""

    mode: str
    vms: int
    disks: int
    guests: tuple[Guest, ...]
    wall_s: float  # first start to last result, as the client saw it
    worker_cpu_s: float  # the worker's user + system CPU over the wave


def cell_figures(wave: Wave, cut_ms: float) -> dict[str, Any]:
    """What the report keeps of one wave: counts, and median / p95 / max of the frozen
    time, frozen ÷ the class's cut latency, the storage's own cut time, frozen ÷ that
    (what the aim judges: the simulator shares the machine, so its cuts may come late,
    and that lateness is the storage's, not the worker's), and the thaw after the last
    cut."""
    if cut_ms <= 0:
        raise ValueError(f"the cut latency must be positive to compare with, not {cut_ms} ms")
    frozen = [g.frozen_ms for g in wave.guests if g.frozen_ms is not None]
    after = [g.thaw_after_last_cut_ms for g in wave.guests
             if g.thaw_after_last_cut_ms is not None]
    succeeded = sum(1 for g in wave.guests if g.succeeded)
    return {
        "mode": wave.mode, "vms": wave.vms, "disks": wave.disks,
        "guests": len(wave.guests), "succeeded": succeeded, "frozen": len(frozen),
        "group_cuts": sum(1 for g in wave.guests if g.group_cut),
        "wall_s": round(wave.wall_s, 2),
        "worker_cpu_s": round(wave.worker_cpu_s, 2),
        "worker_cpu_per_snapshot_ms": round(wave.worker_cpu_s * 1000 / len(wave.guests), 1)
        if wave.guests else None,
        "frozen_ms": spread(frozen),
        "frozen_per_cut": spread([f / cut_ms for f in frozen], places=3),
        "storage_cut_ms": spread([g.storage_cut_ms for g in wave.guests
                                  if g.storage_cut_ms is not None]),
        "frozen_per_storage_cut": spread(
            [g.frozen_ms / g.storage_cut_ms for g in wave.guests
             if g.frozen_ms is not None and g.storage_cut_ms]
            , places=3),
        "thaw_after_last_cut_ms": spread(after),
        "failures": failure_reasons(wave.guests),
    }


def describe(cell: Mapping[str, Any]) -> str:
    """One line per wave for the terminal."""
    def three(figures: Mapping[str, float] | None, unit: str, form: str = ".0f") -> str:
        if figures is None:
            return "-"
        return "/".join(format(figures[k], form) for k in ("median", "p95", "max")) + unit

    failures = "; ".join(f"{n} x {reason}" for reason, n in cell["failures"].items())
    group = f", {cell['group_cuts']} cut as a group" if cell["mode"] == "group" else ""
    return (f"  {cell['mode']:8} {cell['vms']:3} x {cell['disks']}: {cell['succeeded']}/"
            f"{cell['guests']} Succeeded{group}, wall {cell['wall_s']:.1f} s; median/p95/max "
            f"frozen {three(cell['frozen_ms'], ' ms')}, frozen/cut "
            f"{three(cell['frozen_per_cut'], '', '.2f')}, storage's own cut "
            f"{three(cell.get('storage_cut_ms'), ' ms')}, frozen/own cut "
            f"{three(cell.get('frozen_per_storage_cut'), '', '.2f')}, thaw after the last cut "
            f"{three(cell['thaw_after_last_cut_ms'], ' ms')}; worker CPU "
            f"{cell['worker_cpu_per_snapshot_ms'] or 0:.0f} ms per snapshot"
            + (f"\n    failed: {failures}" if failures else ""))
