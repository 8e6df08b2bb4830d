"""`RestoreVirtualMachine`: its workflow type and ID, JSON input, result and progress,
the payloads of its activities with their references, and its error types.

Pydantic models cross the Temporal boundary as JSON, so `temporal workflow start
--input '{"namespace": "demo", "snapshot": "web-1-snap"}'` works as is. The PVC steps'
payloads (`PvcsInput`, `RestorePlan`, `SnapshotUserInput`) serve the clone too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.activity import ActivityRef
from rules.models import PvcState

# The workflow ID (and the label on what it makes), defined with every name in rules.naming.
from rules.naming import RESTORE_LABEL as RESTORE_LABEL
from rules.naming import restore_workflow_id as restore_workflow_id
from rules.validation import (
    GracePeriod,
    Namespace,
    Wait,
    check_dns_label,
    check_dns_subdomain,
    check_mac_addresses,
    check_text,
)

WORKFLOW = "RestoreVirtualMachine"

# Error types (ApplicationError.type) of the restore, besides contracts.common's.
VM_RUNNING = "VmRunning"
TARGET_EXISTS = "TargetExists"
PVC_NOT_BOUND = "RestoredPvcNotBound"
VM_DID_NOT_STOP = "VmDidNotStop"
VOLUMES_NOT_IN_SNAPSHOT = "VolumesNotInSnapshot"  # a disk the snapshot left out: refused
PVC_EXISTS = "RestoredPvcExists"  # the restored PVC's name is another PVC's
INVALID_IDENTITY = "InvalidIdentity"  # a new MAC for an interface the VM does not have
TARGET_NOT_KEPT = "TargetNotKept"  # the undo found no saved VM in the restore record

TargetReadinessPolicy = Literal["WaitGracePeriod", "StopTarget", "FailImmediate",
                                "WaitEventually"]
VolumeRestorePolicy = Literal["RandomizeNames", "PrefixTargetName"]
VolumeOwnershipPolicy = Literal["VM", "None"]
MissingVolumes = Literal["refuse", "drop"]
DEFAULT_TARGET_READY_GRACE_SECONDS = 300.0  # KubeVirt's DefaultGracePeriod
WAIT_EVENTUALLY_SECONDS = 7 * 24 * 3600.0  # "eventually" still ends: a week, then fail

RestorePhase = Literal["InProgress", "Succeeded", "Failed"]
DEFAULT_BOUND_WAIT_SECONDS = 600.0  # how long restored PVCs may take to bind
DEFAULT_VM_STOP_WAIT_SECONDS = 300.0  # how long a stopped VM may take to go down
MAX_SERIAL = 64  # an SMBIOS serial's characters

class RestoreVirtualMachineInput(BaseModel):
    """Restore `snapshot` (in `namespace`) into `target`, or in place of its source VM."""

    model_config = ConfigDict(extra="forbid")

    namespace: Namespace
    snapshot: str
    target: str | None = Field(
        default=None, description="a new VM's name (a DNS label: it is the guest's hostname "
        "and prefixes its PVCs); default: the snapshot's VM, in place")
    running_vm_policy: Literal["fail", "stop"] = Field(
        default="fail", description="a running target: refused, or stopped first (and "
        "started again after); `target_readiness_policy` says the same in KubeVirt's words")
    target_readiness_policy: TargetReadinessPolicy | None = Field(
        default=None, description="KubeVirt's: WaitGracePeriod (wait `target_ready_grace` "
        "for the user to stop it, then fail), StopTarget, FailImmediate, WaitEventually")
    target_ready_grace: GracePeriod = Field(
        default=DEFAULT_TARGET_READY_GRACE_SECONDS,
        description="how long WaitGracePeriod waits for the target to be stopped (1s to 7 "
        "days)")
    volume_restore_policy: VolumeRestorePolicy = Field(
        default="RandomizeNames", description="new PVCs `{restore}-{volume}` (new per "
        "restore) or `{target}-{volume}`")
    volume_ownership_policy: VolumeOwnershipPolicy = Field(
        default="VM", description="the restored PVCs owned by the VM (deleted with it), "
        "or left unowned")
    missing_volumes: MissingVolumes = Field(
        default="refuse", description="a disk the snapshot left out: refused for a new VM "
        "(it would share the source's disk), or dropped from it; in place the VM keeps "
        "its current PVC for it")
    new_mac_addresses: dict[str, str] | None = Field(
        default=None, description="a new VM: {interface: mac}; every other interface's "
        "MAC is cleared")
    new_smbios_serial: str | None = Field(
        default=None, description="a new VM: its SMBIOS serial (else cleared)")
    keep_identity: bool = Field(
        default=False, description="a new VM keeps the source's MACs, serial and firmware "
        "UUID (only when the source is gone: both on one network collide)")
    bound_wait: Wait = Field(default=DEFAULT_BOUND_WAIT_SECONDS,
                             description="how long the restored PVCs may take to be Bound "
                             "(1s to 24h)")
    stop_wait: Wait = Field(default=DEFAULT_VM_STOP_WAIT_SECONDS,
                            description="how long a running target may take to stop (1s to "
                            "24h)")

    @field_validator("snapshot")
    @classmethod
    def _snapshot(cls, value: str) -> str:
        return check_dns_subdomain(value, "snapshot")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value, "target")

    @field_validator("new_mac_addresses")
    @classmethod
    def _macs(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_mac_addresses(value)

    @field_validator("new_smbios_serial")
    @classmethod
    def _serial(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "new_smbios_serial", MAX_SERIAL)

    @model_validator(mode="after")
    def _policies_agree(self) -> RestoreVirtualMachineInput:
        chosen = self.model_fields_set
        if {"running_vm_policy", "target_readiness_policy"} <= chosen and \
                self.target_readiness_policy is not None:
            implied = {"fail": "FailImmediate", "stop": "StopTarget"}[self.running_vm_policy]
            if implied != self.target_readiness_policy:
                raise ValueError(
                    f"running_vm_policy {self.running_vm_policy!r} and "
                    f"target_readiness_policy {self.target_readiness_policy!r} disagree; "
                    "give one of them")
        if self.keep_identity and (self.new_mac_addresses or self.new_smbios_serial):
            raise ValueError("keep_identity keeps the source's MACs and serial; do not also "
                             "give new_mac_addresses or new_smbios_serial")
        return self

    @property
    def readiness_policy(self) -> TargetReadinessPolicy:
        """What happens to a running target: the KubeVirt policy, or the one implied."""
        if self.target_readiness_policy is not None:
            return self.target_readiness_policy
        return "StopTarget" if self.running_vm_policy == "stop" else "FailImmediate"

class SnapshotSource(BaseModel):
    """The snapshot's copy of the VM, by reference: every activity that needs the spec
    reads it again from the snapshot's content, so no VM spec (cloud-init user data,
    keys) is ever an activity's payload, and none is in the workflow's history. The
    content's uid pins the copy read at planning: a content made again since is refused."""

    namespace: str
    snapshot: str
    content_name: str
    content_uid: str
    vm_uid: str | None = Field(default=None, description="the uid of the VM it copied")


class RestoredVolume(BaseModel):
    """One backed-up volume and the PVC the restore makes for it."""

    volume_name: str
    old_claim: str = Field(description="the PVC (or DataVolume) the VM used at the snapshot")
    volume_snapshot: str
    pvc_name: str
    phase: str | None = None
    data_volume: bool = Field(default=False, description="from a DataVolume template: the "
                              "renamed template's DataVolume adopts the PVC")
    waits_for_consumer: bool = Field(
        default=False, description="its class binds only when a pod uses it "
        "(WaitForFirstConsumer): Pending until the VM runs")


class RestorePlan(BaseModel):
    """What `prepare_restore` found: the snapshot to read the VM from and the PVCs to make."""

    source_vm: str
    target: str
    restore_name: str = Field(description="`{target}-restore-{stamp}`: the record and PVC label")
    source: SnapshotSource
    target_exists: bool
    target_running: bool
    volumes: list[RestoredVolume]
    fresh_persistent_state: bool = Field(
        default=False, description="the persistent TPM/EFI state is left out (a clone "
        "with a fresh one)")
    missing_volumes: list[str] = Field(
        default_factory=list, description="disks the snapshot left out (with a PVC)")
    kept_volumes: list[str] = Field(
        default_factory=list, description="in place: disks the snapshot left out that keep "
        "the VM's current PVC")
    dropped_volumes: list[str] = Field(
        default_factory=list, description="disks left out of the new VM (missing_volumes drop)")

    @property
    def waits_for_consumer(self) -> bool:
        return any(v.waits_for_consumer for v in self.volumes)


class PrepareRestoreInput(BaseModel):
    namespace: str
    snapshot: str
    target: str | None
    stamp: str = Field(description="the workflow's start (UTC, YYYYMMDD-HHMMSS) in the name")
    volume_restore_policy: VolumeRestorePolicy = "RandomizeNames"
    missing_volumes: MissingVolumes = "refuse"
    lock_lease_seconds: float | None = Field(
        default=None, gt=0, le=86400,
        description="take the target VM's lock (when it exists) with this lease before "
        "reading anything the plan is made from; None: the lock is a later step")


class CreatePvcsInput(BaseModel):
    """Make the planned PVCs: their bodies are planned again from the snapshot's content
    (the source PVCs' specs and metadata), never carried in the history."""

    namespace: str
    source: SnapshotSource
    owner: str = Field(description="the restore's or clone's name: the PVCs' label")
    owner_label: str = RESTORE_LABEL
    target: str
    volume_restore_policy: VolumeRestorePolicy = "RandomizeNames"
    names: list[str] = Field(description="the PVCs planned: the plan made again must agree")
    fresh_persistent_state: bool = Field(
        default=False, description="leave out the persistent TPM/EFI state claim (a clone "
        "that starts with a fresh one)")


class PvcsInput(BaseModel):
    namespace: str
    names: list[str] = Field(default_factory=list)
    timeout_seconds: float = DEFAULT_BOUND_WAIT_SECONDS
    pending_for_consumer_is_ready: bool = Field(
        default=False, description="a PVC that waits for its first consumer counts as ready "
        "(nothing runs the VM yet)")
    restore_name: str | None = Field(default=None,
                                     description="only PVCs labelled with it are deleted")
    owner_label: str = Field(default=RESTORE_LABEL,
                             description="the label naming the restore or clone")


class VmPowerInput(BaseModel):
    namespace: str
    vm: str
    timeout_seconds: float = DEFAULT_VM_STOP_WAIT_SECONDS

class ApplyRestoredVmInput(BaseModel):
    """Write the snapshot's spec, pointed at `claims`, into `target` (or create it)."""

    namespace: str
    target: str
    restore_name: str
    snapshot: str
    source: SnapshotSource
    claims: dict[str, str] = Field(description="volume name -> its new PVC")
    create: bool
    drop: list[str] = Field(default_factory=list, description="volumes left out of the VM")
    keep: list[str] = Field(default_factory=list,
                            description="in place: volumes that keep the VM's current claim")
    own_pvcs: bool = Field(default=True, description="the VM owns its restored PVCs")
    new_mac_addresses: dict[str, str] | None = None
    new_smbios_serial: str | None = None
    new_identity: bool = Field(default=False, description="a new VM: MACs, serial and "
                               "firmware UUID new (as a clone's)")

class PutBackVmInput(BaseModel):
    """Undo `ApplyRestoredVmInput`: delete a VM the restore made, or put back the spec
    `apply_restored_vm` saved in the restore record's status (`targetBefore`) before it
    wrote the VM: the spec stays in the cluster, never in the history."""

    namespace: str
    target: str
    restore_name: str
    created: bool = Field(description="the restore made the VM: delete it")

class SnapshotUserInput(BaseModel):
    namespace: str
    snapshot: str
    operation: str = "restore"

class RestoreRecordInput(BaseModel):
    namespace: str
    result: RestoreVirtualMachineResult

class RestoreVirtualMachineResult(BaseModel):
    """Also the `details` of the workflow's failure, and what the record shows."""

    namespace: str
    name: str = Field(description="the restore's name: its record and its PVC label")
    snapshot: str
    target: str
    phase: RestorePhase
    workflow_id: str
    started_at: datetime
    finished_at: datetime | None = None
    stopped_vm: bool = False
    restarted_vm: bool = False
    created_vm: bool = False
    kept_volumes: list[str] = Field(
        default_factory=list, description="disks the snapshot left out that keep their PVC")
    dropped_volumes: list[str] = Field(
        default_factory=list, description="disks the snapshot left out, not in the new VM")
    volumes: list[RestoredVolumeResult] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    cleanup_errors: list[str] = Field(default_factory=list)

class RestoredVolumeResult(BaseModel):
    volume_name: str
    volume_snapshot: str
    pvc_name: str
    phase: str | None = None

class RestoreProgress(BaseModel):
    """The `progress` query: the step and the result so far."""

    step: str
    result: RestoreVirtualMachineResult
    pending_compensations: list[str]

RestoreRecordInput.model_rebuild()
RestoreVirtualMachineResult.model_rebuild()

# ---- activities (implemented in activities/restore.py) ---------------------------------

PREPARE_RESTORE = ActivityRef("prepare_restore", PrepareRestoreInput, RestorePlan)
CREATE_RESTORE_RECORD = ActivityRef("create_restore_record", RestoreRecordInput, bool)
WRITE_RESTORE_STATUS = ActivityRef("write_restore_status", RestoreRecordInput, bool)
ADD_SNAPSHOT_USER = ActivityRef("add_snapshot_user", SnapshotUserInput, bool)
REMOVE_SNAPSHOT_USER = ActivityRef("remove_snapshot_user", SnapshotUserInput, bool)
STOP_VM = ActivityRef("stop_vm_and_wait", VmPowerInput, bool)
WAIT_VM_STOPPED = ActivityRef("wait_vm_stopped", VmPowerInput, bool)
START_VM = ActivityRef("start_vm", VmPowerInput, bool)
CREATE_RESTORED_PVCS = ActivityRef("create_restored_pvcs", CreatePvcsInput, list[str])
WAIT_RESTORED_PVCS_BOUND = ActivityRef("wait_restored_pvcs_bound", PvcsInput, list[PvcState])
DELETE_RESTORED_PVCS = ActivityRef("delete_restored_pvcs", PvcsInput, list[str])
APPLY_RESTORED_VM = ActivityRef("apply_restored_vm", ApplyRestoredVmInput, bool)
PUT_BACK_VM = ActivityRef("put_back_vm", PutBackVmInput, bool)
