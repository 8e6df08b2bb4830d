"""`RestoreVirtualMachine`: bring a VM back to a snapshot, in place or into a new VM.

Steps (`_restore` reads as them), each registering its undo before it runs:

  1. `_prepare`        the target's operation lock (in place only: an existing VM), then,
                       under it, the snapshot must be Succeeded and ready; plan one PVC
                       per volume (the plan is never read from a VM another operation
                       is changing)
  2. `_record`         the VirtualMachineRestore record (InProgress)
  3. `_lock`           this run registered as a user of the snapshot, so neither a
                       snapshot nor a deletion interleaves (runs started before the plan
                       took the lock take it here)
  4. `_make_target_ready` a running target, by the target readiness policy: refused
                       (FailImmediate), stopped (StopTarget), or waited for until its
                       user stops it (WaitGracePeriod, WaitEventually)
  5. `_create_pvcs`, `_wait_bound`  new PVCs from the VolumeSnapshots, Bound within
                       `bound_wait` (default 10m; `workflows.restored_pvcs`, shared with
                       the clone); on WaitForFirstConsumer storage, Pending is as far as
                       they go before the VM runs
  6. `_apply_vm`       the snapshot's VM spec, pointed at the new PVCs (DataVolume
                       templates renamed to them), written into the target with its own
                       metadata kept (or a new VM created, Halted, with a new identity);
                       the VM owns the restored PVCs
  7. `_restart`, `_wait_consumed`  a VM the restore stopped is started again; its
                       WaitForFirstConsumer PVCs bind as it starts

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
    from contracts.lock import (
        LEASE_RENEWAL,
        LOCK_BEFORE_PLANNING,
        LOCK_VM,
        RENEW_VM_LOCK,
        UNLOCK_VM,
        VmLockInput,
        lease_for,
    )
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
        WAIT_EVENTUALLY_SECONDS,
        WAIT_VM_STOPPED,
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
    from workflows.admission import admit
    from workflows.frame import Operation
    from workflows.restored_pvcs import WAIT_GRACE, WAIT_HEARTBEAT, RestoredPvcs


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class RestoreVirtualMachine(Operation[RestoreVirtualMachineInput, RestoreVirtualMachineResult]):
    def __init__(self) -> None:
        super().__init__()
        self._plan: RestorePlan | None = None
        self._pvcs: RestoredPvcs | None = None
        self._locked_in_prepare = False  # the plan was made under the target's lock
        self._renews_lease = False  # a run started before leases never renews

    @workflow.run
    async def run(self, input: RestoreVirtualMachineInput) -> RestoreVirtualMachineResult:
        self.begin(input, RestoreVirtualMachineResult(
            namespace=input.namespace, name="", snapshot=input.snapshot,
            target=input.target or "?", phase="InProgress",
            workflow_id=workflow.info().workflow_id, started_at=workflow.now()))
        # Which path a run takes is decided before its first command: a patch asked later,
        # in the task that resolves a local activity, does not replay.
        self._locked_in_prepare = workflow.patched(LOCK_BEFORE_PLANNING)
        self._renews_lease = workflow.patched(LEASE_RENEWAL)
        await self.admitted(admit([input.namespace]))
        await self.run_steps(self._restore())
        await self.report()
        return self.result

    async def _restore(self) -> None:
        await self._prepare()
        await self._record()
        await self._lock()
        await self._make_target_ready()
        await self._create_pvcs()
        await self._wait_bound()
        await self._apply_vm()
        await self._restart()
        await self._wait_consumed()
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
                                stamp=f"{result.started_at:%Y%m%d-%H%M%S}-{saga.run_suffix()}",
                                volume_restore_policy=input.volume_restore_policy,
                                missing_volumes=input.missing_volumes,
                                lock_lease_seconds=self._lock_lease_in_prepare()))
        self._plan = plan
        if self._locked_in_prepare and plan.target_exists:
            self.saga.add("release the VM lock", self._unlock)
            self._keep_the_lease()
        result.target, result.name = plan.target, plan.restore_name
        result.kept_volumes, result.dropped_volumes = plan.kept_volumes, plan.dropped_volumes
        self._pvcs = RestoredPvcs(input.namespace, plan.restore_name, RESTORE_LABEL,
                                  "the restored PVCs", input.volume_restore_policy)
        result.volumes = self._pvcs.plan(plan)

    async def _record(self) -> None:
        self.saga.add("mark the record Failed", self._write_failed_status)
        self.enter("record")
        await saga.step(CREATE_RESTORE_RECORD, self._record_input())
        await self._write_status()

    def _lock_lease_in_prepare(self) -> float | None:
        """The lease of the lock the plan is made under (the target's, taken by the
        planning step itself); None for runs started before the plan took the lock."""
        return lease_for(self.time_left())[0] if self._locked_in_prepare else None

    def _keep_the_lease(self) -> None:
        """A run that may outlive its lock's lease renews it (`contracts.lock.lease_for`)."""
        if self._renews_lease and lease_for(self.time_left())[1]:
            async def renew() -> None:
                await saga.local_step(RENEW_VM_LOCK, self._lock_input())
            self.hold_lease(renew)

    async def _lock(self) -> None:
        if self._require_plan().target_exists and not self._locked_in_prepare:
            self.saga.add("release the VM lock", self._unlock)
            self.enter("lock")
            await saga.step(LOCK_VM, self._lock_input())
            self._keep_the_lease()
        self.saga.add("unregister from the snapshot", self._remove_user)
        await saga.step(ADD_SNAPSHOT_USER, self._user_input())

    async def _make_target_ready(self) -> None:
        """A running target is refused, stopped, or waited for, as the policy says
        (KubeVirt's targetReadinessPolicy); a stopped one is ready as it is."""
        input, result = self.input, self.result
        if not self._require_plan().target_running:
            return
        policy = input.readiness_policy
        if policy == "FailImmediate":
            raise ApplicationError(
                f"VM {input.namespace}/{result.target} is running; stop it first or restore "
                'with running_vm_policy "stop"', type=VM_RUNNING, non_retryable=True)
        if policy == "StopTarget":
            self.saga.add("start the VM again", self._start_vm)
            self.enter("stop")
            await saga.step(STOP_VM, self._power_input(),
                            start_to_close=timedelta(seconds=input.stop_wait) + WAIT_GRACE,
                            heartbeat=WAIT_HEARTBEAT)
            result.stopped_vm = True
            return
        bound = (input.target_ready_grace if policy == "WaitGracePeriod"
                 else WAIT_EVENTUALLY_SECONDS)
        self.enter("wait for the VM to be stopped")
        await saga.step(WAIT_VM_STOPPED, VmPowerInput(
            namespace=input.namespace, vm=result.target, timeout_seconds=bound),
            start_to_close=timedelta(seconds=bound) + WAIT_GRACE, heartbeat=WAIT_HEARTBEAT)

    async def _create_pvcs(self) -> None:
        self.enter("create PVCs")
        await self._require_pvcs().create(self.saga, self._require_plan())

    async def _wait_bound(self) -> None:
        """Every PVC Bound, but one whose storage binds only for a consumer: the VM is not
        running now, so Pending is as far as it goes."""
        self.enter("wait for PVCs")
        await self._require_pvcs().wait_bound(self._require_plan(), self.input.bound_wait,
                                              pending_for_consumer_is_ready=True)

    async def _apply_vm(self) -> None:
        input, result, plan = self.input, self.result, self._require_plan()
        self.saga.add("put the VM back", self._put_back)
        self.enter("apply VM")
        await saga.step(
            APPLY_RESTORED_VM,
            ApplyRestoredVmInput(namespace=input.namespace, target=result.target,
                                 restore_name=result.name, snapshot=input.snapshot,
                                 source=plan.source,
                                 claims={v.volume_name: v.pvc_name for v in plan.volumes},
                                 create=not plan.target_exists, drop=plan.dropped_volumes,
                                 keep=plan.kept_volumes,
                                 own_pvcs=input.volume_ownership_policy == "VM",
                                 new_mac_addresses=input.new_mac_addresses,
                                 new_smbios_serial=input.new_smbios_serial,
                                 new_identity=not plan.target_exists and not input.keep_identity))
        result.created_vm = not plan.target_exists

    async def _restart(self) -> None:
        if self.result.stopped_vm:
            self.enter("start")
            await saga.step(START_VM, self._power_input())
            self.result.restarted_vm = True

    async def _wait_consumed(self) -> None:
        """A VM the restore started again uses its PVCs: those waiting for a consumer bind
        now, and the restore waits for that as for any other PVC."""
        plan = self._require_plan()
        if self.result.restarted_vm and plan.waits_for_consumer:
            self.enter("wait for PVCs to bind")
            await self._require_pvcs().wait_bound(plan, self.input.bound_wait)

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
        self.drop_lease()
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
                           restore_name=result.name,
                           created=not self._require_plan().target_exists))

    # ---- helpers --------------------------------------------------------------------------

    def _record_input(self) -> RestoreRecordInput:
        return RestoreRecordInput(namespace=self.input.namespace, result=self.result)

    async def _write_status(self) -> None:
        await saga.step(WRITE_RESTORE_STATUS, self._record_input())

    def _lock_input(self) -> VmLockInput:
        return VmLockInput(namespace=self.input.namespace, vm=self.result.target,
                           operation="restore", lease_seconds=lease_for(self.time_left())[0])

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
