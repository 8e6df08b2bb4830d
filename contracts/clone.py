"""`CloneVirtualMachine`: its workflow type and ID, JSON input, result and progress,
the payloads of its activities with their references, and its error types.

The clone restores PVCs with the restore's steps (`contracts.restore`'s payloads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.activity import ActivityRef
from contracts.restore import (
    DEFAULT_BOUND_WAIT_SECONDS,
    MAX_SERIAL,
    MissingVolumes,
    RestoredVolumeResult,
    RestorePlan,
    SnapshotSource,
)

# The workflow ID (and the label on what it makes), defined with every name in rules.naming.
from rules.naming import CLONE_LABEL as CLONE_LABEL
from rules.naming import clone_workflow_id as clone_workflow_id
from rules.validation import (
    Wait,
    check_count,
    check_dns_label,
    check_dns_subdomain,
    check_mac_addresses,
    check_text,
)

WORKFLOW = "CloneVirtualMachine"

# Error types (ApplicationError.type) of the clone, besides contracts.common's.
INVALID_CLONE_SPEC = "InvalidCloneSpec"
SOURCE_NOT_ELIGIBLE = "SourceNotEligible"
SOURCE_WITH_PERSISTENT_STATE = "SourceWithPersistentState"

MAX_FILTERS = 64
MAX_FILTER_LENGTH = 317  # a qualified key: a 253-character prefix, '/', 63 characters
MAX_PATCHES = 64
MAX_PATCH_LENGTH = 65536

ClonePhase = Literal["SnapshotInProgress", "RestoreInProgress", "CreatingTargetVM",
                     "Succeeded", "Failed"]


class CloneVirtualMachineInput(BaseModel):
    """Copy `source_vm` (through a temporary snapshot) or `source_snapshot` into `target`."""

    model_config = ConfigDict(extra="forbid")

    namespace: str
    source_vm: str | None = None
    source_snapshot: str | None = None
    target: str = Field(description="the new VM (a DNS label: it is the guest's hostname "
                        "and prefixes its PVCs)")
    new_mac_addresses: dict[str, str] = Field(default_factory=dict)
    new_smbios_serial: str | None = None
    label_filters: list[str] = Field(default_factory=list)
    annotation_filters: list[str] = Field(default_factory=list)
    patches: list[str] = Field(default_factory=list, description="JSON patch strings, each "
                               "within the patch policy (workflows/README.md)")
    run_strategy: Literal["Always", "Halted", "Manual", "RerunOnFailure", "Once"] = "Halted"
    fresh_persistent_state: bool = Field(
        default=False, description="a source with persistent TPM/EFI state is refused (as "
        "KubeVirt refuses it: two VMs with one TPM identity); true clones it with a fresh "
        "TPM and EFI store instead")
    missing_volumes: MissingVolumes = Field(
        default="refuse", description="a disk the snapshot left out: refused (the clone would "
        "share the source's disk), or dropped from the clone")
    bound_wait: Wait = Field(default=DEFAULT_BOUND_WAIT_SECONDS,
                             description="how long the clone's PVCs may take to be Bound "
                             "(1s to 24h)")

    @field_validator("namespace", "target")
    @classmethod
    def _labels(cls, value: str, info: ValidationInfo) -> str:
        return check_dns_label(value, str(info.field_name))

    @field_validator("source_vm", "source_snapshot")
    @classmethod
    def _sources(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_dns_subdomain(value, str(info.field_name))

    @field_validator("new_mac_addresses")
    @classmethod
    def _macs(cls, value: dict[str, str]) -> dict[str, str]:
        return check_mac_addresses(value)  # before any PVC is made, not at the VM step

    @field_validator("new_smbios_serial")
    @classmethod
    def _serial(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "new_smbios_serial", MAX_SERIAL)

    @field_validator("label_filters", "annotation_filters")
    @classmethod
    def _filters(cls, value: list[str], info: ValidationInfo) -> list[str]:
        check_count(value, str(info.field_name), MAX_FILTERS)
        for pattern in value:
            check_text(pattern, f"a filter of {info.field_name}", MAX_FILTER_LENGTH)
        return value

    @field_validator("patches")
    @classmethod
    def _patches(cls, value: list[str]) -> list[str]:
        check_count(value, "patches", MAX_PATCHES)
        if any(len(patch) > MAX_PATCH_LENGTH for patch in value):
            raise ValueError(f"a patch is longer than {MAX_PATCH_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CloneVirtualMachineInput:
        if (self.source_vm is None) == (self.source_snapshot is None):
            raise ValueError("give exactly one of source_vm and source_snapshot")
        return self


class PrepareCloneInput(BaseModel):
    namespace: str
    snapshot: str
    target: str
    clone_name: str
    missing_volumes: MissingVolumes = "refuse"
    fresh_persistent_state: bool = False


class CheckCloneSourceInput(BaseModel):
    namespace: str
    vm: str
    target: str


class CloneVmOptions(BaseModel):
    """What of the clone's input shapes its VM (the input's own fields, not a VM spec)."""

    target: str
    new_mac_addresses: dict[str, str] = Field(default_factory=dict)
    new_smbios_serial: str | None = None
    label_filters: list[str] = Field(default_factory=list)
    annotation_filters: list[str] = Field(default_factory=list)
    patches: list[str] = Field(default_factory=list)
    run_strategy: str = "Halted"

    @classmethod
    def of(cls, input: CloneVirtualMachineInput) -> CloneVmOptions:
        return cls(target=input.target, new_mac_addresses=input.new_mac_addresses,
                   new_smbios_serial=input.new_smbios_serial,
                   label_filters=input.label_filters,
                   annotation_filters=input.annotation_filters, patches=input.patches,
                   run_strategy=input.run_strategy)


class CreateCloneVmInput(BaseModel):
    """Create the clone's VM from the snapshot's copy, read by reference (`source`)."""

    namespace: str
    clone_name: str
    options: CloneVmOptions
    source: SnapshotSource
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
    temporary_snapshot_kept_until_bound: list[str] = Field(
        default_factory=list, description="PVCs waiting for the clone's first start: the "
        "temporary snapshot is deleted (`delete-snapshot/...` waits) once they are Bound")
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
