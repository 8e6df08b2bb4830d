"""`CloneVirtualMachine`: its workflow type and ID, JSON input, result and progress,
the payloads of its activities with their references, and its error types.

The clone restores PVCs with the restore's steps (`contracts.restore`'s payloads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.activity import ActivityRef
from contracts.restore import (
    DEFAULT_BOUND_WAIT_SECONDS,
    MissingVolumes,
    RestoredVolumeResult,
    RestorePlan,
)
from rules.clone_spec import check_mac

# The workflow ID (and the label on what it makes), defined with every name in rules.naming.
from rules.naming import CLONE_LABEL as CLONE_LABEL
from rules.naming import clone_workflow_id as clone_workflow_id

WORKFLOW = "CloneVirtualMachine"

# Error types (ApplicationError.type) of the clone, besides contracts.common's.
INVALID_CLONE_SPEC = "InvalidCloneSpec"
SOURCE_NOT_ELIGIBLE = "SourceNotEligible"

ClonePhase = Literal["SnapshotInProgress", "RestoreInProgress", "CreatingTargetVM",
                     "Succeeded", "Failed"]


class CloneVirtualMachineInput(BaseModel):
    """Copy `source_vm` (through a temporary snapshot) or `source_snapshot` into `target`."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1)
    source_vm: str | None = None
    source_snapshot: str | None = None
    target: str = Field(min_length=1)
    new_mac_addresses: dict[str, str] = Field(default_factory=dict)
    new_smbios_serial: str | None = None
    label_filters: list[str] = Field(default_factory=list)
    annotation_filters: list[str] = Field(default_factory=list)
    patches: list[str] = Field(default_factory=list, description="JSON patch strings")
    run_strategy: Literal["Always", "Halted", "Manual", "RerunOnFailure", "Once"] = "Halted"
    missing_volumes: MissingVolumes = Field(
        default="refuse", description="a disk the snapshot left out: refused (the clone would "
        "share the source's disk), or dropped from the clone")
    bound_wait: float = Field(default=DEFAULT_BOUND_WAIT_SECONDS, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> CloneVirtualMachineInput:
        if (self.source_vm is None) == (self.source_snapshot is None):
            raise ValueError("give exactly one of source_vm and source_snapshot")
        for interface, mac in self.new_mac_addresses.items():
            check_mac(interface, mac)  # before any PVC is made, not at the VM step
        return self


class PrepareCloneInput(BaseModel):
    namespace: str
    snapshot: str
    target: str
    clone_name: str
    missing_volumes: MissingVolumes = "refuse"


class CheckCloneSourceInput(BaseModel):
    namespace: str
    vm: str
    target: str


class CreateCloneVmInput(BaseModel):
    namespace: str
    clone_name: str
    spec: CloneVirtualMachineInput
    snapshot_vm: dict[str, Any]
    claims: dict[str, str] = Field(description="volume name -> its new PVC")
    drop: list[str] = Field(default_factory=list, description="volumes left out of the clone")


class CloneVmRef(BaseModel):
    namespace: str
    target: str
    clone_name: str


class CloneVirtualMachineResult(BaseModel):
    namespace: str
    name: str
    target: str
    source_vm: str | None
    source_snapshot: str | None
    snapshot: str | None = Field(default=None, description="the snapshot the clone reads")
    temporary_snapshot: bool = False
    temporary_snapshot_deleted: bool = False
    phase: ClonePhase
    workflow_id: str
    started_at: datetime
    finished_at: datetime | None = None
    volumes: list[RestoredVolumeResult] = Field(default_factory=list)
    dropped_volumes: list[str] = Field(
        default_factory=list, description="disks the snapshot left out, not in the clone")
    error: str | None = None
    error_type: str | None = None
    cleanup_errors: list[str] = Field(default_factory=list)


class CloneRecordInput(BaseModel):
    namespace: str
    result: CloneVirtualMachineResult


class CloneProgress(BaseModel):
    step: str
    result: CloneVirtualMachineResult
    pending_compensations: list[str]


# ---- activities (implemented in activities/clone.py; PVCs by contracts.restore's) -------

CHECK_CLONE_SOURCE = ActivityRef("check_clone_source", CheckCloneSourceInput, bool)
PREPARE_CLONE = ActivityRef("prepare_clone", PrepareCloneInput, RestorePlan)
CREATE_CLONE_VM = ActivityRef("create_clone_vm", CreateCloneVmInput, bool)
DELETE_CLONE_VM = ActivityRef("delete_clone_vm", CloneVmRef, bool)
WRITE_CLONE_RECORD = ActivityRef("write_clone_record", CloneRecordInput, bool)
