"""Test doubles of the snapshot activities, registered under the real activity names.

The real cut wait holds a watch inside a running activity, and the
time-skipping server does not skip time while an activity runs. These
doubles answer at once instead: a VolumeSnapshot "not cut yet" is a
retryable error, so the workflow's retry policy waits in (skippable) timers
and a 5-minute deadline passes in a fraction of a second. They keep a small
in-memory world (records, lock, VolumeSnapshots, the guest's freeze state)
and the order of every call, so tests check effects, not just calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.admission import AdmissionActivities
from contracts.admission import ADMIT_REQUEST, AdmissionGrant, AdmissionRequest
from contracts.common import ObjectRef
from contracts.delete_snapshot import (
    CLAIMS_NOT_BOUND,
    DELETE_SNAPSHOT_RECORD,
    PREPARE_SNAPSHOT_DELETION,
    ClaimsInput,
    DeletionPlan,
)
from contracts.lock import LOCK_LOST, LOCK_VM, RENEW_VM_LOCK, UNLOCK_VM, VmLockInput
from contracts.reporting import (
    RECORD_SNAPSHOT_METRICS,
    RECORD_VM_EVENT,
    SnapshotMetricsInput,
    VmEventInput,
    record_snapshot,
)
from contracts.snapshot import (
    CHECK_VOLUME_SNAPSHOTS_READY,
    CREATE_SNAPSHOT_RECORD,
    DELETE_SNAPSHOT_CONTENT,
    DELETE_VOLUME_SNAPSHOTS,
    FREEZE_AND_CUT,
    LOCK_AND_INSPECT_VM,
    UNFREEZE_VM,
    WRITE_SNAPSHOT_STATUS,
    CreateSnapshotRecordInput,
    CutInput,
    CutOutcome,
    GroupResult,
    LockAndInspectInput,
    PlannedGroup,
    SnapshotRecordRef,
    SnapshotVirtualMachineResult,
    UnfreezeVmInput,
    VmInspection,
    VolumeSnapshotsInput,
    WriteSnapshotStatusInput,
)
from rules.freeze_budget import DEFAULT_MAX_FREEZE_BUDGET
from rules.models import (
    ExcludedVolume,
    IncludedVolume,
    VmState,
    VolumeSelection,
    VolumeSnapshotState,
)
from rules.namespace_scope import NamespaceScope
from rules.patch_policy import PatchPolicy

NS = "demo"
CLUSTER = "test-cluster"  # the id the doubles' admission answers: in every child's ID
BENIGN = ApplicationErrorCategory.BENIGN  # expected retries: not logged as failures
CUT_TIME = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def admission(scope: NamespaceScope | None = None, policy: PatchPolicy | None = None,
              max_freeze_budget: float = DEFAULT_MAX_FREEZE_BUDGET) -> Callable[..., Any]:
    """The real admission step (a worker serving `scope`, all by default), as an async
    activity: the doubles' workers have no thread pool."""
    real = AdmissionActivities(scope or NamespaceScope(), policy or PatchPolicy(),
                               lambda: CLUSTER, max_freeze_budget)

    @activity.defn(name=ADMIT_REQUEST.name)
    async def admit_request(request: AdmissionRequest) -> AdmissionGrant:
        return real.admit_request(request)

    return admit_request


def vm_state(
    name: str = "web", *, running: bool = True, agent: bool = True, paused: bool = False,
    freeze_budget: str | None = None,
) -> VmState:
    return VmState(
        freeze_budget=freeze_budget,
        namespace=NS, name=name, uid=f"uid-{name}", run_strategy="Always" if running else "Halted",
        vmi_exists=running, running=running, paused=paused, agent_connected=running and agent,
        fs_freeze_status=None, printable_status="Running" if running else "Stopped",
        vmi_phase="Running" if running else None,
    )


def disks(*volumes: str) -> list[IncludedVolume]:
    return [IncludedVolume(volume_name=v, pvc_name=f"{v}-pvc", storage_class="csi",
                           snapshot_class="csi-snap", driver="csi.example.com") for v in volumes]


@dataclass
class Record:
    owner: tuple[str, str]
    phase: str | None = None
    result: SnapshotVirtualMachineResult | None = None
    deletion_policy: str = "Delete"
    uid: str = ""


@dataclass
class World:
    """What the doubles act on, and knobs for how the cluster behaves."""

    vms: dict[str, VmState] = field(default_factory=lambda: {"web": vm_state()})
    included: list[IncludedVolume] = field(default_factory=lambda: disks("root", "data"))
    excluded: list[ExcludedVolume] = field(default_factory=lambda: [ExcludedVolume(
        volume_name="cloudinit", reason="cloudInitNoCloud volume: not backed by a PVC",
        snapshottable_type=False)])
    freeze_fails: bool = False
    cut_after_attempts: int | None = 1  # None: never cut
    ready_after_attempts: int | None = 1  # None: never ready
    ready_at_cut: bool = False  # the cut already sees every VolumeSnapshot readyToUse
    cut_outlives_budget: bool = False  # the cut comes after the freeze budget passed
    live_runs: set[str] = field(default_factory=set)  # holders counted alive; default all
    binds_after_checks: dict[str, int] = field(default_factory=dict)  # PVC -> checks to Bound
    groups: list[PlannedGroup] = field(default_factory=list)  # planned at inspection
    group_refusal: str | None = None  # group snapshots required and impossible

    calls: list[str] = field(default_factory=list)
    records: dict[str, Record] = field(default_factory=dict)
    contents: dict[str, str] = field(default_factory=dict)
    volume_snapshots: dict[str, str] = field(default_factory=dict)  # name -> snapshot
    locks: dict[str, tuple[str, str]] = field(default_factory=dict)
    frozen: bool = False
    cut_inputs: list[CutInput] = field(default_factory=list)
    unlock_inputs: list[VmLockInput] = field(default_factory=list)
    renewals: list[VmLockInput] = field(default_factory=list)  # lease renewals asked
    # After this many renewals the lease has ended and another operation holds the VM.
    lock_taken_after_renewals: int | None = None
    status_inputs: list[WriteSnapshotStatusInput] = field(default_factory=list)
    cut_attempts: int = 0
    ready_attempts: int = 0
    record_creates: int = 0
    events: list[VmEventInput] = field(default_factory=list)  # apart from `calls`: reporting
    metrics: list[SnapshotMetricsInput] = field(default_factory=list)

    def count(self, name: str) -> int:
        return sum(1 for c in self.calls if c == name)

    def after(self, name: str) -> list[str]:
        """The calls after the last call of `name`."""
        index = len(self.calls) - 1 - self.calls[::-1].index(name)
        return self.calls[index + 1:]

    # ---- the doubles ------------------------------------------------------------------

    def activities(self) -> list[Callable[..., Any]]:
        world = self

        def run() -> tuple[str, str]:
            info = activity.info()
            return info.workflow_id or "", info.workflow_run_id or ""

        @activity.defn(name=CREATE_SNAPSHOT_RECORD.name)
        async def create_snapshot_record(input: CreateSnapshotRecordInput) -> SnapshotRecordRef:
            world.calls.append(CREATE_SNAPSHOT_RECORD.name)
            existing = world.records.get(input.name)
            if existing is not None and existing.owner != run():
                raise ApplicationError(f"VirtualMachineSnapshot {input.name} already exists",
                                       type="SnapshotAlreadyExists", non_retryable=True)
            if existing is None:
                world.record_creates += 1
                world.records[input.name] = Record(
                    owner=run(), phase="InProgress", deletion_policy=input.deletion_policy,
                    uid=f"uid-{input.name}")
            return SnapshotRecordRef(namespace=input.namespace, name=input.name,
                                     uid=world.records[input.name].uid)

        def take_lock(input: VmLockInput) -> None:
            if input.vm not in world.vms:
                raise ApplicationError(f"VirtualMachine {input.vm} not found",
                                       type="VmNotFound", non_retryable=True)
            holder = world.locks.get(input.vm)
            alive = holder is not None and (not world.live_runs or holder[1] in world.live_runs)
            if holder is not None and holder != run() and alive:
                raise ApplicationError(
                    f"VirtualMachine {NS}/{input.vm} is locked by snapshot workflow "
                    f"{holder[0]} (run {holder[1]})", type="VmLocked", non_retryable=True)
            world.locks[input.vm] = run()

        @activity.defn(name=LOCK_VM.name)
        async def lock_vm(input: VmLockInput) -> None:
            world.calls.append(LOCK_VM.name)
            take_lock(input)

        @activity.defn(name=LOCK_AND_INSPECT_VM.name)
        async def lock_and_inspect_vm(input: LockAndInspectInput) -> VmInspection:
            world.calls.append(LOCK_AND_INSPECT_VM.name)
            take_lock(input.lock)
            content = None
            if input.content is not None and world.included:
                world.contents[input.content.name] = input.content.snapshot
                content = input.content.name
            return VmInspection(vm=world.vms[input.lock.vm], volumes=VolumeSelection(
                included=world.included, excluded=world.excluded),
                lock=f"held-by-{run()[1]}", content_name=content, groups=world.groups,
                group_refusal=world.group_refusal)

        @activity.defn(name=RENEW_VM_LOCK.name)
        async def renew_vm_lock(input: VmLockInput) -> str:
            world.calls.append(RENEW_VM_LOCK.name)
            world.renewals.append(input)
            if world.lock_taken_after_renewals == len(world.renewals):
                world.locks[input.vm] = ("another/run", "other")
            if world.locks.get(input.vm) != run():
                raise ApplicationError(
                    f"VirtualMachine {NS}/{input.vm} is no longer locked by this run",
                    type=LOCK_LOST, non_retryable=True)
            return f"held-by-{run()[1]}-{len(world.renewals)}"

        @activity.defn(name=UNLOCK_VM.name)
        async def unlock_vm(input: VmLockInput) -> bool:
            world.calls.append(UNLOCK_VM.name)
            world.unlock_inputs.append(input)
            if world.locks.get(input.vm) == run():
                del world.locks[input.vm]
                return True
            return False

        @activity.defn(name=WRITE_SNAPSHOT_STATUS.name)
        async def write_snapshot_status(input: WriteSnapshotStatusInput) -> bool:
            world.calls.append(WRITE_SNAPSHOT_STATUS.name)
            world.status_inputs.append(input)
            record = world.records.get(input.result.name)
            if record is None or record.owner != run():
                return False
            record.phase = input.result.phase
            record.result = input.result
            return True

        @activity.defn(name=UNFREEZE_VM.name)
        async def unfreeze_vm(input: UnfreezeVmInput) -> bool:
            world.calls.append(UNFREEZE_VM.name)
            was, world.frozen = world.frozen, False
            return was

        @activity.defn(name=FREEZE_AND_CUT.name)
        async def freeze_and_cut(input: CutInput) -> CutOutcome:
            """Freeze once, create, and answer "not cut yet" until `cut_after_attempts`
            (the real activity would still be watching, the guest frozen)."""
            world.calls.append(FREEZE_AND_CUT.name)
            world.cut_inputs.append(input)
            freeze_error = None
            if input.freeze is not None and not world.frozen:
                if world.freeze_fails:
                    freeze_error = "freeze failed: guest agent error"
                    if input.freeze.required:
                        raise ApplicationError(f"quiesce is required and {freeze_error}",
                                               type="FreezeFailed", non_retryable=True)
                else:
                    world.calls.append("freeze")
                    world.frozen = True
            for volume in input.volumes:
                world.volume_snapshots[volume.name] = input.snapshot
            world.cut_attempts += 1
            if world.cut_after_attempts is None or world.cut_attempts < world.cut_after_attempts:
                raise ApplicationError("not cut yet: " + ", ".join(v.name for v in input.volumes),
                                       type="NotCutYet", category=BENIGN)
            frozen_at = thawed_at = None
            if world.frozen and world.cut_outlives_budget and input.freeze is not None:
                # As the real cut: thaw first, then `required` fails and `auto` goes on.
                world.calls.append("thaw-at-budget")
                world.frozen = False
                if input.freeze.required:
                    raise ApplicationError(
                        "quiesce is required and the guest was thawed before every volume "
                        "was cut: the freeze budget passed before the cut",
                        type="QuiesceTimedOut", non_retryable=True)
                budget = timedelta(seconds=input.freeze.budget_seconds)
                return CutOutcome(
                    volume_snapshots=[_state(v.name, cut=True) for v in input.volumes],
                    cut_at=CUT_TIME + budget, frozen_at=CUT_TIME, thawed_at=CUT_TIME + budget,
                    thawed_before_cut=True, freeze_window_ms=round(budget.total_seconds() * 1000),
                    freeze_budget_seconds=input.freeze.budget_seconds)
            if world.frozen:
                world.calls.append("thaw-at-cut")
                world.frozen = False
                frozen_at, thawed_at = CUT_TIME, CUT_TIME.replace(microsecond=250_000)
            # A group's members, named by the group snapshot controller.
            members = {v.volume_name: f"snapshot-{v.volume_name}" for v in input.volumes
                       if v.group is not None}
            for planned in input.volumes:
                if planned.volume_name in members:
                    world.volume_snapshots[members[planned.volume_name]] = input.snapshot
                    world.volume_snapshots.pop(planned.name, None)
            return CutOutcome(
                volume_snapshots=[_state(members.get(v.volume_name, v.name), cut=True,
                                         ready=world.ready_at_cut) for v in input.volumes],
                cut_names=members,
                groups=[GroupResult(name=g.name, group_class=g.group_class, driver=g.driver,
                                    volumes=g.volumes, creation_time=CUT_TIME)
                        for g in input.groups],
                cut_at=CUT_TIME, frozen_at=frozen_at, thawed_at=thawed_at,
                freeze_window_ms=250 if thawed_at else None, freeze_error=freeze_error,
                freeze_budget_seconds=input.freeze.budget_seconds if thawed_at and input.freeze
                else None)

        @activity.defn(name=CHECK_VOLUME_SNAPSHOTS_READY.name)
        async def check_volume_snapshots_ready(
            input: VolumeSnapshotsInput,
        ) -> list[VolumeSnapshotState]:
            world.calls.append(CHECK_VOLUME_SNAPSHOTS_READY.name)
            world.ready_attempts += 1
            missing = [n for n in input.names if n not in world.volume_snapshots]
            if missing:
                raise ApplicationError(f"gone: {missing}", type="VolumeSnapshotMissing",
                                       non_retryable=True)
            if (world.ready_after_attempts is None
                    or world.ready_attempts < world.ready_after_attempts):
                raise ApplicationError("not ready yet", type="VolumeSnapshotsNotReady",
                                       category=BENIGN)
            return [_state(n, cut=True, ready=True) for n in input.names]

        @activity.defn(name=DELETE_VOLUME_SNAPSHOTS.name)
        async def delete_volume_snapshots(input: VolumeSnapshotsInput) -> list[str]:
            world.calls.append(DELETE_VOLUME_SNAPSHOTS.name)
            doomed = [n for n, snap in world.volume_snapshots.items()
                      if n in input.names or snap == input.snapshot]
            for name in doomed:
                del world.volume_snapshots[name]
            return doomed

        @activity.defn(name=DELETE_SNAPSHOT_CONTENT.name)
        async def delete_snapshot_content(input: ObjectRef) -> bool:
            world.calls.append(DELETE_SNAPSHOT_CONTENT.name)
            return world.contents.pop(input.name, None) is not None

        @activity.defn(name=PREPARE_SNAPSHOT_DELETION.name)
        async def prepare_snapshot_deletion(input: ObjectRef) -> DeletionPlan:
            world.calls.append(PREPARE_SNAPSHOT_DELETION.name)
            record = world.records.get(input.name)
            if record is None:
                raise ApplicationError(f"VirtualMachineSnapshot {input.name} not found",
                                       type="SnapshotNotFound", non_retryable=True)
            if record.phase == "InProgress":
                raise ApplicationError(f"{input.name} is still being taken",
                                       type="SnapshotInProgress", non_retryable=True)
            record.phase = "Deleting"
            made = [n for n, snap in world.volume_snapshots.items() if snap == input.name]
            content = record.result.content_name if record.result else None
            return DeletionPlan(namespace=input.namespace, name=input.name,
                                deletion_policy="Retain" if record.deletion_policy == "Retain"
                                else "Delete", volume_snapshots=made, content_name=content)

        @activity.defn(name=CLAIMS_NOT_BOUND.name)
        async def claims_not_bound(input: ClaimsInput) -> list[str]:
            world.calls.append(CLAIMS_NOT_BOUND.name)
            for name in input.names:
                world.binds_after_checks[name] = world.binds_after_checks.get(name, 0) - 1
            return [n for n in input.names if world.binds_after_checks[n] > 0]

        @activity.defn(name=DELETE_SNAPSHOT_RECORD.name)
        async def delete_snapshot_record(input: ObjectRef) -> bool:
            world.calls.append(DELETE_SNAPSHOT_RECORD.name)
            return world.records.pop(input.name, None) is not None

        @activity.defn(name=RECORD_VM_EVENT.name)
        async def record_vm_event(input: VmEventInput) -> str | None:
            world.events.append(input)
            return f"event-{len(world.events)}"

        @activity.defn(name=RECORD_SNAPSHOT_METRICS.name)
        async def record_snapshot_metrics(input: SnapshotMetricsInput) -> None:
            world.metrics.append(input)
            record_snapshot(activity.metric_meter(), input)  # the real recording

        return [create_snapshot_record, lock_vm, lock_and_inspect_vm, renew_vm_lock, unlock_vm,
                write_snapshot_status,
                unfreeze_vm, freeze_and_cut,
                check_volume_snapshots_ready, delete_volume_snapshots,
                delete_snapshot_content, prepare_snapshot_deletion, delete_snapshot_record,
                claims_not_bound, record_vm_event, record_snapshot_metrics, admission()]


def _state(name: str, *, cut: bool, ready: bool = False) -> VolumeSnapshotState:
    return VolumeSnapshotState(name=name, creation_time=CUT_TIME if cut else None,
                               ready_to_use=ready, restore_size="1Gi" if ready else None,
                               error=None, bound_content=None)
