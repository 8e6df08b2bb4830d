"""What the SDK's read calls return: snapshots, runs and schedules, as plain models.

Each view is built from one source and says which: `SnapshotInfo` from a `vmsnap.io`
record (what `kubectl get vmsnap` shows, which outlives the workflow history),
`RunInfo` from Temporal visibility, `ScheduleInfo` from a Temporal Schedule's
description. They are pydantic models so the CLI prints them as JSON or YAML as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import (
    ScheduleActionExecution,
    ScheduleActionExecutionStartWorkflow,
    ScheduleDescription,
    WorkflowExecution,
)

from cluster.record_kinds import WORKFLOW_ID_ANNOTATION
from cluster.snapshots import parse_time
from contracts.clone import CloneProgress
from contracts.restore import RestoreProgress
from contracts.schedule import SCHEDULE_LABEL, ScheduledSnapshotInput, scheduled_labels
from contracts.snapshot import SnapshotProgress
from rules.durations import format_go_duration
from starter.schedule_timing import ScheduleTiming
from workflows.search_attributes import OPERATION, SNAPSHOT_PHASE, VM_NAME, VM_NAMESPACE


class ExcludedVolumeInfo(BaseModel):
    volume_name: str
    reason: str


class GroupInfo(BaseModel):
    """A VolumeGroupSnapshot that cut some of a snapshot's disks at one point in time."""

    name: str
    group_class: str | None = None
    driver: str | None = None
    volumes: list[str] = Field(default_factory=list)
    creation_time: datetime | None = None


class SnapshotInfo(BaseModel):
    """A snapshot as its `vmsnap.io` record says (what `kubectl get vmsnap` shows)."""

    namespace: str
    name: str
    vm: str
    phase: str | None
    ready_to_use: bool
    indications: list[str] = Field(default_factory=list)
    included_volumes: list[str] = Field(default_factory=list)
    excluded_volumes: list[ExcludedVolumeInfo] = Field(default_factory=list)
    volume_snapshots: list[str] = Field(default_factory=list)
    freeze_window_ms: int | None = None
    consistency: str | None = Field(default=None,
                                    description="application, filesystem or crash")
    groups: list[GroupInfo] = Field(default_factory=list,
                                    description="the VolumeGroupSnapshots that cut disks")
    volume_consistency: str | None = Field(
        default=None, description="group (one cut for every disk) or per-disk")
    created: datetime | None = Field(default=None, description="when the record was made")
    creation_time: datetime | None = Field(default=None, description="when the cut was taken")
    deletion_policy: str | None = None
    failure_deadline: str | None = None
    quiesce: str | None = None
    error: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    schedule: str | None = Field(default=None, description="the schedule that owns it")
    workflow_id: str | None = None
    deleting: bool = False
    progress: SnapshotProgress | None = Field(
        default=None, description="live progress, for a snapshot still being taken")

    @classmethod
    def from_record(cls, obj: Mapping[str, Any]) -> SnapshotInfo:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        labels = dict(metadata.get("labels") or {})
        volumes = status.get("snapshotVolumes") or {}
        return cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            vm=str((spec.get("source") or {}).get("name") or ""),
            phase="Deleting" if metadata.get("deletionTimestamp") and not status.get("phase")
            else status.get("phase"),
            ready_to_use=bool(status.get("readyToUse")),
            indications=list(status.get("indications") or []),
            included_volumes=list(volumes.get("includedVolumes") or []),
            excluded_volumes=[
                ExcludedVolumeInfo(volume_name=str(r.get("volumeName") or ""),
                                   reason=str(r.get("reason") or ""))
                for r in status.get("excludedVolumeReasons") or []],
            volume_snapshots=list(status.get("volumeSnapshots") or []),
            freeze_window_ms=status.get("freezeWindowMilliseconds"),
            consistency=status.get("consistency"),
            groups=[GroupInfo(name=str(g.get("name") or ""),
                              group_class=g.get("volumeGroupSnapshotClassName"),
                              driver=g.get("driver"), volumes=list(g.get("volumes") or []),
                              creation_time=parse_time(g.get("creationTime")))
                    for g in status.get("volumeGroupSnapshots") or [] if isinstance(g, dict)],
            volume_consistency=status.get("volumeConsistency"),
            created=parse_time(metadata.get("creationTimestamp")),
            creation_time=parse_time(status.get("creationTime")),
            deletion_policy=spec.get("deletionPolicy"),
            failure_deadline=spec.get("failureDeadline"),
            quiesce=spec.get("quiesce"),
            error=(status.get("error") or {}).get("message") or None,
            labels=labels,
            schedule=labels.get(SCHEDULE_LABEL),
            workflow_id=(metadata.get("annotations") or {}).get(WORKFLOW_ID_ANNOTATION),
            deleting=bool(metadata.get("deletionTimestamp")),
        )

    @property
    def in_flight(self) -> bool:
        """Its workflow still works on it: the cut, or the wait for readiness."""
        return self.phase == "InProgress" or (
            self.phase == "Succeeded" and not self.ready_to_use and not self.error)


class VmInfo(BaseModel):
    """A VirtualMachine as the cluster shows it (what `kubectl get vms` prints)."""

    namespace: str
    name: str
    status: str | None = Field(default=None, description="KubeVirt's printableStatus")
    ready: bool = False
    run_strategy: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    created: datetime | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> VmInfo:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        strategy = spec.get("runStrategy") or (
            None if spec.get("running") is None else
            "Always" if spec.get("running") else "Halted")
        return cls(
            namespace=str(metadata.get("namespace") or ""), name=str(metadata.get("name") or ""),
            status=status.get("printableStatus") or None, ready=bool(status.get("ready")),
            run_strategy=strategy, labels=dict(metadata.get("labels") or {}),
            created=parse_time(metadata.get("creationTimestamp")))


class RunInfo(BaseModel):
    """One workflow run, as Temporal visibility lists it."""

    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    start_time: datetime
    close_time: datetime | None = None
    vm: str | None = None
    vm_namespace: str | None = None
    operation: str | None = None
    snapshot_phase: str | None = None

    @classmethod
    def from_execution(cls, execution: WorkflowExecution) -> RunInfo:
        attributes = execution.typed_search_attributes
        return cls(
            workflow_id=execution.id, run_id=execution.run_id,
            workflow_type=execution.workflow_type,
            status=execution.status.name if execution.status else "UNKNOWN",
            start_time=execution.start_time, close_time=execution.close_time,
            vm=attributes.get(VM_NAME), vm_namespace=attributes.get(VM_NAMESPACE),
            operation=attributes.get(OPERATION), snapshot_phase=attributes.get(SNAPSHOT_PHASE),
        )


class RunState(BaseModel):
    """Where one operation's run is: its status, its `progress` query's answer and, once it
    ended, its result or its failure (a message and the workflow's stable error type)."""

    workflow_id: str
    run_id: str | None = None
    operation: str
    namespace: str | None = Field(default=None, description="its VmNamespace attribute")
    vm: str | None = Field(default=None, description="its VmName attribute")
    status: str = Field(description="RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, ...")
    start_time: datetime | None = None
    close_time: datetime | None = None
    progress: SnapshotProgress | RestoreProgress | CloneProgress | str | None = None
    result: dict[str, Any] | None = Field(default=None, description="the result as JSON "
                                          "(on failure: what the workflow attached)")
    error: str | None = None
    error_type: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    @property
    def succeeded(self) -> bool:
        return self.status == "COMPLETED"


class ScheduleRun(BaseModel):
    """One run a schedule started; `status` is looked up separately (it costs a call)."""

    workflow_id: str
    run_id: str
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    status: str | None = None


class ScheduleInfo(BaseModel):
    """A vmsnap schedule: what it snapshots, when, what it keeps, and how it ran."""

    name: str
    namespace: str
    schedule_id: str
    vm: str | None
    selector: str | None
    keep: int
    labels: dict[str, str] = Field(
        default_factory=dict, description="the labels its snapshots carry (`-l` matches them)")
    timing: ScheduleTiming | None
    quiesce: str
    failure_deadline: str
    paused: bool
    note: str | None
    running: list[str] = Field(default_factory=list)
    recent_runs: list[ScheduleRun] = Field(default_factory=list, description="newest last")
    next_runs: list[datetime] = Field(default_factory=list)
    actions: int = 0
    skipped_overlap: int = 0

    @classmethod
    def from_description(
        cls, namespace: str, name: str, description: ScheduleDescription,
        request: ScheduledSnapshotInput, timing: ScheduleTiming | None,
    ) -> ScheduleInfo:
        """From the schedule's description and its decoded action input; `timing` is the
        memo the SDK wrote (None for a schedule made otherwise)."""
        state, info = description.schedule.state, description.info
        return cls(
            name=name, namespace=namespace, schedule_id=description.id, vm=request.vm,
            selector=request.selector, keep=request.keep, timing=timing,
            labels=scheduled_labels(request.labels, name),
            quiesce=request.quiesce, failure_deadline=format_go_duration(request.failure_deadline),
            paused=state.paused, note=state.note,
            running=started_workflow_ids(info.running_actions),
            recent_runs=[ScheduleRun(workflow_id=a.action.workflow_id,
                                     run_id=a.action.first_execution_run_id,
                                     scheduled_at=a.scheduled_at, started_at=a.started_at)
                         for a in info.recent_actions
                         if isinstance(a.action, ScheduleActionExecutionStartWorkflow)],
            next_runs=list(info.next_action_times),
            actions=info.num_actions, skipped_overlap=info.num_actions_skipped_overlap,
        )


def started_workflow_ids(actions: Iterable[ScheduleActionExecution]) -> list[str]:
    """The workflow IDs of a schedule's actions that started a workflow."""
    return [a.workflow_id for a in actions if isinstance(a, ScheduleActionExecutionStartWorkflow)]
