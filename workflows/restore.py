"""`RestoreVirtualMachine`: bring a VM back to a snapshot, in place or into a new VM.

Steps (`run` reads as them), each registering its undo before it runs:

  1. `_prepare`        the snapshot must be Succeeded and ready; plan one PVC per volume
  2. `_record`         the VirtualMachineRestore record (InProgress)
  3. `_lock`           the target's operation lock (in place only) and this run registered
                       as a user of the snapshot, so neither a snapshot nor a deletion
                       interleaves
  4. `_stop_if_running` a running target: refused (policy `fail`) or stopped (`stop`)
  5. `_create_pvcs`, `_wait_bound`  new PVCs from the VolumeSnapshots, Bound within
                       `bound_wait` (default 10m)
  6. `_apply_vm`       the snapshot's VM spec, pointed at the new PVCs, written into the
                       target (or a new VM created, Halted)
  7. `_restart`        a VM the restore stopped is started again

On failure or cancellation the saga deletes the PVCs this restore made, puts
the VM spec back, starts a VM it stopped, unregisters from the snapshot,
releases the lock and marks the record Failed. The old PVCs are never deleted.

Names: workflow ID `restore/{namespace}/{target}` (target = the snapshot's VM
when restoring in place), so one restore per VM runs at a time; the restore
is called `{target}-restore-{YYYYMMDD-HHMMSS}-{run}` (UTC workflow start, 4
characters of the run ID: two restores in one second differ) and its
PVCs `{restore}-{volume}`.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import activities.names as snapshot_names
    import activities.restore_names as names
    import workflows.saga as saga
    from activities.events import RESTORE_FAILED, RESTORE_SUCCEEDED
    from activities.metrics import record_compensation
    from activities.models import VmLockInput
    from rules.models import PvcState
    from workflows.reporting import record_vm_event
    from workflows.restore_models import (
        ApplyRestoredVmInput,
        PrepareRestoreInput,
        PutBackVmInput,
        PvcsInput,
        RestoredVolumeResult,
        RestorePlan,
        RestoreProgress,
        RestoreRecordInput,
        RestoreVirtualMachineInput,
        RestoreVirtualMachineResult,
        SnapshotUserInput,
        VmPowerInput,
    )
    from workflows.saga import Saga, run_or_undo

WAIT_GRACE = timedelta(seconds=60)  # past a wait's own bound: the bound decides, not the timeout
WAIT_HEARTBEAT = timedelta(seconds=30)


def restore_workflow_id(namespace: str, target: str) -> str:
    """`restore/{namespace}/{target}`: one restore per VM at a time."""
    return f"restore/{namespace}/{target}"


@workflow.defn(name="RestoreVirtualMachine", failure_exception_types=[ValidationError])
class RestoreVirtualMachine:
    def __init__(self) -> None:
        self._saga = Saga()
        self._step = "starting"
        self._input: RestoreVirtualMachineInput | None = None
        self._result: RestoreVirtualMachineResult | None = None
        self._plan: RestorePlan | None = None
        self._record_made = False

    @workflow.run
    async def run(self, input: RestoreVirtualMachineInput) -> RestoreVirtualMachineResult:
        self._input = input
        now = workflow.now()
        target = input.target or "?"
        self._result = RestoreVirtualMachineResult(
            namespace=input.namespace, name="", snapshot=input.snapshot, target=target,
            phase="InProgress", workflow_id=workflow.info().workflow_id, started_at=now)
        await run_or_undo(self._restore(), self._fail, lambda: self._step)
        await self._report()
        return self._require_result()

    async def _report(self) -> None:
        """An Event on the target VM: RestoreSucceeded or RestoreFailed."""
        result = self._require_result()
        ok = result.phase == "Succeeded"
        await record_vm_event(
            namespace=result.namespace, vm=result.target, ok=ok, action="Restore",
            snapshot=result.snapshot, reason=RESTORE_SUCCEEDED if ok else RESTORE_FAILED,
            message=f"restored from snapshot {result.snapshot}" if ok
            else f"restore from snapshot {result.snapshot} failed: {result.error}")

    async def _restore(self) -> None:
        await self._prepare()
        await self._record()
        await self._lock()
        await self._stop_if_running()
        await self._create_pvcs()
        await self._wait_bound()
        await self._apply_vm()
        await self._restart()
        await self._succeed()

    @workflow.query(name="progress")
    def progress(self) -> RestoreProgress:
        """The step, the result so far, and what a failure now would undo."""
        return RestoreProgress(step=self._step, result=self._require_result(),
                               pending_compensations=self._saga.pending)

    # ---- steps ----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        input, result = self._require_input(), self._require_result()
        self._enter("prepare")
        plan = await saga.step(
            names.PREPARE_RESTORE,
            PrepareRestoreInput(namespace=input.namespace, snapshot=input.snapshot,
                                target=input.target,
                                stamp=f"{result.started_at:%Y%m%d-%H%M%S}-"
                                      f"{saga.run_suffix()}"),
            RestorePlan)
        self._plan = plan
        result.target, result.name = plan.target, plan.restore_name
        result.volumes = [RestoredVolumeResult(volume_name=v.volume_name,
                                               volume_snapshot=v.volume_snapshot,
                                               pvc_name=v.pvc_name) for v in plan.volumes]

    async def _record(self) -> None:
        self._saga.add("mark the record Failed", self._write_failed_status)
        self._enter("record")
        await saga.step(names.CREATE_RESTORE_RECORD, self._record_input(), bool)
        self._record_made = True
        await self._write_status()

    async def _lock(self) -> None:
        plan = self._require_plan()
        if plan.target_exists:
            self._saga.add("release the VM lock", self._unlock)
            self._enter("lock")
            await saga.step(snapshot_names.LOCK_VM, self._lock_input(), type(None))
        self._saga.add("unregister from the snapshot", self._remove_user)
        await saga.step(names.ADD_SNAPSHOT_USER, self._user_input(), bool)

    async def _stop_if_running(self) -> None:
        input, result, plan = self._require_input(), self._require_result(), self._require_plan()
        if not plan.target_running:
            return
        if input.running_vm_policy == "fail":
            raise ApplicationError(
                f"VM {input.namespace}/{result.target} is running; stop it first or restore "
                'with running_vm_policy "stop"', type=names.VM_RUNNING, non_retryable=True)
        self._saga.add("start the VM again", self._start_vm)
        self._enter("stop")
        await saga.step(
            names.STOP_VM, VmPowerInput(namespace=input.namespace, vm=result.target,
                                        timeout_seconds=input.stop_wait),
            bool, start_to_close=timedelta(seconds=input.stop_wait) + WAIT_GRACE,
            heartbeat=WAIT_HEARTBEAT)
        result.stopped_vm = True

    async def _create_pvcs(self) -> None:
        input, plan = self._require_input(), self._require_plan()
        self._saga.add("delete the restored PVCs", self._delete_pvcs)
        self._enter("create PVCs")
        await saga.step(
            names.CREATE_RESTORED_PVCS,
            PvcsInput(namespace=input.namespace, pvcs=[v.pvc_body for v in plan.volumes]),
            list[str])

    async def _wait_bound(self) -> None:
        input, result, plan = self._require_input(), self._require_result(), self._require_plan()
        self._enter("wait for PVCs")
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

    async def _apply_vm(self) -> None:
        input, result, plan = self._require_input(), self._require_result(), self._require_plan()
        self._saga.add("put the VM back", self._put_back)
        self._enter("apply VM")
        await saga.step(
            names.APPLY_RESTORED_VM,
            ApplyRestoredVmInput(namespace=input.namespace, target=result.target,
                                 restore_name=result.name, snapshot=input.snapshot,
                                 snapshot_vm=plan.snapshot_vm,
                                 claims={v.old_claim: v.pvc_name for v in plan.volumes},
                                 create=not plan.target_exists),
            bool)
        result.created_vm = not plan.target_exists

    async def _restart(self) -> None:
        result = self._require_result()
        if result.stopped_vm:
            self._enter("start")
            await saga.step(names.START_VM, self._power_input(), bool)
            result.restarted_vm = True

    async def _succeed(self) -> None:
        """Succeeded: from here nothing is undone; unregistering and unlocking are best
        effort (a closed run's lock and registration are taken over / cleaned later)."""
        result = self._require_result()
        saga.raise_if_cancelled()  # a cancel spent on a step that completed anyway
        self._saga.clear()
        self._enter("succeeded")
        result.phase = "Succeeded"
        result.finished_at = workflow.now()
        await self._write_status()
        for name, arg in ((names.REMOVE_SNAPSHOT_USER, self._user_input()),
                          (snapshot_names.UNLOCK_VM, self._lock_input())):
            if name == snapshot_names.UNLOCK_VM and not self._require_plan().target_exists:
                continue
            try:
                await saga.compensation(name, arg)
            except ActivityError as err:
                workflow.logger.error("after the restore, %s failed: %s", name, err)
        self._enter("done")

    # ---- compensation ---------------------------------------------------------------------

    async def _fail(self, reason: str, error_type: str) -> ApplicationError:
        result = self._require_result()
        self._enter("compensating")
        result.phase = "Failed"
        result.error, result.error_type = reason, error_type
        result.finished_at = workflow.now()
        result.cleanup_errors = await self._saga.compensate()
        record_compensation(workflow.metric_meter(), "restore")  # not emitted on replay
        await self._report()
        self._enter("failed")
        return ApplicationError(reason, result, type=error_type, non_retryable=True)

    async def _write_failed_status(self) -> None:
        if self._record_made or self._result is not None:
            await saga.compensation(names.WRITE_RESTORE_STATUS, self._record_input())

    async def _unlock(self) -> None:
        await saga.compensation(snapshot_names.UNLOCK_VM, self._lock_input())

    async def _remove_user(self) -> None:
        await saga.compensation(names.REMOVE_SNAPSHOT_USER, self._user_input())

    async def _start_vm(self) -> None:
        await saga.compensation(names.START_VM, self._power_input())

    async def _delete_pvcs(self) -> None:
        input, result = self._require_input(), self._require_result()
        await saga.compensation(
            names.DELETE_RESTORED_PVCS,
            PvcsInput(namespace=input.namespace, names=[v.pvc_name for v in result.volumes],
                      restore_name=result.name))

    async def _put_back(self) -> None:
        input, result, plan = self._require_input(), self._require_result(), self._require_plan()
        await saga.compensation(
            names.PUT_BACK_VM,
            PutBackVmInput(namespace=input.namespace, target=result.target,
                           restore_name=result.name, original=plan.target_vm))

    # ---- helpers --------------------------------------------------------------------------

    def _enter(self, step: str) -> None:
        self._step = step
        result = self._require_result()
        workflow.set_current_details(
            f"**{step}** restore of {result.namespace}/{result.snapshot} into "
            f"{result.target} · phase {result.phase}"
            + (f" · error: {result.error}" if result.error else ""))

    def _record_input(self) -> RestoreRecordInput:
        return RestoreRecordInput(namespace=self._require_input().namespace,
                                  result=self._require_result())

    async def _write_status(self) -> None:
        await saga.step(names.WRITE_RESTORE_STATUS, self._record_input(), bool)

    def _lock_input(self) -> VmLockInput:
        return VmLockInput(namespace=self._require_input().namespace,
                           vm=self._require_result().target, operation="restore")

    def _user_input(self) -> SnapshotUserInput:
        input = self._require_input()
        return SnapshotUserInput(namespace=input.namespace, snapshot=input.snapshot)

    def _power_input(self) -> VmPowerInput:
        input = self._require_input()
        return VmPowerInput(namespace=input.namespace, vm=self._require_result().target,
                            timeout_seconds=input.stop_wait)


    def _require_input(self) -> RestoreVirtualMachineInput:
        assert self._input is not None, "the workflow has not started"
        return self._input

    def _require_result(self) -> RestoreVirtualMachineResult:
        assert self._result is not None, "the workflow has not started"
        return self._result

    def _require_plan(self) -> RestorePlan:
        assert self._plan is not None, "the restore is planned in step 1"
        return self._plan
