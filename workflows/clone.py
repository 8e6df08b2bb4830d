"""`CloneVirtualMachine`: a new VM from a snapshot's content, or from a live VM.

Steps (`_clone` reads as them), each registering its undo before it runs:

  1. `_check_input`, `_check_source`, `_record`: filters and patches checked (nothing
     changes on a bad one); from `source_vm`, the target must be absent and every
     PVC/DataVolume disk snapshot-eligible; then the record (`VirtualMachineClone`)
  2. `_take_temporary_snapshot`: from `source_vm`, a temporary snapshot, taken by the
     snapshot workflow as a child (`SnapshotInProgress`)
  3. `_register`, `_restore_pvcs`: this run registered as a user of the snapshot; one
     new PVC per volume from its VolumeSnapshot, Bound within `bound_wait`
     (`RestoreInProgress`; `workflows.restored_pvcs`, shared with the restore)
  4. `_create_vm`: the snapshot's VM copy (read by the activity from the snapshot's
     content, never carried in the history) transformed by `rules.clone_spec` within the
     worker's patch policy (MACs, serial, UUID, filters, patches, runStrategy; DataVolume
     templates renamed to the new PVCs) (`CreatingTargetVM`); a clone that starts by
     itself binds its WaitForFirstConsumer PVCs, and the clone waits for that
  5. `_drop_temporary_snapshot`: deleted (child `DeleteVirtualMachineSnapshot`) once the
     VM is made from its content, or in the saga when the clone fails before. A clone
     left stopped on WaitForFirstConsumer storage has PVCs not provisioned yet, and a
     CSI provisioner refuses a VolumeSnapshot being deleted: the deletion is then
     started on its own (it outlives the clone) and waits until they are Bound, as
     KubeVirt's clone keeps its snapshot until its PVCs bind

A snapshot that left a disk out (its storage has no VolumeSnapshotClass) is refused
before anything is made: the clone would share the source's disk. `missing_volumes:
drop` clones without those disks instead.

On failure or cancellation the operation frame runs the saga: it deletes the target VM
and PVCs this clone made (labelled `vmsnap.io/clone`) and the temporary snapshot, and
marks the record Failed.

Names: workflow ID `clone/{namespace}/{target}`; the clone is named
`{target}-clone-{YYYYMMDD-HHMMSS}-{the last six hex digits of the run ID}`, its PVCs
`{clone}-{volume}`, its temporary snapshot `{clone}-tmp`.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    import contracts.delete_snapshot as delete_snapshot
    import contracts.snapshot as snapshot
    import rules.naming as naming
    import workflows.saga as saga
    from contracts.clone import (
        CHECK_CLONE_SOURCE,
        CLONE_LABEL,
        CREATE_CLONE_VM,
        DELETE_CLONE_VM,
        INVALID_CLONE_SPEC,
        PREPARE_CLONE,
        WORKFLOW,
        WRITE_CLONE_RECORD,
        CheckCloneSourceInput,
        CloneProgress,
        CloneRecordInput,
        CloneVirtualMachineInput,
        CloneVirtualMachineResult,
        CloneVmOptions,
        CloneVmRef,
        CreateCloneVmInput,
        PrepareCloneInput,
    )
    from contracts.common import SNAPSHOT_NOT_FOUND
    from contracts.delete_snapshot import DeleteVirtualMachineSnapshotInput
    from contracts.reporting import (
        CLONE_FAILED,
        CLONE_SUCCEEDED,
        RECORD_VM_EVENT,
        VmEventInput,
        record_compensation,
    )
    from contracts.restore import (
        ADD_SNAPSHOT_USER,
        REMOVE_SNAPSHOT_USER,
        RestorePlan,
        SnapshotUserInput,
    )
    from contracts.snapshot import SnapshotVirtualMachineInput, SnapshotVirtualMachineResult
    from rules.clone_spec import CloneSpecError, parse_patches, validate_filters
    from workflows.admission import admit
    from workflows.failures import describe
    from workflows.frame import Operation
    from workflows.restored_pvcs import RestoredPvcs


# Run strategies under which the new VM starts by itself (and so consumes its PVCs).
STARTS = ("Always", "RerunOnFailure", "Once")


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class CloneVirtualMachine(Operation[CloneVirtualMachineInput, CloneVirtualMachineResult]):
    def __init__(self) -> None:
        super().__init__()
        self._plan: RestorePlan | None = None
        self._pvcs: RestoredPvcs | None = None
        self._user_registered = False

    @workflow.run
    async def run(self, input: CloneVirtualMachineInput) -> CloneVirtualMachineResult:
        now = workflow.now()
        name = naming.bounded(
            f"{input.target}-clone-{now:%Y%m%d-%H%M%S}-{saga.run_suffix()}", naming.MAX_LABEL)
        self.begin(input, CloneVirtualMachineResult(
            namespace=input.namespace, name=name, target=input.target,
            source_vm=input.source_vm, source_snapshot=input.source_snapshot,
            snapshot=input.source_snapshot, phase="RestoreInProgress",
            workflow_id=workflow.info().workflow_id, started_at=now))
        self._check_input()
        await self.admitted(admit([input.namespace], patches=input.patches))
        await self.run_steps(self._clone())
        await self.report()
        return self.result

    async def _clone(self) -> None:
        await self._check_source()
        await self._record()
        await self._take_temporary_snapshot()
        await self._register()
        await self._restore_pvcs()
        await self._create_vm()
        await self._drop_temporary_snapshot()
        await self._succeed()

    @workflow.query(name="progress")
    def progress(self) -> CloneProgress:
        return CloneProgress(step=self.step, result=self.result,
                             pending_compensations=self.saga.pending)

    # ---- steps ------------------------------------------------------------------------------

    def _check_input(self) -> None:
        """Filters and patches that cannot apply fail the run before anything is made."""
        input = self.input
        try:
            validate_filters(input.label_filters, "label")
            validate_filters(input.annotation_filters, "annotation")
            parse_patches(input.patches)
        except CloneSpecError as exc:
            raise ApplicationError(str(exc), type=INVALID_CLONE_SPEC,
                                   non_retryable=True) from None

    async def _check_source(self) -> None:
        """From a VM: the target must be absent and every disk snapshot-eligible."""
        input = self.input
        if not input.source_vm:
            return
        self.enter("check source")
        await saga.step(CHECK_CLONE_SOURCE, CheckCloneSourceInput(
            namespace=input.namespace, vm=input.source_vm, target=input.target))
        self.result.phase = "SnapshotInProgress"

    async def _record(self) -> None:
        self.saga.add("mark the record Failed", self._write_record)
        self.enter("record")
        await self._write_record()

    async def _take_temporary_snapshot(self) -> None:
        input, result = self.input, self.result
        if not input.source_vm:
            return
        name = naming.bounded(f"{result.name}-tmp", naming.MAX_NAME)
        result.snapshot, result.temporary_snapshot = name, True
        self.saga.add("delete the temporary snapshot", self._delete_temporary_snapshot)
        self.enter("snapshot")
        await self._write_record()
        await workflow.execute_child_workflow(
            snapshot.WORKFLOW,
            SnapshotVirtualMachineInput(namespace=input.namespace, vm=input.source_vm,
                                        name=name),
            id=snapshot.snapshot_workflow_id(self.cluster, input.namespace, name),
            result_type=SnapshotVirtualMachineResult,
            cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED)

    async def _register(self) -> None:
        self.result.phase = "RestoreInProgress"
        self.saga.add("unregister from the snapshot", self._unregister)
        self.enter("register")
        await saga.step(ADD_SNAPSHOT_USER, self._user_input())
        self._user_registered = True

    async def _restore_pvcs(self) -> None:
        input, result = self.input, self.result
        self.enter("restore PVCs")
        await self._write_record()
        plan = await saga.step(PREPARE_CLONE, PrepareCloneInput(
            namespace=input.namespace, snapshot=result.snapshot or "", target=input.target,
            clone_name=result.name, missing_volumes=input.missing_volumes,
            fresh_persistent_state=input.fresh_persistent_state))
        self._plan = plan
        result.dropped_volumes = plan.dropped_volumes
        self._pvcs = RestoredPvcs(input.namespace, result.name, CLONE_LABEL, "the clone's PVCs")
        result.volumes = self._pvcs.plan(plan)
        await self._pvcs.create(self.saga, plan)
        await self._pvcs.wait_bound(plan, input.bound_wait, pending_for_consumer_is_ready=True)

    async def _drop_temporary_snapshot(self) -> None:
        """The VM is made from the snapshot's content: the temporary snapshot has served,
        unless a PVC still waits for the VM's first start to be provisioned from it."""
        result, plan = self.result, self._require_plan()
        if not result.temporary_snapshot:
            return
        if plan.waits_for_consumer and self.input.run_strategy not in STARTS:
            self.enter("hand the temporary snapshot over")
            await self._delete_temporary_snapshot_after_bound(
                [v.pvc_name for v in plan.volumes if v.waits_for_consumer])
            return
        self.enter("delete temporary snapshot")
        await self._delete_temporary_snapshot()

    async def _create_vm(self) -> None:
        input, result, plan = self.input, self.result, self._require_plan()
        result.phase = "CreatingTargetVM"
        self.saga.add("delete the target VM", self._delete_vm)
        self.enter("create VM")
        await self._write_record()
        await saga.step(CREATE_CLONE_VM, CreateCloneVmInput(
            namespace=input.namespace, clone_name=result.name,
            options=CloneVmOptions.of(input), source=plan.source,
            claims={v.volume_name: v.pvc_name for v in plan.volumes},
            drop=plan.dropped_volumes))
        if plan.waits_for_consumer and input.run_strategy in STARTS:
            self.enter("wait for PVCs to bind")
            await self._require_pvcs().wait_bound(plan, input.bound_wait)

    async def _succeed(self) -> None:
        """Succeeded: nothing is undone any more; a kept snapshot is free to delete again."""
        result = self.result
        saga.raise_if_cancelled()  # a cancel spent on a step that completed anyway
        self.saga.clear()
        result.phase = "Succeeded"
        result.finished_at = workflow.now()
        self.enter("succeeded")
        await self._write_record()
        if self._user_registered:
            try:
                await self._unregister()
            except ActivityError as err:
                workflow.logger.error("after the clone, unregistering failed: %s", err)

    # ---- the frame's hooks --------------------------------------------------------------------

    def details(self) -> str:
        result = self.result
        return (f"**{self.step}** clone into {result.namespace}/{result.target}"
                f" · phase {result.phase}")

    async def report(self) -> None:
        """An Event on the source VM when cloned from one, else on the clone: CloneSucceeded
        or CloneFailed (a clone rolled back is gone, so a failure from a snapshot has none)."""
        result = self.result
        ok = result.phase == "Succeeded"
        if not ok:
            record_compensation(workflow.metric_meter(), "clone")  # not emitted on replay
        await saga.report(RECORD_VM_EVENT, VmEventInput(
            namespace=result.namespace, vm=result.source_vm or result.target, action="Clone",
            snapshot=result.snapshot, reason=CLONE_SUCCEEDED if ok else CLONE_FAILED,
            type="Normal" if ok else "Warning",
            message=f"cloned into {result.target}" if ok
            else f"clone into {result.target} failed: {result.error}"))

    # ---- compensation -----------------------------------------------------------------------

    async def _unregister(self) -> None:
        await saga.compensation(REMOVE_SNAPSHOT_USER, self._user_input())
        self._user_registered = False

    async def _delete_temporary_snapshot(self) -> None:
        input, result = self.input, self.result
        if (result.temporary_snapshot_deleted or result.temporary_snapshot_kept_until_bound
                or not result.snapshot):
            return
        if self._user_registered:
            await self._unregister()
        try:
            await workflow.execute_child_workflow(
                delete_snapshot.WORKFLOW,
                DeleteVirtualMachineSnapshotInput(namespace=input.namespace,
                                                  name=result.snapshot),
                id=delete_snapshot.delete_snapshot_workflow_id(self.cluster, input.namespace,
                                                               result.snapshot))
        except ChildWorkflowError as err:
            message, error_type = describe(err)
            if error_type != SNAPSHOT_NOT_FOUND:
                raise ApplicationError(f"deleting the temporary snapshot: {message}",
                                       type=error_type) from err
        result.temporary_snapshot_deleted = True

    async def _delete_temporary_snapshot_after_bound(self, claims: list[str]) -> None:
        """Start the deletion on its own (abandoned when the clone ends): it waits until
        `claims` are Bound or gone. Nothing undoes it: deleting the clone's PVCs lets it
        go on."""
        input, result = self.input, self.result
        assert result.snapshot, "a temporary snapshot was taken"
        if self._user_registered:
            await self._unregister()
        await workflow.start_child_workflow(
            delete_snapshot.WORKFLOW,
            DeleteVirtualMachineSnapshotInput(namespace=input.namespace, name=result.snapshot,
                                              after_claims_bound=claims),
            id=delete_snapshot.delete_snapshot_workflow_id(self.cluster, input.namespace,
                                                           result.snapshot),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON)
        result.temporary_snapshot_kept_until_bound = claims  # the deletion's now, not ours

    async def _delete_vm(self) -> None:
        await saga.compensation(DELETE_CLONE_VM, CloneVmRef(
            namespace=self.input.namespace, target=self.input.target,
            clone_name=self.result.name))

    async def _write_record(self) -> None:
        await saga.step(WRITE_CLONE_RECORD,
                        CloneRecordInput(namespace=self.input.namespace, result=self.result))

    # ---- helpers ----------------------------------------------------------------------------

    def _user_input(self) -> SnapshotUserInput:
        return SnapshotUserInput(namespace=self.input.namespace,
                                 snapshot=self.result.snapshot or "", operation="clone")

    def _require_pvcs(self) -> RestoredPvcs:
        assert self._pvcs is not None, "the PVCs are planned before the VM is made"
        return self._pvcs

    def _require_plan(self) -> RestorePlan:
        assert self._plan is not None, "the clone is planned before its VM is made"
        return self._plan
