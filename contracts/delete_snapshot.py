"""`DeleteVirtualMachineSnapshot`: its workflow type and ID, input, result, and the
payloads of its activities."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.activity import ActivityRef
from contracts.common import ObjectRef
from contracts.snapshot import DeletionPolicy

# The workflow ID (and the label on what it makes), defined with every name in rules.naming.
from rules.naming import delete_snapshot_workflow_id as delete_snapshot_workflow_id
from rules.validation import Namespace, check_dns_subdomain

WORKFLOW = "DeleteVirtualMachineSnapshot"

MAX_AWAITED_CLAIMS = 256  # a VM's disks: KubeVirt allows far fewer volumes per VM


class DeleteVirtualMachineSnapshotInput(BaseModel):
    """Input of `DeleteVirtualMachineSnapshot`."""

    model_config = ConfigDict(extra="forbid")

    namespace: Namespace
    name: str
    after_claims_bound: list[str] = Field(
        default_factory=list, max_length=MAX_AWAITED_CLAIMS,
        description="PVCs (in the namespace) provisioned from the snapshot's VolumeSnapshots "
                    "that may still wait for their first consumer: the deletion waits until "
                    "each is Bound or gone, as a provisioner refuses a source being deleted")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns_subdomain(value, "name")

    @field_validator("after_claims_bound")
    @classmethod
    def _claims(cls, value: list[str]) -> list[str]:
        return [check_dns_subdomain(claim, "after_claims_bound") for claim in value]


class DeleteVirtualMachineSnapshotResult(BaseModel):
    """What the deletion removed; also the details of its failure."""

    namespace: str
    name: str
    phase: Literal["Deleting", "Succeeded", "Failed"] = "Deleting"
    deletion_policy: DeletionPolicy | None = Field(
        default=None, description="None until the record is read")
    deleted_volume_snapshots: list[str] = Field(default_factory=list)
    retained_volume_snapshots: list[str] = Field(default_factory=list)
    awaited_claims: list[str] = Field(
        default_factory=list, description="PVCs still to bind before the deletion goes on")
    content_deleted: bool = False
    record_deleted: bool = False
    finished_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    cleanup_errors: list[str] = Field(default_factory=list)


class DeletionPlan(BaseModel):
    """What deleting a snapshot removes, once it was found deletable."""

    namespace: str
    name: str
    deletion_policy: DeletionPolicy
    volume_snapshots: list[str]
    content_name: str | None


class ClaimsInput(BaseModel):
    """PVCs in one namespace."""

    namespace: str
    names: list[str]


PREPARE_SNAPSHOT_DELETION = ActivityRef("prepare_snapshot_deletion", ObjectRef, DeletionPlan)
DELETE_SNAPSHOT_RECORD = ActivityRef("delete_snapshot_record", ObjectRef, bool)
# The PVCs among `names` that exist and are not Bound yet.
CLAIMS_NOT_BOUND = ActivityRef("claims_not_bound", ClaimsInput, list[str])
