"""`ScheduledVirtualMachineSnapshots`: what a vmsnap Temporal Schedule starts.

One run snapshots every selected VM (by name, or by a label selector resolved
at run time, so VMs that appear later are covered) as child workflows of
`SnapshotVirtualMachine`, then prunes each VM's scheduled snapshots beyond
`keep` through `DeleteVirtualMachineSnapshot` children.

Retention is `rules.retention.retention_plan`: a snapshot belongs to a schedule when
its record carries the label `schedule.vmsnap.io/name=<schedule>`.

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
from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import CancelledError as TemporalCancelled

with workflow.unsafe.imports_passed_through():
    import contracts.delete_snapshot as delete_snapshot
    import contracts.snapshot as snapshot
    import rules.naming as naming
    import workflows.saga as saga
    from contracts.common import CANCELED, SNAPSHOT_NOT_READY
    from contracts.delete_snapshot import (
        DeleteVirtualMachineSnapshotInput,
        DeleteVirtualMachineSnapshotResult,
    )
    from contracts.schedule import (
        LIST_SCHEDULED_SNAPSHOTS,
        LIST_VMS,
        SCHEDULED_SNAPSHOTS_FAILED,
        SNAPSHOT_ALREADY_STARTED,
        WORKFLOW,
        ListVmsInput,
        ScheduledSnapshotInput,
        ScheduledSnapshotResult,
        ScheduledSnapshotsQuery,
        VmOutcome,
    )
    from contracts.snapshot import SnapshotVirtualMachineInput, SnapshotVirtualMachineResult
    from rules.retention import retention_plan
    from workflows.admission import admit
    from workflows.failures import describe
    from workflows.frame import Operation
    from workflows.search_attributes import CLUSTER, OPERATION, VM_NAME, VM_NAMESPACE

STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10), maximum_attempts=10)


def child_search_attributes(namespace: str, vm: str, operation: str,
                            cluster: str = "") -> TypedSearchAttributes:
    """The attributes a run starts with: its VM, namespace, operation and cluster (none
    for runs from before clusters were named)."""
    pairs = [SearchAttributePair(VM_NAME, vm), SearchAttributePair(VM_NAMESPACE, namespace),
             SearchAttributePair(OPERATION, operation)]
    if cluster:
        pairs.append(SearchAttributePair(CLUSTER, cluster))
    return TypedSearchAttributes(pairs)


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class ScheduledVirtualMachineSnapshots(Operation[ScheduledSnapshotInput, ScheduledSnapshotResult]):
    def __init__(self) -> None:
        super().__init__()
        self._cancelling = False

    @workflow.run
    async def run(self, input: ScheduledSnapshotInput) -> ScheduledSnapshotResult:
        self.begin(input, ScheduledSnapshotResult(
            schedule=input.schedule, namespace=input.namespace, target=input.target,
            started_at=workflow.now()))
        await self.admitted(admit([input.namespace]))
        attributes = [VM_NAMESPACE.value_set(input.namespace), OPERATION.value_set("schedule")]
        if input.vm:
            attributes.append(VM_NAME.value_set(input.vm))
        self.upsert_search_attributes(attributes)
        await self.run_steps(self._snapshot_all())
        result = self.finish()
        if result.failed:
            result.phase = "Failed"
            failed = "; ".join(f"{o.vm}: {o.error}" for o in result.failed)
            raise ApplicationError(
                f"{len(result.failed)} of {len(result.vms)} scheduled snapshot(s) failed: "
                f"{failed}", result, type=SCHEDULED_SNAPSHOTS_FAILED, non_retryable=True)
        result.phase = "Succeeded"
        return result

    async def _snapshot_all(self) -> None:
        """Select the VMs, then snapshot and prune each, `max_parallel` at a time."""
        input, result = self.input, self.result
        self.enter("select")
        vms = [input.vm] if input.vm else await self._select(input)
        result.vms = [
            VmOutcome(vm=vm, snapshot=naming.generated_snapshot_name(vm, result.started_at))
            for vm in vms]
        self.enter("snapshot")
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

    @workflow.query(name="progress")
    def progress(self) -> ScheduledSnapshotResult | None:
        """The outcome so far, VM by VM."""
        return self._result

    async def _select(self, input: ScheduledSnapshotInput) -> list[str]:
        assert input.selector is not None
        try:
            return await saga.step(
                LIST_VMS, ListVmsInput(namespace=input.namespace, selector=input.selector),
                retry=STEP_RETRY)
        except ActivityError as err:
            message, error_type = describe(err)
            raise ApplicationError(f"by {input.selector!r}: {message}", type=error_type,
                                   non_retryable=True) from err

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
            labels=input.labels, schedule=input.schedule)
        try:
            child = await workflow.execute_child_workflow(
                snapshot.WORKFLOW, request,
                id=snapshot.snapshot_workflow_id(self.cluster, input.namespace, outcome.snapshot),
                result_type=SnapshotVirtualMachineResult,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=child_search_attributes(input.namespace, outcome.vm,
                                                          "snapshot", self.cluster),
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
            outcome.phase, outcome.error_type = "Failed", SNAPSHOT_ALREADY_STARTED
            outcome.error = f"a snapshot named {outcome.snapshot} is already being taken"
            return
        outcome.phase, outcome.ready_to_use = child.phase, child.ready_to_use
        outcome.indications = list(child.indications)
        outcome.freeze_window_ms = child.freeze_window_ms
        self._details()

    async def _prune(self, input: ScheduledSnapshotInput, outcome: VmOutcome) -> None:
        try:
            records = await saga.step(
                LIST_SCHEDULED_SNAPSHOTS,
                ScheduledSnapshotsQuery(namespace=input.namespace, schedule=input.schedule,
                                        vm=outcome.vm),
                retry=STEP_RETRY)
        except ActivityError as err:
            outcome.prune_errors.append(f"listing the snapshots: {describe(err)[0]}")
            return
        plan = retention_plan(records, input.keep)
        outcome.kept = plan.keep
        for name in plan.prune:  # oldest first, one at a time: the API server is shared
            try:
                await workflow.execute_child_workflow(
                    delete_snapshot.WORKFLOW,
                    DeleteVirtualMachineSnapshotInput(namespace=input.namespace, name=name),
                    id=delete_snapshot.delete_snapshot_workflow_id(self.cluster, input.namespace,
                                                                   name),
                    result_type=DeleteVirtualMachineSnapshotResult,
                    parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                    search_attributes=child_search_attributes(input.namespace, outcome.vm,
                                                              "delete", self.cluster),
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

    def _details(self) -> None:
        workflow.set_current_details(self.details())

    def details(self) -> str:
        result = self.result
        done = [o for o in result.vms if o.phase != "InProgress"]
        pruned = sum(len(o.pruned) for o in result.vms)
        lines = [f"**{self.step}** schedule {result.schedule} ({result.target}) in "
                 f"{result.namespace}",
                 f"{len(done)}/{len(result.vms)} VM(s) done, "
                 f"{len(result.failed)} failed, {pruned} snapshot(s) pruned"]
        return " · ".join(lines)


def _child_failure(err: ChildWorkflowError) -> tuple[str, str]:
    """The message and type of a child's failure (the child's own ApplicationError)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message, cause.type or "ApplicationError"
    if isinstance(cause, TemporalCancelled):
        return "canceled", CANCELED
    return describe(cause or err)
