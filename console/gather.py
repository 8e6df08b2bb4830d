"""What each page shows, read through the SDK: the records for the snapshots, Temporal
for the schedules and the runs, the cluster's VMs for the list. Nothing here writes."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from console.protection import (
    Judgement,
    count_by,
    freeze_histogram,
    judge,
    matches_search,
    schedule_period,
)
from console.settings import ConsoleSettings
from rules.durations import parse_duration
from starter.cli_selectors import selector_matches
from starter.sdk import (
    RunInfo,
    RunState,
    ScheduleInfo,
    SnapshotInfo,
    VmInfo,
    VmsnapClient,
    VmsnapError,
)

RECENT_RUNS = 20
FAILURE_WINDOW = timedelta(days=1)
MAX_FAILURE_REASONS = 20


def usable(snapshot: SnapshotInfo) -> bool:
    """What a restore or a clone can use: Succeeded and ready."""
    return snapshot.phase == "Succeeded" and snapshot.ready_to_use


def taken_at(snapshot: SnapshotInfo) -> datetime | None:
    return snapshot.creation_time or snapshot.created


def covers(schedule: ScheduleInfo, vm: VmInfo) -> bool:
    """Whether the schedule's runs snapshot this VM (by name, or by its label selector now)."""
    if schedule.namespace != vm.namespace:
        return False
    if schedule.vm is not None:
        return schedule.vm == vm.name
    return schedule.selector is not None and selector_matches(schedule.selector, vm.labels)


def period_of(schedule: ScheduleInfo) -> float | None:
    return schedule_period(schedule.timing.every if schedule.timing else None,
                           schedule.next_runs)


def grace_of(schedule: ScheduleInfo) -> float:
    """How late a run's snapshot may be: its jitter and its failure deadline."""
    jitter = schedule.timing.jitter if schedule.timing else 0.0
    try:
        return jitter + parse_duration(schedule.failure_deadline)
    except ValueError:
        return jitter


def protection_of(vm: VmInfo, snapshots: list[SnapshotInfo], schedules: list[ScheduleInfo],
                  settings: ConsoleSettings, now: datetime) -> Judgement:
    """Judged by the most frequent covering schedule that is not paused (a paused one
    takes no snapshot), else by the console's `fresh_for`."""
    last = max((t for s in snapshots if usable(s) and (t := taken_at(s))), default=None)
    active = [(p, s) for s in schedules if not s.paused and (p := period_of(s))]
    if active:
        period, schedule = min(active, key=lambda pair: pair[0])
        return judge(last, now, period, grace_of(schedule), settings.fresh_for,
                     f"schedule {schedule.name}")
    return judge(last, now, None, 0.0, settings.fresh_for, "no active schedule")


@dataclass
class VmRow:
    vm: VmInfo
    last: SnapshotInfo | None
    snapshots: int
    schedules: list[ScheduleInfo]
    protection: Judgement
    running: int


@dataclass
class VmList:
    namespaces: list[str]
    namespace: str | None
    rows: list[VmRow]
    total: int


async def namespaces(client: VmsnapClient, settings: ConsoleSettings) -> list[str]:
    """The namespaces with VMs the console may show (its scope's, when it has one)."""
    if not settings.scope.everything:
        return settings.scope.listed()
    return sorted({vm.namespace for vm in await client.list_vms(None)})


async def vm_list(client: VmsnapClient, settings: ConsoleSettings, namespace: str | None,
                  search: str = "", protection: str = "", status: str = "") -> VmList:
    known = await namespaces(client, settings)
    chosen = namespace if namespace in known else (known[0] if known else None)
    if chosen is None:
        return VmList(known, None, [], 0)
    vms, snapshots, schedules, runs = await asyncio.gather(
        client.list_vms(chosen), client.list_snapshots(chosen), _schedules(client, chosen),
        _runs(client, chosen, limit=200))
    now = datetime.now(UTC)
    rows = []
    for vm in vms:
        own = [s for s in snapshots if s.vm == vm.name]
        covering = [s for s in schedules if covers(s, vm)]
        last = max(own, key=lambda s: taken_at(s) or datetime.min.replace(tzinfo=UTC),
                   default=None)
        rows.append(VmRow(vm, last, len(own), covering,
                          protection_of(vm, own, covering, settings, now),
                          sum(1 for r in runs if r.vm == vm.name and r.status == "RUNNING")))
    shown = [r for r in rows
             if matches_search(search, r.vm.name, r.vm.status, *r.vm.labels.values(),
                               *(s.name for s in r.schedules))
             and (not protection or r.protection.state == protection)
             and (not status or (r.vm.status or "").lower() == status.lower())]
    return VmList(known, chosen, shown, len(rows))


async def _schedules(client: VmsnapClient, namespace: str) -> list[ScheduleInfo]:
    """The namespace's schedules; none when Temporal cannot list them (the page says so
    through the runs, which fail the same way)."""
    with contextlib.suppress(VmsnapError):
        return await client.list_schedules(namespace)
    return []


async def _runs(client: VmsnapClient, namespace: str, vm: str | None = None,
                limit: int = RECENT_RUNS) -> list[RunInfo]:
    with contextlib.suppress(VmsnapError):
        return await client.list_runs(namespace, vm=vm, limit=limit)
    return []


@dataclass
class VmPage:
    vm: VmInfo
    snapshots: list[SnapshotInfo]
    schedules: list[ScheduleInfo]
    protection: Judgement
    running: list[RunState]
    recent: list[RunInfo]
    sizes: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Each snapshot's VolumeSnapshots and their restore sizes, by snapshot name."""


async def vm_page(client: VmsnapClient, settings: ConsoleSettings, namespace: str,
                  name: str) -> VmPage | None:
    vms = await client.list_vms(namespace)
    vm = next((v for v in vms if v.name == name), None)
    if vm is None:
        return None
    snapshots, schedules, runs = await asyncio.gather(
        client.list_snapshots(namespace, vm=name), _schedules(client, namespace),
        _runs(client, namespace, vm=name))
    snapshots.sort(key=lambda s: taken_at(s) or datetime.min.replace(tzinfo=UTC), reverse=True)
    for snapshot in snapshots:
        if snapshot.in_flight:  # its live progress, as `vmsnap snapshot get` shows it
            with contextlib.suppress(VmsnapError):
                snapshot.progress = (await client.get_snapshot(namespace, snapshot.name)).progress
    sizes = {}
    for snapshot in snapshots:
        with contextlib.suppress(VmsnapError):
            sizes[snapshot.name] = await client.snapshot_sizes(snapshot)
    covering = [s for s in schedules if covers(s, vm)]
    return VmPage(vm, snapshots, covering,
                  protection_of(vm, snapshots, covering, settings, datetime.now(UTC)),
                  await running_states(client, runs), runs, sizes)


async def running_states(client: VmsnapClient, runs: list[RunInfo]) -> list[RunState]:
    """The live state of the runs still running (their progress queries)."""
    states = []
    for run in runs:
        if run.status == "RUNNING" and run.operation in ("snapshot", "delete", "restore",
                                                         "clone"):
            with contextlib.suppress(VmsnapError):
                states.append(await client.run_state(run.operation, run.workflow_id))
    return states


@dataclass
class Failure:
    when: datetime | None
    what: str
    namespace: str
    subject: str
    reason: str
    workflow_id: str | None = None
    run_id: str | None = None


@dataclass
class Fleet:
    namespaces: list[str]
    vms: int
    snapshots: int
    phases: list[tuple[str, int]]
    protection: list[tuple[str, int]]
    failures: list[Failure]
    freeze: list[tuple[str, int]]
    frozen: int


async def fleet(client: VmsnapClient, settings: ConsoleSettings) -> Fleet:
    known = await namespaces(client, settings)
    now = datetime.now(UTC)
    since = now - FAILURE_WINDOW
    all_snapshots: list[SnapshotInfo] = []
    judgements: list[str] = []
    failures: list[Failure] = []
    vm_count = 0
    for namespace in known:
        vms, snapshots, schedules, runs = await asyncio.gather(
            client.list_vms(namespace), client.list_snapshots(namespace),
            _schedules(client, namespace), _runs(client, namespace, limit=200))
        vm_count += len(vms)
        all_snapshots += snapshots
        for vm in vms:
            own = [s for s in snapshots if s.vm == vm.name]
            judgements.append(protection_of(
                vm, own, [s for s in schedules if covers(s, vm)], settings, now).state)
        failures += [Failure(s.created, "snapshot", namespace, s.name, s.error or "(no reason)",
                             s.workflow_id)
                     for s in snapshots
                     if s.phase == "Failed" and s.created is not None and s.created >= since]
        failures += await _failed_runs(client, runs, since)
    failures.sort(key=lambda f: f.when or since, reverse=True)
    usable_windows = [s.freeze_window_ms for s in all_snapshots if usable(s)]
    return Fleet(known, vm_count, len(all_snapshots), count_by(s.phase for s in all_snapshots),
                 count_by(judgements), failures[:MAX_FAILURE_REASONS],
                 freeze_histogram(usable_windows),
                 sum(1 for w in usable_windows if w is not None))


async def _failed_runs(client: VmsnapClient, runs: list[RunInfo],
                       since: datetime) -> list[Failure]:
    """Restores, clones and deletions that failed since `since`, with the workflow's reason
    (a snapshot's failure is on its record, listed already)."""
    found = []
    for run in runs:
        closed = run.close_time
        if run.status not in ("FAILED", "TIMED_OUT", "TERMINATED") or closed is None or \
                closed < since or run.operation not in ("restore", "clone", "delete"):
            continue
        reason = run.status.lower()
        with contextlib.suppress(VmsnapError):
            state = await client.run_state(run.operation, run.workflow_id)
            reason = f"{state.error} ({state.error_type})" if state.error else reason
        found.append(Failure(closed, run.operation, run.vm_namespace or "", run.vm or "-",
                             reason, run.workflow_id, run.run_id))
        if len(found) >= MAX_FAILURE_REASONS:
            break
    return found
