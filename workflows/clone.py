"""`CloneVirtualMachine`: a new VM from a snapshot's content, or from a live VM.

Steps, each registering its undo before it runs:

  1. check the input (filters, patches: nothing changes on a bad one), then the
     record (`VirtualMachineClone`)
  2. from `source_vm`: the target must be absent and every PVC/DataVolume disk
     snapshot-eligible; then a temporary snapshot, taken by the snapshot
     workflow as a child (`SnapshotInProgress`)
  3. this run registered as a user of the snapshot; one new PVC per volume
     from its VolumeSnapshot, Bound within `bound_wait` (`RestoreInProgress`)
  4. the temporary snapshot deleted (child `DeleteVirtualMachineSnapshot`) once
     the PVCs are Bound, or in the saga when the clone fails before
  5. the new VM: the snapshot's VM copy transformed by `rules.clone_spec`
     (MACs, serial, UUID, filters, patches, runStrategy) (`CreatingTargetVM`)

On failure or cancellation the saga deletes the target VM and PVCs this
clone made (labelled `vmsnap.io/clone`) and the temporary snapshot, and marks
the record Failed.

Names: workflow ID `clone/{namespace}/{target}`; the clone is named
`{target}-clone-{YYYYMMDD-HHMMSS}-{4 chars of the run ID}`, its PVCs
`{clone}-{volume}`, its temporary snapshot `{clone}-tmp`.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    import activities.restore_names as names
    import rules.naming as naming
    import workflows.saga as saga
    from activities.events import CLONE_FAILED, CLONE_SUCCEEDED
    from activities.metrics import record_compensation
    from rules.clone_spec import CloneSpecError, parse_patches, validate_filters
    from rules.models import PvcState
    from workflows.clone_models import (
        CheckCloneSourceInput,
        CloneProgress,
        CloneRecordInput,
        CloneVirtualMachineInput,
        CloneVirtualMachineResult,
        CloneVmRef,
        CreateCloneVmInput,
        PrepareCloneInput,
    )
    from workflows.failures import describe
    from workflows.models import (
        DeleteVirtualMachineSnapshotInput,
        SnapshotVirtualMachineInput,
        SnapshotVirtualMachineResult,
    )
    from workflows.reporting import record_vm_event
    from workflows.restore_models import (
        PvcsInput,
        RestoredVolumeResult,
        RestorePlan,
        SnapshotUserInput,
    )
    from workflows.saga import Saga, run_or_undo

WAIT_GRACE = timedelta(seconds=60)
WAIT_HEARTBEAT = timedelta(seconds=30)
CLONE_LABEL = "vmsnap.io/clone"


def clone_workflow_id(namespace: str, target: str) -> str:
    return f"clone/{namespace}/{target}"


@workflow.defn(name="CloneVirtualMachine", failure_exception_types=[ValidationError])
class CloneVirtualMachine:
    def __init__(self) -> None:
        self._saga = Saga()
        self._step = "starting"
        self._input: CloneVirtualMachineInput | None = None
        self._result: CloneVirtualMachineResult | None = None
        self._plan: RestorePlan | None = None
        self._user_registered = False

    @workflow.run
    async def run(self, input: CloneVirtualMachineInput) -> CloneVirtualMachineResult:
        self._input = input
        now = workflow.now()
        name = naming.bounded(
            f"{input.target}-clone-{now:%Y%m%d-%H%M%S}-{saga.run_suffix()}",
            naming.MAX_LABEL)
        self._result = CloneVirtualMachineResult(
            namespace=input.namespace, name=name, target=input.target,
            source_vm=input.source_vm, source_snapshot=input.source_snapshot,
            snapshot=input.source_snapshot, phase="RestoreInProgress",
            workflow_id=workflow.info().workflow_id, started_at=now)
        try:
            validate_filters(input.label_filters, "label")
            validate_filters(input.annotation_filters, "annotation")
            parse_patches(input.patches)
        except CloneSpecError as exc:
            raise ApplicationError(str(exc), type=names.INVALID_CLONE_SPEC,
                                   non_retryable=True) from None
        await run_or_undo(self._clone(), self._fail, lambda: self._step)
        await self._report()
        return self._require_result()

    async def _report(self) -> None:
        """An Event on the source VM when cloned from one, else on the clone: CloneSucceeded
        or CloneFailed (a clone rolled back is gone, so a failure from a snapshot has none)."""
        result = self._require_result()
        ok = result.phase == "Succeeded"
        await record_vm_event(
            namespace=result.namespace, vm=result.source_vm or result.target, ok=ok,
            action="Clone", snapshot=result.snapshot,
            reason=CLONE_SUCCEEDED if ok else CLONE_FAILED,
            message=f"cloned into {result.target}" if ok
            else f"clone into {result.target} failed: {result.error}")

    async def _clone(self) -> None:
        input, result = self._require_input(), self._require_result()
        if input.source_vm:
            self._enter("check source")
            await saga.step(
                names.CHECK_CLONE_SOURCE,
                CheckCloneSourceInput(namespace=input.namespace, vm=input.source_vm,
                                      target=input.target), bool)
            result.phase = "SnapshotInProgress"
        self._saga.add("mark the record Failed", self._write_record)
        self._enter("record")
        await self._write_record()
        if input.source_vm:
            await self._take_temporary_snapshot(input.source_vm)
        result.phase = "RestoreInProgress"
        await self._register()
        await self._restore_pvcs()
        await self._drop_temporary_snapshot()
        await self._create_vm()
        saga.raise_if_cancelled()  # a cancel spent on a step that completed anyway
        self._saga.clear()
        result.phase = "Succeeded"
        result.finished_at = workflow.now()
        self._enter("succeeded")
        await self._write_record()
        if self._user_registered:  # from a kept snapshot: it is free to delete again
            try:
                await self._unregister()
            except ActivityError as err:
                workflow.logger.error("after the clone, unregistering failed: %s", err)

    @workflow.query(name="progress")
    def progress(self) -> CloneProgress:
        return CloneProgress(step=self._step, result=self._require_result(),
                             pending_compensations=self._saga.pending)

    # ---- steps ------------------------------------------------------------------------------

    async def _take_temporary_snapshot(self, vm: str) -> None:
        input, result = self._require_input(), self._require_result()
        snapshot = naming.bounded(f"{result.name}-tmp", naming.MAX_NAME)
        result.snapshot, result.temporary_snapshot = snapshot, True
        self._saga.add("delete the temporary snapshot", self._delete_temporary_snapshot)
        self._enter("snapshot")
        await self._write_record()
        await workflow.execute_child_workflow(
            "SnapshotVirtualMachine",
            SnapshotVirtualMachineInput(namespace=input.namespace, vm=vm, name=snapshot),
            id=naming.snapshot_workflow_id(input.namespace, snapshot),
            result_type=SnapshotVirtualMachineResult,
            cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED)

    async def _register(self) -> None:
        self._saga.add("unregister from the snapshot", self._unregister)
        self._enter("register")
        await saga.step(names.ADD_SNAPSHOT_USER, self._user_input(), bool)
        self._user_registered = True

    async def _restore_pvcs(self) -> None:
        input, result = self._require_input(), self._require_result()
        self._enter("restore PVCs")
        await self._write_record()
        plan = await saga.step(
            names.PREPARE_CLONE,
            PrepareCloneInput(namespace=input.namespace, snapshot=result.snapshot or "",
                              target=input.target, clone_name=result.name), RestorePlan)
        self._plan = plan
        result.volumes = [RestoredVolumeResult(volume_name=v.volume_name,
                                               volume_snapshot=v.volume_snapshot,
                                               pvc_name=v.pvc_name) for v in plan.volumes]
        self._saga.add("delete the clone's PVCs", self._delete_pvcs)
        await saga.step(
            names.CREATE_RESTORED_PVCS,
            PvcsInput(namespace=input.namespace, pvcs=[v.pvc_body for v in plan.volumes]),
            list[str])
        if not plan.volumes:
            return
        bound = timedelta(seconds=input.bound_wait)
        states = await saga.step(
            names.WAIT_RESTORED_PVCS_BOUND,
            PvcsInput(namespace=input.namespace, names=[v.pvc_name for v in plan.volumes],
                      timeout_seconds=input.bound_wait),
            list[PvcState], start_to_close=bound + WAIT_GRACE, heartbeat=WAIT_HEARTBEAT,
            schedule_to_close=bound + WAIT_GRACE * 2)
        phases = {s.name: s.phase for s in states}
        for volume in result.volumes:
            volume.phase = phases.get(volume.pvc_name)

    async def _drop_temporary_snapshot(self) -> None:
        """The PVCs are Bound: the temporary snapshot has served (also on later failure)."""
        result = self._require_result()
        if result.temporary_snapshot:
            self._enter("delete temporary snapshot")
            await self._delete_temporary_snapshot()

    async def _create_vm(self) -> None:
        input, result, plan = self._require_input(), self._require_result(), self._require_plan()
        result.phase = "CreatingTargetVM"
        self._saga.add("delete the target VM", self._delete_vm)
        self._enter("create VM")
        await self._write_record()
        await saga.step(
            names.CREATE_CLONE_VM,
            CreateCloneVmInput(namespace=input.namespace, clone_name=result.name, spec=input,
                               snapshot_vm=plan.snapshot_vm,
                               claims={v.old_claim: v.pvc_name for v in plan.volumes}),
            bool)

    # ---- compensation -----------------------------------------------------------------------

    async def _fail(self, reason: str, error_type: str) -> ApplicationError:
        result = self._require_result()
        self._enter("compensating")
        result.phase = "Failed"
        result.error, result.error_type = reason, error_type
        result.finished_at = workflow.now()
        result.cleanup_errors = await self._saga.compensate()
        record_compensation(workflow.metric_meter(), "clone")  # not emitted on replay
        await self._report()
        self._enter("failed")
        return ApplicationError(reason, result, type=error_type, non_retryable=True)

    async def _unregister(self) -> None:
        await saga.compensation(names.REMOVE_SNAPSHOT_USER, self._user_input())
        self._user_registered = False

    async def _delete_temporary_snapshot(self) -> None:
        input, result = self._require_input(), self._require_result()
        if result.temporary_snapshot_deleted or not result.snapshot:
            return
        if self._user_registered:
            await self._unregister()
        try:
            await workflow.execute_child_workflow(
                "DeleteVirtualMachineSnapshot",
                DeleteVirtualMachineSnapshotInput(namespace=input.namespace,
                                                  name=result.snapshot),
                id=naming.delete_snapshot_workflow_id(input.namespace, result.snapshot))
        except ChildWorkflowError as err:
            message, error_type = describe(err)
            if error_type != "SnapshotNotFound":
                raise ApplicationError(f"deleting the temporary snapshot: {message}",
                                       type=error_type) from err
        result.temporary_snapshot_deleted = True

    async def _delete_pvcs(self) -> None:
        input, result = self._require_input(), self._require_result()
        await saga.compensation(
            names.DELETE_RESTORED_PVCS,
            PvcsInput(namespace=input.namespace, names=[v.pvc_name for v in result.volumes],
                      restore_name=result.name, owner_label=CLONE_LABEL))

    async def _delete_vm(self) -> None:
        input, result = self._require_input(), self._require_result()
        await saga.compensation(
            names.DELETE_CLONE_VM,
            CloneVmRef(namespace=input.namespace, target=input.target, clone_name=result.name))

    async def _write_record(self) -> None:
        await saga.step(
            names.WRITE_CLONE_RECORD,
            CloneRecordInput(namespace=self._require_input().namespace,
                             result=self._require_result()), bool)

    # ---- helpers ----------------------------------------------------------------------------

    def _enter(self, step: str) -> None:
        self._step = step
        result = self._require_result()
        workflow.set_current_details(f"**{step}** clone into {result.namespace}/{result.target}"
                                     f" · phase {result.phase}")

    def _user_input(self) -> SnapshotUserInput:
        return SnapshotUserInput(namespace=self._require_input().namespace,
                                 snapshot=self._require_result().snapshot or "",
                                 operation="clone")


    def _require_input(self) -> CloneVirtualMachineInput:
        assert self._input is not None, "the workflow has not started"
        return self._input

    def _require_result(self) -> CloneVirtualMachineResult:
        assert self._result is not None, "the workflow has not started"
        return self._result

    def _require_plan(self) -> RestorePlan:
        assert self._plan is not None, "the clone is planned before its VM is made"
        return self._plan



