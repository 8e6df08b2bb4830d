"""`ScheduledVirtualMachineSnapshots`: what a vmsnap Temporal Schedule starts.

One run snapshots every selected VM (by name, or by a label selector resolved
at run time, so VMs that appear later are covered) as child workflows of
`SnapshotVirtualMachine`, then prunes each VM's scheduled snapshots beyond
`keep` through `DeleteVirtualMachineSnapshot` children.

Retention (`retention_plan`, pure):
- a snapshot belongs to a schedule when its record carries the label
  `schedule.vmsnap.io/name=<schedule>`; removing that label (kubectl label)
  takes a snapshot out of the schedule's hands, adding it hands one over;
- the newest `keep` snapshots that are Succeeded and ready to use are kept;
  older Succeeded ones are pruned, oldest first;
- a snapshot that is not Succeeded is never pruned, unless it is Failed and
  older than the newest good one (it then only tells an old story; "older"
  is by the record's creationTimestamp, whole seconds, so a tie keeps it); a
  Succeeded one whose readiness failed counts as Failed; InProgress and
  Deleting ones are left alone.

Children are started with ParentClosePolicy REQUEST_CANCEL: if this run is
cancelled or terminated, each snapshot still runs its own compensation (thaw,
clean-up) instead of being cut off mid-freeze.

The run fails (after pruning every VM) when any VM's snapshot failed, so the
schedule's recent runs in the Temporal UI show it; pruning that could not
delete a snapshot (in use by a restore, say) is reported in the result and
retried by the next run.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import CancelledError as TemporalCancelled

with workflow.unsafe.imports_passed_through():
    import rules.naming as naming
    from workflows.failures import describe
    from workflows.models import (
        DeleteVirtualMachineSnapshotInput,
        DeleteVirtualMachineSnapshotResult,
        DeletionPolicy,
        Duration,
        Quiesce,
        SnapshotVirtualMachineInput,
        SnapshotVirtualMachineResult,
        check_dns_label,
        check_dns_subdomain,
        check_labels,
    )
    from workflows.search_attributes import OPERATION, VM_NAME, VM_NAMESPACE

SCHEDULED_WORKFLOW = "ScheduledVirtualMachineSnapshots"
SNAPSHOT_WORKFLOW = "SnapshotVirtualMachine"
DELETE_WORKFLOW = "DeleteVirtualMachineSnapshot"
SNAPSHOT_NOT_READY = "SnapshotNotReady"  # SnapshotVirtualMachine: cut taken, never ready
SCHEDULED_SNAPSHOTS_FAILED = "ScheduledSnapshotsFailed"

# The label that hands a snapshot to a schedule's retention (outside the reserved
# `vmsnap.io/` prefix, which user labels may not use, so the workflow can pass it).
SCHEDULE_LABEL = "schedule.vmsnap.io/name"

# Activity names (implemented in activities/retention.py).
LIST_VMS = "list_vms"
LIST_SCHEDULED_SNAPSHOTS = "list_scheduled_snapshots"

# Custom search attributes (Keyword): set at start by the SDK and by this workflow on
# its children, upserted by the workflows themselves; registered on the server.

STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10), maximum_attempts=10)

_SELECTOR_KEY = r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" \
                r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_SELECTOR_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SELECTOR_TERM = re.compile(
    rf"!?{_SELECTOR_KEY}"
    rf"|{_SELECTOR_KEY}\s*(?:==|=|!=)\s*{_SELECTOR_VALUE}"
    rf"|{_SELECTOR_KEY}\s+(?:in|notin)\s+\(\s*{_SELECTOR_VALUE}(?:\s*,\s*{_SELECTOR_VALUE})*\s*\)"
)


def scheduled_labels(labels: dict[str, str], schedule: str) -> dict[str, str]:
    return {**labels, SCHEDULE_LABEL: naming.label_value(schedule)}


def check_selector(selector: str) -> str:
    """A Kubernetes label selector (`app=web`, `tier in (a,b)`, `!legacy`, comma = AND)."""
    text = selector.strip()
    if not text:
        raise ValueError("the label selector is empty")
    terms = re.split(r",(?![^()]*\))", text)
    for term in terms:
        if not _SELECTOR_TERM.fullmatch(term.strip()):
            raise ValueError(
                f"label selector {selector!r}: {term.strip()!r} is not a valid requirement "
                "(use key=value, key!=value, key in (a,b), key notin (a,b), key or !key)"
            )
    return text


class ScheduledSnapshotInput(BaseModel):
    """Input of `ScheduledVirtualMachineSnapshots` (the action of a vmsnap schedule).

    Example: {"schedule": "nightly", "namespace": "demo", "selector": "app=web",
              "keep": 7, "failure_deadline": "5m"}
    """

    model_config = ConfigDict(extra="forbid")

    schedule: str = Field(description="the schedule's name: labels its snapshots")
    namespace: str
    vm: str | None = Field(default=None, description="one VM by name ...")
    selector: str | None = Field(default=None, description="... or every VM matching it")
    keep: int = Field(ge=1, le=10_000, description="good snapshots kept per VM")
    failure_deadline: Duration = 300.0
    ready_deadline: Duration = 3600.0
    quiesce: Quiesce = "auto"
    deletion_policy: DeletionPolicy = "Delete"
    labels: dict[str, str] = Field(default_factory=dict)
    max_parallel: int = Field(default=4, ge=1, le=100,
                              description="VMs snapshotted at the same time")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_dns_label(value, "schedule name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_dns_label(value, "namespace")

    @field_validator("vm")
    @classmethod
    def _vm(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_subdomain(value, "vm")

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        return None if value is None else check_selector(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if SCHEDULE_LABEL in value:
            raise ValueError(f"label {SCHEDULE_LABEL} is set by the schedule itself")
        return check_labels(value)

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


class ScheduledSnapshotRecord(BaseModel):
    """A snapshot record as retention sees it."""

    name: str
    vm: str
    created: datetime = Field(description="metadata.creationTimestamp of the record")
    phase: str | None
    ready_to_use: bool = False
    error: str | None = None
    deleting: bool = False


class RetentionPlan(BaseModel):
    keep: list[str] = Field(description="newest first")
    prune: list[str] = Field(description="oldest first")


def retention_plan(records: list[ScheduledSnapshotRecord], keep: int) -> RetentionPlan:
    """Which of one VM's scheduled snapshots to delete (see the module docstring)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    live = [r for r in records if not r.deleting and r.phase != "Deleting"]
    newest_first = sorted(live, key=lambda r: (r.created, r.name), reverse=True)
    good = [r for r in newest_first if r.phase == "Succeeded" and r.ready_to_use]
    newest_good = good[0].created if good else None
    kept_good = {r.name for r in good[:keep]}
    prune: list[str] = []
    kept: list[str] = []
    for record in newest_first:
        good_one = record.phase == "Succeeded" and record.ready_to_use
        unusable = record.phase == "Failed" or (
            record.phase == "Succeeded" and not record.ready_to_use and bool(record.error))
        # Strictly older: records keep whole seconds, and a tie cannot tell which came last.
        superseded = newest_good is not None and record.created < newest_good
        if record.name in kept_good:
            kept.append(record.name)
        elif good_one or (unusable and superseded):
            prune.append(record.name)
        else:
            kept.append(record.name)
    return RetentionPlan(keep=kept, prune=list(reversed(prune)))


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
    schedule: str
    namespace: str
    target: str
    started_at: datetime
    finished_at: datetime | None = None
    vms: list[VmOutcome] = Field(default_factory=list)

    @property
    def failed(self) -> list[VmOutcome]:
        """VMs whose snapshot failed, or was cut but never became ready."""
        return [o for o in self.vms if o.error is not None]


def child_search_attributes(namespace: str, vm: str, operation: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(VM_NAME, vm),
        SearchAttributePair(VM_NAMESPACE, namespace),
        SearchAttributePair(OPERATION, operation),
    ])


@workflow.defn(name=SCHEDULED_WORKFLOW, failure_exception_types=[ValidationError])
class ScheduledVirtualMachineSnapshots:
    def __init__(self) -> None:
        self._result: ScheduledSnapshotResult | None = None
        self._step = "starting"
        self._cancelling = False

    @workflow.run
    async def run(self, input: ScheduledSnapshotInput) -> ScheduledSnapshotResult:
        now = workflow.now()
        attributes = [VM_NAMESPACE.value_set(input.namespace), OPERATION.value_set("schedule")]
        if input.vm:
            attributes.append(VM_NAME.value_set(input.vm))
        workflow.upsert_search_attributes(attributes)  # also when started without a schedule
        result = self._result = ScheduledSnapshotResult(
            schedule=input.schedule, namespace=input.namespace, target=input.target,
            started_at=now)
        self._enter("select")
        vms = [input.vm] if input.vm else await self._select(input)
        result.vms = [VmOutcome(vm=vm, snapshot=naming.generated_snapshot_name(vm, now))
                      for vm in vms]
        self._enter("snapshot")
        slots = asyncio.Semaphore(input.max_parallel)
        tasks = [asyncio.create_task(self._one_vm(input, outcome, slots))
                 for outcome in result.vms]
        try:
            if tasks:
                await workflow.wait(tasks)
        except asyncio.CancelledError:
            self._cancelling = True
            for task in tasks:
                task.cancel()
            await workflow.wait(tasks)  # each child snapshot compensates before we leave
            raise
        for task in tasks:
            task.result()  # a bug in a task fails the workflow task (retried), never hidden
        result.finished_at = workflow.now()
        self._enter("done")
        if result.failed:
            failed = "; ".join(f"{o.vm}: {o.error}" for o in result.failed)
            raise ApplicationError(
                f"{len(result.failed)} of {len(result.vms)} scheduled snapshot(s) failed: "
                f"{failed}", result, type=SCHEDULED_SNAPSHOTS_FAILED, non_retryable=True)
        return result

    @workflow.query(name="progress")
    def progress(self) -> ScheduledSnapshotResult | None:
        """The outcome so far, VM by VM."""
        return self._result

    async def _select(self, input: ScheduledSnapshotInput) -> list[str]:
        assert input.selector is not None
        try:
            return await workflow.execute_activity(
                LIST_VMS, ListVmsInput(namespace=input.namespace, selector=input.selector),
                result_type=list[str], start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY)
        except ActivityError as err:
            message, error_type = describe(err)
            raise ApplicationError(f"select VMs by {input.selector!r}: {message}",
                                   type=error_type, non_retryable=True) from err

    async def _one_vm(
        self, input: ScheduledSnapshotInput, outcome: VmOutcome, slots: asyncio.Semaphore
    ) -> None:
        async with slots:
            await self._snapshot(input, outcome)
            if not self._cancelling:
                await self._prune(input, outcome)

    async def _snapshot(self, input: ScheduledSnapshotInput, outcome: VmOutcome) -> None:
        request = SnapshotVirtualMachineInput(
            namespace=input.namespace, vm=outcome.vm, name=outcome.snapshot,
            failure_deadline=input.failure_deadline, ready_deadline=input.ready_deadline,
            quiesce=input.quiesce, deletion_policy=input.deletion_policy,
            labels=scheduled_labels(input.labels, input.schedule))
        try:
            snapshot = await workflow.execute_child_workflow(
                SNAPSHOT_WORKFLOW, request,
                id=naming.snapshot_workflow_id(input.namespace, outcome.snapshot),
                result_type=SnapshotVirtualMachineResult,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=child_search_attributes(input.namespace, outcome.vm,
                                                          "snapshot"),
                static_summary=f"snapshot {input.namespace}/{outcome.vm} -> {outcome.snapshot}"
                f" (schedule {input.schedule})")
        except ChildWorkflowError as err:
            if self._cancelling and isinstance(err.cause, TemporalCancelled):
                raise asyncio.CancelledError() from err
            message, error_type = _child_failure(err)
            outcome.error, outcome.error_type = message, error_type
            outcome.phase = "Succeeded" if error_type == SNAPSHOT_NOT_READY else "Failed"
            self._details()
            return
        except WorkflowAlreadyStartedError:
            outcome.phase, outcome.error_type = "Failed", "SnapshotAlreadyStarted"
            outcome.error = f"a snapshot named {outcome.snapshot} is already being taken"
            return
        outcome.phase, outcome.ready_to_use = snapshot.phase, snapshot.ready_to_use
        outcome.indications = list(snapshot.indications)
        outcome.freeze_window_ms = snapshot.freeze_window_ms
        self._details()

    async def _prune(self, input: ScheduledSnapshotInput, outcome: VmOutcome) -> None:
        try:
            records = await workflow.execute_activity(
                LIST_SCHEDULED_SNAPSHOTS,
                ScheduledSnapshotsQuery(namespace=input.namespace, schedule=input.schedule,
                                        vm=outcome.vm),
                result_type=list[ScheduledSnapshotRecord], start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY)
        except ActivityError as err:
            outcome.prune_errors.append(f"listing the snapshots: {describe(err)[0]}")
            return
        plan = retention_plan(records, input.keep)
        outcome.kept = plan.keep
        for name in plan.prune:  # oldest first, one at a time: the API server is shared
            try:
                await workflow.execute_child_workflow(
                    DELETE_WORKFLOW,
                    DeleteVirtualMachineSnapshotInput(namespace=input.namespace, name=name),
                    id=naming.delete_snapshot_workflow_id(input.namespace, name),
                    result_type=DeleteVirtualMachineSnapshotResult,
                    parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                    search_attributes=child_search_attributes(input.namespace, outcome.vm,
                                                              "delete"),
                    static_summary=f"delete snapshot {input.namespace}/{name} "
                    f"(retention of schedule {input.schedule}, keep {input.keep})")
            except ChildWorkflowError as err:
                if self._cancelling and isinstance(err.cause, TemporalCancelled):
                    raise asyncio.CancelledError() from err
                outcome.prune_errors.append(f"{name}: {_child_failure(err)[0]}")
                continue
            except WorkflowAlreadyStartedError:
                outcome.prune_errors.append(f"{name}: a deletion is already running")
                continue
            outcome.pruned.append(name)
            self._details()

    def _enter(self, step: str) -> None:
        self._step = step
        self._details()

    def _details(self) -> None:
        result = self._result
        if result is None:
            return
        done = [o for o in result.vms if o.phase != "InProgress"]
        pruned = sum(len(o.pruned) for o in result.vms)
        lines = [f"**{self._step}** schedule {result.schedule} ({result.target}) in "
                 f"{result.namespace}",
                 f"{len(done)}/{len(result.vms)} VM(s) done, "
                 f"{len(result.failed)} failed, {pruned} snapshot(s) pruned"]
        workflow.set_current_details(" · ".join(lines))


def _child_failure(err: ChildWorkflowError) -> tuple[str, str]:
    """The message and type of a child's failure (the child's own ApplicationError)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message, cause.type or "ApplicationError"
    if isinstance(cause, TemporalCancelled):
        return "canceled", "Canceled"
    return describe(cause or err)
