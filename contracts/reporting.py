"""How operations report: a Kubernetes Event on the VM, and the worker's metrics.

Both are courtesies: a workflow calls them with a short retry policy and ignores their
failure, so reporting never changes an operation's outcome. The metrics leave through
the same exporter as Temporal's worker metrics (starter/metrics.py), so one scrape of
the worker shows both; their names are a contract (dashboards and alerts use them):

- `vmsnap_snapshots` (counter; `outcome` = succeeded | failed, `error_type`)
- `vmsnap_freeze_window` (histogram, milliseconds the guest stayed frozen)
- `vmsnap_deadline_failures` (counter; snapshots failed by their deadline)
- `vmsnap_compensations` (counter; saga compensations run, `operation`)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.activity import ActivityRef

# Event reasons, CamelCase as Kubernetes wants them; Normal for success, Warning for failure.
SNAPSHOT_SUCCEEDED = "SnapshotSucceeded"
SNAPSHOT_READY = "SnapshotReady"
SNAPSHOT_FAILED = "SnapshotFailed"
RESTORE_SUCCEEDED = "RestoreSucceeded"
RESTORE_FAILED = "RestoreFailed"
CLONE_SUCCEEDED = "CloneSucceeded"
CLONE_FAILED = "CloneFailed"

SNAPSHOTS = "vmsnap_snapshots"
FREEZE_WINDOW = "vmsnap_freeze_window"
DEADLINE_FAILURES = "vmsnap_deadline_failures"
COMPENSATIONS = "vmsnap_compensations"

# Freeze windows in milliseconds: the guest pays for every one of them.
FREEZE_WINDOW_BUCKETS_MS: tuple[float, ...] = (
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
BUCKET_OVERRIDES: dict[str, list[float]] = {FREEZE_WINDOW: list(FREEZE_WINDOW_BUCKETS_MS)}

_REASON = re.compile(r"[A-Z][A-Za-z0-9]{0,127}")


class VmEventInput(BaseModel):
    """One Event on one VM. `vm_uid` saves a read when the workflow knows it."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1)
    vm: str = Field(min_length=1)
    vm_uid: str | None = None
    reason: str
    message: str = Field(min_length=1)
    type: Literal["Normal", "Warning"] = "Normal"
    action: Literal["Snapshot", "Restore", "Clone", "Delete"] = "Snapshot"
    snapshot: str | None = Field(default=None,
                                 description="the vmsnap snapshot record it is about")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not _REASON.fullmatch(value):
            raise ValueError(f"reason {value!r} must be CamelCase letters and digits")
        return value


class SnapshotMetricsInput(BaseModel):
    """What one finished snapshot tells the metrics (from its result)."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["succeeded", "failed"]
    error_type: str | None = Field(default=None, description="the failure's type, if failed")
    freeze_window_ms: int | None = Field(default=None, ge=0,
                                         description="None when the guest was not frozen")
    deadline_exceeded: bool = False
    compensated: bool = Field(default=False, description="the saga's compensation ran")


class _Instrument(Protocol):
    def add(self, value: int, additional_attributes: Mapping[str, str] | None = None) -> None:
        ...


class _Histogram(Protocol):
    def record(self, value: int, additional_attributes: Mapping[str, str] | None = None) -> None:
        ...


class Meter(Protocol):
    """What recording needs of a meter (Temporal's activity, workflow or runtime meter)."""

    def create_counter(self, name: str, description: str | None = None,
                       unit: str | None = None) -> _Instrument: ...

    def create_histogram(self, name: str, description: str | None = None,
                         unit: str | None = None) -> _Histogram: ...


def record_snapshot(meter: Meter, outcome: SnapshotMetricsInput) -> None:
    """Record one finished snapshot on `meter` (an activity's, a workflow's, or a test's)."""
    meter.create_counter(SNAPSHOTS, "snapshots finished, by outcome").add(
        1, {"outcome": outcome.outcome, "error_type": outcome.error_type or ""})
    if outcome.freeze_window_ms is not None:
        meter.create_histogram(
            FREEZE_WINDOW, "how long guest filesystems stayed frozen", "ms",
        ).record(outcome.freeze_window_ms)
    if outcome.deadline_exceeded:
        meter.create_counter(DEADLINE_FAILURES, "snapshots failed by their deadline").add(1)
    if outcome.compensated:
        record_compensation(meter, "snapshot")


def record_compensation(meter: Meter, operation: str) -> None:
    """One saga compensation run (snapshot, restore, clone)."""
    meter.create_counter(COMPENSATIONS, "saga compensations run").add(
        1, {"operation": operation})


RECORD_VM_EVENT: ActivityRef[VmEventInput, str | None] = ActivityRef(
    "record_vm_event", VmEventInput, str | None)  # type: ignore[arg-type]
RECORD_SNAPSHOT_METRICS = ActivityRef("record_snapshot_metrics", SnapshotMetricsInput, type(None))
