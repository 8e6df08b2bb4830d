"""`ScheduledVirtualMachineSnapshots`, what a vmsnap Temporal Schedule starts: its
workflow type, the IDs of schedules and their runs, input, result, activity payloads and
references, and error types. Retention itself is a pure rule (`rules.retention`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.activity import ActivityRef
from contracts.snapshot import DeletionPolicy, Quiesce
from rules.naming import SCHEDULE_LABEL as SCHEDULE_LABEL
from rules.naming import label_value
from rules.retention import ScheduledSnapshotRecord
from rules.validation import (
    Deadline,
    Labels,
    Namespace,
    ReadyDeadline,
    check_dns_label,
    check_dns_subdomain,
    check_selector,
)

WORKFLOW = "ScheduledVirtualMachineSnapshots"
SCHEDULE_ID_PREFIX = "vmsnap"


def schedule_id(cluster: str, namespace: str, name: str) -> str:
    """`vmsnap.{cluster}.{namespace}.{name}`: unique per cluster and Kubernetes namespace,
    no slash (UI URLs); none of the three may hold a dot."""
    return f"{SCHEDULE_ID_PREFIX}.{cluster}.{namespace}.{name}"


def schedule_id_prefix(cluster: str, namespace: str | None = None) -> str:
    """What the IDs of a cluster's schedules (of one namespace) start with."""
    return f"{SCHEDULE_ID_PREFIX}.{cluster}." + (f"{namespace}." if namespace else "")


def scheduled_workflow_id(cluster: str, namespace: str, name: str) -> str:
    """The ID of a schedule's runs (Temporal appends the scheduled time)."""
    return f"scheduled-snapshot/{cluster}/{namespace}/{name}"


# The label that hands a snapshot to a schedule's retention, `SCHEDULE_LABEL`
# (rules.naming), is reserved: user labels may not set it. A schedule's run passes its
# name to each child snapshot (`SnapshotVirtualMachineInput.schedule`), which only a
# child run accepts.

# Error types (ApplicationError.type).
SCHEDULED_SNAPSHOTS_FAILED = "ScheduledSnapshotsFailed"
SNAPSHOT_ALREADY_STARTED = "SnapshotAlreadyStarted"


def scheduled_labels(labels: dict[str, str], schedule: str) -> dict[str, str]:
    """The user's labels and the schedule's own, for each snapshot a run takes."""
    return {**labels, SCHEDULE_LABEL: label_value(schedule)}


class ScheduledSnapshotInput(BaseModel):
    """Input of `ScheduledVirtualMachineSnapshots` (the action of a vmsnap schedule).

    Example: {"schedule": "nightly", "namespace": "demo", "selector": "app=web",
              "keep": 7, "failure_deadline": "5m"}
    """

    model_config = ConfigDict(extra="forbid")

    schedule: str = Field(description="the schedule's name: labels its snapshots")
    namespace: Namespace
    vm: str | None = Field(default=None, description="one VM by name ...")
    selector: str | None = Field(default=None, description="... or every VM matching it")
    keep: int = Field(ge=1, le=10_000, description="good snapshots kept per VM")
    failure_deadline: Deadline = 300.0
    ready_deadline: ReadyDeadline = 3600.0
    quiesce: Quiesce = "auto"
    deletion_policy: DeletionPolicy = "Delete"
    labels: Labels = Field(default_factory=dict)
    max_parallel: int = Field(default=4, ge=1, le=100,
                              description="VMs snapshotted at the same time")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_dns_label(value, "schedule name")

    @field_validator("vm")
    @classmethod
    def _vm(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_subdomain(value, "vm")

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        return None if value is None else check_selector(value)

    @model_validator(mode="after")
    def _one_target(self) -> ScheduledSnapshotInput:
        if (self.vm is None) == (self.selector is None):
            raise ValueError("give exactly one of vm and selector")
        return self

    @property
    def target(self) -> str:
        return f"vm {self.vm}" if self.vm else f"selector {self.selector}"


class ListVmsInput(BaseModel):
    namespace: str
    selector: str


class ScheduledSnapshotsQuery(BaseModel):
    namespace: str
    schedule: str
    vm: str


class VmOutcome(BaseModel):
    """One VM in one scheduled run."""

    vm: str
    snapshot: str
    phase: str = "InProgress"
    ready_to_use: bool = False
    indications: list[str] = Field(default_factory=list)
    freeze_window_ms: int | None = None
    error: str | None = None
    error_type: str | None = None
    kept: list[str] = Field(default_factory=list)
    pruned: list[str] = Field(default_factory=list)
    prune_errors: list[str] = Field(default_factory=list)


class ScheduledSnapshotResult(BaseModel):
    """One scheduled run, VM by VM; also the details of its failure."""

    schedule: str
    namespace: str
    target: str
    phase: Literal["InProgress", "Succeeded", "Failed"] = "InProgress"
    started_at: datetime
    finished_at: datetime | None = None
    vms: list[VmOutcome] = Field(default_factory=list)
    error: str | None = Field(default=None, description="why the run itself failed")
    error_type: str | None = None
    cleanup_errors: list[str] = Field(default_factory=list)

    @property
    def failed(self) -> list[VmOutcome]:
        """VMs whose snapshot failed, or was cut but never became ready."""
        return [o for o in self.vms if o.error is not None]


# ---- activities (implemented in activities/retention.py) -------------------------------

LIST_VMS = ActivityRef("list_vms", ListVmsInput, list[str])
LIST_SCHEDULED_SNAPSHOTS = ActivityRef(
    "list_scheduled_snapshots", ScheduledSnapshotsQuery, list[ScheduledSnapshotRecord])
