"""`RestoreVirtualMachine`: bring a VM back to a snapshot, in place or into a new VM.

Steps (`_restore` reads as them), each registering its undo before it runs:

  1. `_prepare`        the snapshot must be Succeeded and ready; plan one PVC per volume
  2. `_record`         the VirtualMachineRestore record (InProgress)
  3. `_lock`           the target's operation lock (in place only) and this run registered
                       as a user of the snapshot, so neither a snapshot nor a deletion
                       interleaves
  4. `_stop_if_running` a running target: refused (policy `fail`) or stopped (`stop`)
  5. `_create_pvcs`, `_wait_bound`  new PVCs from the VolumeSnapshots, Bound within
                       `bound_wait` (default 10m; `workflows.restored_pvcs`, shared with
                       the clone)
  6. `_apply_vm`       the snapshot's VM spec, pointed at the new PVCs, written into the
                       target (or a new VM created, Halted)
  7. `_restart`        a VM the restore stopped is started again

On failure or cancellation the operation frame runs the saga: it deletes the PVCs this
restore made, puts the VM spec back, starts a VM it stopped, unregisters from the
snapshot, releases the lock and marks the record Failed. The old PVCs are never deleted.

Names: workflow ID `restore/{namespace}/{target}` (target = the snapshot's VM when
restoring in place), so one restore per VM runs at a time; the restore is called
`{target}-restore-{YYYYMMDD-HHMMSS}-{run}` (UTC workflow start, the last six hex digits
of the run ID: two restores in one second differ) and its PVCs `{restore}-{volume}`.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.saga as saga
    from contracts.lock import LOCK_VM, UNLOCK_VM, VmLockInput
    from contracts.reporting import (
        RECORD_VM_EVENT,
        RESTORE_FAILED,
        RESTORE_SUCCEEDED,
        VmEventInput,
        record_compensation,
    )
    from contracts.restore import (
        ADD_SNAPSHOT_USER,
        APPLY_RESTORED_VM,
        CREATE_RESTORE_RECORD,
        PREPARE_RESTORE,
        PUT_BACK_VM,
        REMOVE_SNAPSHOT_USER,
        RESTORE_LABEL,
        START_VM,
        STOP_VM,
        VM_RUNNING,
        WORKFLOW,
        WRITE_RESTORE_STATUS,
        ApplyRestoredVmInput,
        PrepareRestoreInput,
        PutBackVmInput,
        RestorePlan,
        RestoreProgress,
        RestoreRecordInput,
        RestoreVirtualMachineInput,
        RestoreVirtualMachineResult,
        SnapshotUserInput,
        VmPowerInput,
    )
    from workflows.frame import Operation
    from workflows.restored_pvcs import WAIT_GRACE, WAIT_HEARTBEAT, RestoredPvcs


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class RestoreVirtualMachine(Operation[RestoreVirtualMachineInput, RestoreVirtualMachineResult]):
    def __init__(self) -> None:
        super().__init__()
        self._plan: RestorePlan | None = None
        self._pvcs: RestoredPvcs | None = None

    @workflow.run
    async def run(self, input: RestoreVirtualMachineInput) -> RestoreVirtualMachineResult:
        self.begin(input, RestoreVirtualMachineResult(
            namespace=input.namespace, name="", snapshot=input.snapshot,
            target=input.target or "?", phase="InProgress",
            workflow_id=workflow.info().workflow_id, started_at=workflow.now()))
        await self.run_steps(self._restore())
        await self.report()
        return self.result

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
        return RestoreProgress(step=self.step, result=self.result,
                               pending_compensations=self.saga.pending)

    # ---- steps ----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        input, result = self.input, self.result
        self.enter("prepare")
        plan = await saga.step(
            PREPARE_RESTORE,
            PrepareRestoreInput(namespace=input.namespace, snapshot=input.snapshot,
                                target=input.target,
                                stamp=f"{result.started_at:%Y%m%d-%H%M%S}-{saga.run_suffix()}"))
        self._plan = plan
        result.target, result.name = plan.target, plan.restore_name
        self._pvcs = RestoredPvcs(input.namespace, plan.restore_name, RESTORE_LABEL,
                                  "the restored PVCs")
        result.volumes = self._pvcs.plan(plan)

    async def _record(self) -> None:
        self.saga.add("mark the record Failed", self._write_failed_status)
        self.enter("record")
        await saga.step(CREATE_RESTORE_RECORD, self._record_input())
        await self._write_status()

    async def _lock(self) -> None:
        if self._require_plan().target_exists:
            self.saga.add("release the VM lock", self._unlock)
            self.enter("lock")
            await saga.step(LOCK_VM, self._lock_input())
        self.saga.add("unregister from the snapshot", self._remove_user)
        await saga.step(ADD_SNAPSHOT_USER, self._user_input())

    async def _stop_if_running(self) -> None:
        input, result = self.input, self.result
        if not self._require_plan().target_running:
            return
        if input.running_vm_policy == "fail":
            raise ApplicationError(
                f"VM {input.namespace}/{result.target} is running; stop it first or restore "
                'with running_vm_policy "stop"', type=VM_RUNNING, non_retryable=True)
        self.saga.add("start the VM again", self._start_vm)
        self.enter("stop")
        await saga.step(STOP_VM, self._power_input(),
                        start_to_close=timedelta(seconds=input.stop_wait) + WAIT_GRACE,
                        heartbeat=WAIT_HEARTBEAT)
        result.stopped_vm = True

    async def _create_pvcs(self) -> None:
        self.enter("create PVCs")
        await self._require_pvcs().create(self.saga, self._require_plan())

    async def _wait_bound(self) -> None:
        self.enter("wait for PVCs")
        await self._require_pvcs().wait_bound(self._require_plan(), self.input.bound_wait)

    async def _apply_vm(self) -> None:
        input, result, plan = self.input, self.result, self._require_plan()
        self.saga.add("put the VM back", self._put_back)
        self.enter("apply VM")
        await saga.step(
            APPLY_RESTORED_VM,
            ApplyRestoredVmInput(namespace=input.namespace, target=result.target,
                                 restore_name=result.name, snapshot=input.snapshot,
                                 snapshot_vm=plan.snapshot_vm,
                                 claims={v.old_claim: v.pvc_name for v in plan.volumes},
                                 create=not plan.target_exists))
        result.created_vm = not plan.target_exists

    async def _restart(self) -> None:
        if self.result.stopped_vm:
            self.enter("start")
            await saga.step(START_VM, self._power_input())
            self.result.restarted_vm = True

    async def _succeed(self) -> None:
        """Succeeded: from here nothing is undone; unregistering and unlocking are best
        effort (a closed run's lock and registration are taken over / cleaned later)."""
        result = self.result
        saga.raise_if_cancelled()  # a cancel spent on a step that completed anyway
        self.saga.clear()
        self.enter("succeeded")
        result.phase = "Succeeded"
        result.finished_at = workflow.now()
        await self._write_status()
        releases = [self._remove_user]
        if self._require_plan().target_exists:
            releases.append(self._unlock)
        for release in releases:
            try:
                await release()
            except ActivityError as err:
                workflow.logger.error("after the restore, releasing failed: %s", err)
        self.enter("done")

    # ---- the frame's hooks ------------------------------------------------------------------

    def details(self) -> str:
        result = self.result
        return (f"**{self.step}** restore of {result.namespace}/{result.snapshot} into "
                f"{result.target} · phase {result.phase}"
                + (f" · error: {result.error}" if result.error else ""))

    async def report(self) -> None:
        """An Event on the target VM: RestoreSucceeded or RestoreFailed."""
        result = self.result
        ok = result.phase == "Succeeded"
        if not ok:
            record_compensation(workflow.metric_meter(), "restore")  # not emitted on replay
        await saga.report(RECORD_VM_EVENT, VmEventInput(
            namespace=result.namespace, vm=result.target, action="Restore",
            snapshot=result.snapshot, reason=RESTORE_SUCCEEDED if ok else RESTORE_FAILED,
            type="Normal" if ok else "Warning",
            message=f"restored from snapshot {result.snapshot}" if ok
            else f"restore from snapshot {result.snapshot} failed: {result.error}"))

    # ---- compensation ---------------------------------------------------------------------

    async def _write_failed_status(self) -> None:
        await saga.compensation(WRITE_RESTORE_STATUS, self._record_input())

    async def _unlock(self) -> None:
        await saga.compensation(UNLOCK_VM, self._lock_input())

    async def _remove_user(self) -> None:
        await saga.compensation(REMOVE_SNAPSHOT_USER, self._user_input())

    async def _start_vm(self) -> None:
        await saga.compensation(START_VM, self._power_input())

    async def _put_back(self) -> None:
        result = self.result
        await saga.compensation(
            PUT_BACK_VM,
            PutBackVmInput(namespace=self.input.namespace, target=result.target,
                           restore_name=result.name, original=self._require_plan().target_vm))

    # ---- helpers --------------------------------------------------------------------------

    def _record_input(self) -> RestoreRecordInput:
        return RestoreRecordInput(namespace=self.input.namespace, result=self.result)

    async def _write_status(self) -> None:
        await saga.step(WRITE_RESTORE_STATUS, self._record_input())

    def _lock_input(self) -> VmLockInput:
        return VmLockInput(namespace=self.input.namespace, vm=self.result.target,
                           operation="restore")

    def _user_input(self) -> SnapshotUserInput:
        return SnapshotUserInput(namespace=self.input.namespace, snapshot=self.input.snapshot)

    def _power_input(self) -> VmPowerInput:
        return VmPowerInput(namespace=self.input.namespace, vm=self.result.target,
                            timeout_seconds=self.input.stop_wait)

    def _require_plan(self) -> RestorePlan:
        assert self._plan is not None, "the restore is planned in step 1"
        return self._plan

    def _require_pvcs(self) -> RestoredPvcs:
        assert self._pvcs is not None, "the PVCs are planned in step 1"
        return self._pvcs
