"""Inputs and outputs of the snapshot activities: what crosses the workflow boundary.

Pydantic only (the workflow imports this module). The workflow decides every
name and passes it in, so an activity never invents one and a retry touches
the same objects.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from rules.models import VmState, VolumeSelection, VolumeSnapshotState
from workflows.models import DeletionPolicy, Quiesce, SnapshotVirtualMachineResult


class ObjectRef(BaseModel):
    """A namespaced object by name (a snapshot record, a content, a VM)."""

    namespace: str
    name: str


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


class VmLockInput(BaseModel):
    namespace: str
    vm: str
    operation: str = Field(description='what the holder does: "snapshot", "restore", "clone"')
    held: str | None = Field(
        default=None, description="the lock annotation this run wrote, when known: the "
        "release is then one request that the server refuses if the lock changed")


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


class PlannedVolumeSnapshot(BaseModel):
    """One VolumeSnapshot to make: its deterministic name and what it captures."""

    name: str
    volume_name: str
    pvc_name: str
    snapshot_class: str


class FreezePlan(BaseModel):
    """Freeze the guest for the cut; it must be thawed by `thaw_by` at the latest (the
    unfreezeTimeout sent is the time left, so the guest thaws itself if all else dies)."""

    vmi: str
    thaw_by: datetime
    required: bool = Field(description="quiesce required: a failing freeze fails the cut")


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


class CutOutcome(BaseModel):
    volume_snapshots: list[VolumeSnapshotState]
    cut_at: datetime = Field(description="when the last cut was seen (worker clock)")
    frozen_at: datetime | None = Field(default=None, description="None: not frozen")
    thawed_at: datetime | None = None
    freeze_error: str | None = Field(
        default=None, description="why the guest could not be frozen (quiesce auto went on)")
    thawed_before_cut: bool = Field(
        default=False, description="the freeze bound passed first: the cut is crash-consistent"
    )
    freeze_window_ms: int | None = None


class UnfreezeVmInput(BaseModel):
    namespace: str
    vmi: str


class VolumeSnapshotsInput(BaseModel):
    namespace: str
    names: list[str]
    snapshot: str | None = Field(
        default=None, description="also every VolumeSnapshot labelled with this snapshot"
    )


class DeletionPlan(BaseModel):
    """What deleting a snapshot removes, once it was found deletable."""

    namespace: str
    name: str
    deletion_policy: DeletionPolicy
    volume_snapshots: list[str]
    content_name: str | None
