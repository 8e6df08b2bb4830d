"""`SnapshotVirtualMachine`: its workflow type and ID, JSON input, result and progress,
the payloads of its activities with their references, and its error types.

Users type the input at the Temporal CLI and UI, so the field names are snake_case,
stable, and documented in workflows/README.md. Bad input is refused with a message that
names the field (the workflow fails at once; it never retries a document that cannot
be valid). The workflow decides every name it passes to an activity, so an activity
never invents one and a retry touches the same objects.

Example input:
    {"namespace": "demo", "vm": "web", "name": "web-before-upgrade",
     "failure_deadline": "5m", "ready_deadline": "1h", "quiesce": "auto",
     "freeze_budget": "10s", "group_snapshot": "auto",
     "deletion_policy": "Delete", "labels": {"team": "web"}}
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.activity import ActivityRef
from contracts.common import ObjectRef
from contracts.lock import VmLockInput
from rules.freeze_budget import DEFAULT_FREEZE_BUDGET
from rules.group_plan import GroupSnapshotMode, PlannedGroup
from rules.models import ExcludedVolume, VmState, VolumeSelection, VolumeSnapshotState

# The workflow ID (and the label on what it makes), defined with every name in rules.naming.
from rules.naming import snapshot_workflow_id as snapshot_workflow_id
from rules.validation import (
    Deadline,
    FreezeBudget,
    Labels,
    Namespace,
    ReadyDeadline,
    check_dns_label,
    check_dns_subdomain,
)

WORKFLOW = "SnapshotVirtualMachine"



Quiesce = Literal["auto", "required", "skip"]
Consistency = Literal["application", "filesystem", "crash"]
DeletionPolicy = Literal["Delete", "Retain"]
Phase = Literal["InProgress", "Succeeded", "Failed"]
VolumeConsistency = Literal["group", "per-disk"]

# Indications, as KubeVirt's (first five) plus the quiesce outcomes of vmsnap.
ONLINE = "Online"  # the VM had a running instance
GUEST_AGENT = "GuestAgent"  # the guest agent was connected
NO_GUEST_AGENT = "NoGuestAgent"  # the VM ran without a connected agent: crash-consistent
PAUSED = "Paused"  # the VM was paused: not frozen, crash-consistent
PARTIAL_SNAPSHOT = "PartialSnapshot"  # a PVC/DataVolume volume was left out
QUIESCE_FAILED = "QuiesceFailed"  # quiesce auto: the freeze failed, the cut is crash-consistent
QUIESCE_SKIPPED = "QuiesceSkipped"  # quiesce skip on a guest that could have been frozen
QUIESCE_TIMEOUT = "QuiesceTimeout"  # the guest was thawed before the cut (freeze budget passed)
RESTART_REQUIRED = "RestartRequired"  # changes waited for a restart: the running spec is kept
# group_snapshot auto: a VolumeGroupSnapshot failed or took other PVCs; its disks were cut
# by VolumeSnapshots of their own
GROUP_SNAPSHOT_FALLBACK = "GroupSnapshotFallback"


# Error types (ApplicationError.type) of this workflow; activities add those of
# contracts.common.
DEADLINE_EXCEEDED = "SnapshotDeadlineExceeded"
NO_ELIGIBLE_VOLUME = "NoEligibleVolume"
QUIESCE_REQUIRED = "QuiesceRequired"


class SnapshotVirtualMachineInput(BaseModel):
    """Input of `SnapshotVirtualMachine`. Unknown fields are refused (a typo such as
    `failureDeadline` would otherwise silently mean the default)."""

    model_config = ConfigDict(extra="forbid")

    namespace: Namespace = Field(description="namespace of the VM; the records are made there")
    vm: str = Field(description="name of the VirtualMachine")
    name: str | None = Field(
        default=None,
        description="name of the snapshot; default {vm}-{YYYYMMDD-HHMMSS} (UTC start time)",
    )
    failure_deadline: Deadline = Field(
        default=300.0, description='the cut must be taken within it; default "5m", 0 = none, '
        "at most 24h"
    )
    ready_deadline: ReadyDeadline = Field(
        default=3600.0,
        description='after the cut, every VolumeSnapshot must be ready within it; '
        'default "1h", 0 = none, at most 7 days',
    )
    quiesce: Quiesce = "auto"
    freeze_budget: FreezeBudget | None = Field(
        default=None, description='how long the guest may stay frozen for the cut, from '
        '"1s" to the worker\'s maximum (VMSNAP_MAX_FREEZE_BUDGET, default "1m"); default: '
        'the VM\'s annotation vmsnap.io/freeze-budget, else "10s". A cut that outlives it '
        "is thawed first and crash-consistent (QuiesceTimeout): quiesce required fails")
    deletion_policy: DeletionPolicy = "Delete"
    labels: Labels = Field(
        default_factory=dict, description="labels for the records and the VolumeSnapshots"
    )
    group_snapshot: GroupSnapshotMode = Field(
        default="auto", description="cut disks together with VolumeGroupSnapshots (one "
        "point in time per CSI driver): auto (default) groups the disks of a driver that "
        "has a default VolumeGroupSnapshotClass when the VM has two or more of them, and "
        "cuts a disk per disk when its group fails; required puts every disk in a group "
        "and fails (NoGroupSnapshotClass, before any freeze) when a driver has no default "
        "class, or (GroupSnapshotFailed) when a group fails; never cuts every disk by a "
        "VolumeSnapshot of its own")
    fail_if_locked: bool = Field(
        default=False, description="fail at once (VmLocked) when another operation holds "
        "the VM, instead of waiting for it within the failure deadline")
    schedule: str | None = Field(
        default=None, description="the schedule whose run takes this snapshot (its label "
        "hands the snapshot to the schedule's retention); accepted only from a schedule's "
        "run, which starts the snapshot as its child")

    @field_validator("vm")
    @classmethod
    def _vm(cls, value: str) -> str:
        return check_dns_subdomain(value, "vm")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_subdomain(value, "name")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value, "schedule")


class VolumeResult(BaseModel):
    """One included volume and the VolumeSnapshot that captured it."""

    volume_name: str
    pvc_name: str
    storage_class: str
    snapshot_class: str
    volume_snapshot: str
    hotpluggable: bool = False
    group: str | None = Field(default=None, description="the VolumeGroupSnapshot that cut "
                              "it; None when a VolumeSnapshot of its own did")
    creation_time: datetime | None = None
    ready_to_use: bool = False
    restore_size: str | None = None
    error: str | None = None


class GroupResult(BaseModel):
    """One VolumeGroupSnapshot that cut some disks at one point in time."""

    name: str
    group_class: str
    driver: str
    volumes: list[str]
    creation_time: datetime | None = None


class SnapshotVirtualMachineResult(BaseModel):
    """What a snapshot did; the workflow's result, and the details of its failure."""

    namespace: str
    name: str
    vm: str
    vm_uid: str | None = None
    workflow_id: str | None = None
    phase: Phase
    ready_to_use: bool = False
    indications: list[str] = Field(default_factory=list)
    included_volumes: list[VolumeResult] = Field(default_factory=list)
    excluded_volumes: list[ExcludedVolume] = Field(default_factory=list)
    volume_snapshots: list[str] = Field(default_factory=list)
    groups: list[GroupResult] = Field(
        default_factory=list, description="the VolumeGroupSnapshots that cut disks")
    volume_consistency: VolumeConsistency | None = Field(
        default=None, description="group: one cut covers every included disk; per-disk: "
        "the disks were cut at more than one point in time; None until the cut is taken")
    content_name: str | None = None
    quiesced: bool = Field(default=False, description="the guest was frozen for the cut")
    consistency: Consistency | None = Field(
        default=None, description="application (frozen for the whole cut), filesystem "
        "(the VM did not run: disks at rest) or crash; None until the cut is taken")
    freeze_window_ms: int | None = Field(
        default=None, description="freeze call to end of thaw call; None when not frozen"
    )
    started_at: datetime
    creation_time: datetime | None = Field(default=None, description="when the cut was taken")
    succeeded_at: datetime | None = None
    ready_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    cleanup_errors: list[str] = Field(
        default_factory=list, description="compensation steps that failed (objects may remain)"
    )


VolumeStep = Literal["planned", "creating", "cut", "ready", "deleted"]


class VolumeProgress(BaseModel):
    volume_name: str
    volume_snapshot: str
    state: VolumeStep
    creation_time: datetime | None = None
    ready_to_use: bool = False
    error: str | None = None


class SnapshotProgress(BaseModel):
    """Answer of the `progress` query: where the snapshot is, and how much time is left."""

    namespace: str
    name: str
    vm: str
    step: str
    phase: Phase
    frozen: bool
    indications: list[str]
    volumes: list[VolumeProgress]
    elapsed_seconds: float
    failure_deadline_seconds: float | None = Field(description="None: no deadline")
    time_left_seconds: float | None
    error: str | None = None


# ---- activity payloads -------------------------------------------------------------


class CreateSnapshotRecordInput(BaseModel):
    namespace: str
    name: str
    vm: str
    deletion_policy: DeletionPolicy
    failure_deadline_seconds: float
    ready_deadline_seconds: float
    quiesce: Quiesce
    labels: dict[str, str]


class SnapshotRecordRef(BaseModel):
    namespace: str
    name: str
    uid: str


class VmInspection(BaseModel):
    """The VM's state and which of its volumes can be snapshotted."""

    vm: VmState
    volumes: VolumeSelection
    lock: str | None = Field(
        default=None, description="the lock annotation written, when the VM was locked "
        "with the same read (lock_and_inspect_vm)")
    content_name: str | None = Field(
        default=None, description="the content made from the same read, if one was asked "
        "for and some volume can be snapshotted")
    groups: list[PlannedGroup] = Field(
        default_factory=list, description="the VolumeGroupSnapshots planned, by driver")
    group_refusal: str | None = Field(
        default=None, description="group snapshots are required and some disk cannot be "
        "in a group: the snapshot fails before any freeze")


class ContentPlan(BaseModel):
    """The snapshot's content, to be made from the inspection's own read of the VM and its
    PVCs (as KubeVirt makes it: after the lock, before the freeze)."""

    name: str
    snapshot: str
    snapshot_uid: str
    labels: dict[str, str]


class LockAndInspectInput(BaseModel):
    lock: VmLockInput
    content: ContentPlan | None = None
    group_snapshot: GroupSnapshotMode = Field(
        default="never", description="plan the VolumeGroupSnapshots of the content's "
        "snapshot from the default VolumeGroupSnapshotClasses (needs `content`)")


class WriteSnapshotStatusInput(BaseModel):
    """The record's status from the workflow's view of the snapshot."""

    result: SnapshotVirtualMachineResult
    record_uid: str | None = Field(
        default=None, description="the record's uid, when this run made it: the status is "
        "then written in one request, refused by the server if the record was replaced")
    indication_messages: dict[str, str] = Field(default_factory=dict)
    volume_snapshot_states: list[VolumeSnapshotState] = Field(
        default_factory=list, description="also written to the content's status, if it exists"
    )
    content_volume_snapshots: dict[str, str] = Field(
        default_factory=dict, description="volume name -> the VolumeSnapshot that holds it, "
        "to write into the content's volumeBackups (the members of a group are named by "
        "the group snapshot controller, known only after the cut)")


class PlannedVolumeSnapshot(BaseModel):
    """One VolumeSnapshot to make: its deterministic name and what it captures."""

    name: str
    volume_name: str
    pvc_name: str
    snapshot_class: str
    group: str | None = Field(default=None, description="the VolumeGroupSnapshot that cuts "
                              "it; None: a VolumeSnapshot of its own, named `name`")


class FreezePlan(BaseModel):
    """Freeze the guest for the cut, for at most `budget_seconds` (lowered to the worker's
    maximum): the unfreezeTimeout sent (less when the deadline is sooner), so the guest
    thaws itself if all else dies, and
    the thaw comes at freeze time + budget at the latest, or at `thaw_by` (the failure
    deadline) if that is sooner (rules.freeze_budget)."""

    vmi: str
    thaw_by: datetime | None = Field(
        default=None, description="the failure deadline: thawed by then whatever the budget")
    budget_seconds: float = Field(default=DEFAULT_FREEZE_BUDGET,
                                  description="the freeze budget asked for")
    required: bool = Field(description="quiesce required: a failing freeze fails the cut, "
                           "and so does a guest thawed before the cut")


class CutInput(BaseModel):
    namespace: str
    snapshot: str
    snapshot_uid: str
    owned_by_snapshot: bool = Field(
        description="owner reference to the record (deletionPolicy Delete): a kubectl delete "
        "of the record removes the VolumeSnapshots"
    )
    volumes: list[PlannedVolumeSnapshot]
    labels: dict[str, str]
    freeze: FreezePlan | None = None
    groups: list[PlannedGroup] = Field(default_factory=list)
    group_required: bool = Field(
        default=False, description="group_snapshot required: a failing group fails the cut "
        "(auto cuts its disks per disk instead)")


class CutOutcome(BaseModel):
    volume_snapshots: list[VolumeSnapshotState] = Field(
        description="every disk's VolumeSnapshot, a group's members included")
    cut_names: dict[str, str] = Field(
        default_factory=dict, description="volume name -> the VolumeSnapshot that holds it, "
        "for every disk whose name is not the planned one (members of groups, named by the "
        "group snapshot controller)")
    groups: list[GroupResult] = Field(
        default_factory=list, description="the groups that cut their disks")
    fallback: list[str] = Field(
        default_factory=list, description="the disks of groups that failed, cut by "
        "VolumeSnapshots of their own (group_snapshot auto)")
    fallback_errors: list[str] = Field(
        default_factory=list, description="why those groups failed")
    cut_at: datetime = Field(description="when the last cut was seen (worker clock)")
    frozen_at: datetime | None = Field(default=None, description="None: not frozen")
    thawed_at: datetime | None = None
    freeze_error: str | None = Field(
        default=None, description="why the guest could not be frozen (quiesce auto went on)")
    thawed_before_cut: bool = Field(
        default=False, description="the freeze budget (or the guest's own freeze limit) "
        "passed first: the cut is crash-consistent"
    )
    freeze_window_ms: int | None = None
    freeze_budget_seconds: float | None = Field(
        default=None, description="the budget the cut kept (after the worker's maximum); "
        "None when not frozen")


class UnfreezeVmInput(BaseModel):
    namespace: str
    vmi: str


class VolumeSnapshotsInput(BaseModel):
    namespace: str
    names: list[str]
    snapshot: str | None = Field(
        default=None, description="also every VolumeSnapshot labelled with this snapshot"
    )
    groups: list[PlannedGroup] = Field(
        default_factory=list, description="the VolumeGroupSnapshots planned: deleted first "
        "(with their members), and their labels taken off their PVCs")


# ---- activities (implemented in activities/snapshot.py and activities/cut.py) ----------

CREATE_SNAPSHOT_RECORD = ActivityRef(
    "create_snapshot_record", CreateSnapshotRecordInput, SnapshotRecordRef)
LOCK_AND_INSPECT_VM = ActivityRef("lock_and_inspect_vm", LockAndInspectInput, VmInspection)
WRITE_SNAPSHOT_STATUS = ActivityRef("write_snapshot_status", WriteSnapshotStatusInput, bool)
FREEZE_AND_CUT = ActivityRef("freeze_and_cut", CutInput, CutOutcome)
# The patch (workflow.patched) that sends a cut with a freeze to the freeze task queue
# (contracts.common.freeze_task_queue); runs begun before it cut on the workflow's queue.
FREEZE_QUEUE = "freeze-task-queue"
UNFREEZE_VM = ActivityRef("unfreeze_vm", UnfreezeVmInput, bool)
CHECK_VOLUME_SNAPSHOTS_READY = ActivityRef(
    "check_volume_snapshots_ready", VolumeSnapshotsInput, list[VolumeSnapshotState])
DELETE_VOLUME_SNAPSHOTS = ActivityRef("delete_volume_snapshots", VolumeSnapshotsInput, list[str])
DELETE_SNAPSHOT_CONTENT = ActivityRef("delete_snapshot_content", ObjectRef, bool)
