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
from rules.validation import check_dns_label, check_dns_subdomain

WORKFLOW = "DeleteVirtualMachineSnapshot"



class DeleteVirtualMachineSnapshotInput(BaseModel):
    """Input of `DeleteVirtualMachineSnapshot`."""

    model_config = ConfigDict(extra="forbid")

    namespace: str
    name: str

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_dns_label(value, "namespace")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns_subdomain(value, "name")


class DeleteVirtualMachineSnapshotResult(BaseModel):
    """What the deletion removed; also the details of its failure."""

    namespace: str
    name: str
    phase: Literal["Deleting", "Succeeded", "Failed"] = "Deleting"
    deletion_policy: DeletionPolicy | None = Field(
        default=None, description="None until the record is read")
    deleted_volume_snapshots: list[str] = Field(default_factory=list)
    retained_volume_snapshots: list[str] = Field(default_factory=list)
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


PREPARE_SNAPSHOT_DELETION = ActivityRef("prepare_snapshot_deletion", ObjectRef, DeletionPlan)
DELETE_SNAPSHOT_RECORD = ActivityRef("delete_snapshot_record", ObjectRef, bool)
