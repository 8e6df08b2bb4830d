"""`SnapshotVirtualMachine`: a crash- or application-consistent snapshot of one KubeVirt VM.

`run` reads as the steps, each a method below it:

  1. `_record_snapshot`                 the record
  2. `_lock_and_inspect_vm`             the VM's lock, and on the same read its state,
                                         agent, volumes with reasons, and the content (a
                                         copy of the VM and its PVCs); InProgress; no
                                         disk: fail
  3-5. `_freeze_cut_and_thaw`           freeze when the VM runs with its agent and is not
                                         paused; every VolumeSnapshot at once; thaw at the
                                         last cut (one activity: nothing lengthens the freeze)
  6. `_mark_succeeded`, then `_unlock_vm` and `_follow_to_ready`

The failure deadline (default 5m, 0 = none) covers steps 1-6 up to Succeeded; the
operation frame (`workflows.frame`) races it against them and runs the saga when it
fires, when a step fails for good, or when the workflow is cancelled: thaw first, then
in reverse delete the VolumeSnapshots and the content, release the lock, and mark the
record Failed with the reason. The Failed record stays until a user deletes it.

Short steps (record, lock and inspection with the content, status writes, unlock, the
Event) are local activities: a marker each in the history and no task-queue round
trip. The cut and the readiness poll, which hold watches and heartbeat, are ordinary
activities; so are the compensations.

Readiness (every VolumeSnapshot `readyToUse`) is followed after Succeeded (skipped when
the cut already saw them ready: Succeeded and ready in one write), with its own bound
(`ready_deadline`), by an activity that watches for a few seconds and is retried at a
fixed interval: a poll that adds no history events, sees fast storage at once, and lets
test time skip.

Names: workflow ID `snapshot/{namespace}/{name}` (start with USE_EXISTING: a second
start joins the first); without `name` the snapshot is `{vm}-{YYYYMMDD-HHMMSS}` (UTC
workflow time at the start).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    import rules.naming as naming
    import workflows.saga as saga
    from contracts.common import (
        CANCELED,
        NO_GROUP_SNAPSHOT_CLASS,
        QUIESCE_TIMED_OUT,
        SNAPSHOT_NOT_READY,
        VOLUME_SNAPSHOT_MISSING,
        VOLUME_SNAPSHOTS_NOT_READY,
        ObjectRef,
        freeze_task_queue,
    )
    from contracts.lock import (
        LEASE_RENEWAL,
        LOCK_WAIT_FIRST,
        LOCK_WAIT_MAX,
        RENEW_VM_LOCK,
        UNLOCK_VM,
        VM_LOCKED,
        VmLockInput,
        lease_for,
    )
    from contracts.reporting import (
        RECORD_SNAPSHOT_METRICS,
        RECORD_VM_EVENT,
        SNAPSHOT_FAILED,
        SNAPSHOT_SUCCEEDED,
        SnapshotMetricsInput,
        VmEventInput,
    )
    from contracts.snapshot import (
        CHECK_VOLUME_SNAPSHOTS_READY,
        CREATE_SNAPSHOT_RECORD,
        DEADLINE_EXCEEDED,
        DELETE_SNAPSHOT_CONTENT,
        DELETE_VOLUME_SNAPSHOTS,
        FREEZE_AND_CUT,
        FREEZE_QUEUE,
        GROUP_SNAPSHOT_FALLBACK,
        LOCK_AND_INSPECT_VM,
        NO_ELIGIBLE_VOLUME,
        PARTIAL_SNAPSHOT,
        QUIESCE_FAILED,
        QUIESCE_REQUIRED,
        QUIESCE_TIMEOUT,
        RESTART_REQUIRED,
        UNFREEZE_VM,
        WORKFLOW,
        WRITE_SNAPSHOT_STATUS,
        ContentPlan,
        CreateSnapshotRecordInput,
        CutInput,
        CutOutcome,
        FreezePlan,
        LockAndInspectInput,
        PlannedGroup,
        PlannedVolumeSnapshot,
        SnapshotProgress,
        SnapshotRecordRef,
        SnapshotVirtualMachineInput,
        SnapshotVirtualMachineResult,
        UnfreezeVmInput,
        VmInspection,
        VolumeProgress,
        VolumeResult,
        VolumeSnapshotsInput,
        VolumeStep,
        WriteSnapshotStatusInput,
    )
    from rules.durations import format_go_duration
    from rules.freeze_budget import choose_budget
    from rules.models import VolumeSnapshotState
    from workflows.admission import admit
    from workflows.failures import describe
    from workflows.frame import Operation
    from workflows.one_input import INPUT_REFUSED
    from workflows.quiesce import MESSAGES, consistency, plan_quiesce
    from workflows.saga import to_completion
    from workflows.search_attributes import OPERATION, SNAPSHOT_PHASE, VM_NAME, VM_NAMESPACE

# A worker that dies holding a frozen guest is noticed within CUT_HEARTBEAT, and the cut is
# retried on another worker, which takes the guest over (activities/cut.py). The cut
# heartbeats from a thread of its own; the SDK sends at most one heartbeat per
# min(0.8 x this, the worker's throttle, 250 ms). The timeout and the retry are server
# timers, each fired no sooner than the server's timer floor
# (history.timerProcessorMaxTimeShift: 1 s by default, 100 ms in the local stack and the
# compose file). 1.5 s leaves six heartbeats of room: a thread of the freeze process can
# starve for 0.8 s on a loaded two-core host, and a shorter timeout then hands a live cut
# to another worker. The takeover comes at most about 1.3 s after a death with the 100 ms
# floor, 2.5 to 3 s on a default server.
CUT_HEARTBEAT = timedelta(milliseconds=1500)
CUT_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0,
                        maximum_interval=timedelta(seconds=10))
CUT_GRACE = timedelta(seconds=30)  # past the deadline: the deadline, not the timeout, decides
CUT_ATTEMPT_WITHOUT_DEADLINE = timedelta(hours=1)  # then retried: with deadline 0 it waits on
READY_POLL = timedelta(seconds=2)  # between attempts; each attempt watches for a while
READY_HEARTBEAT = timedelta(seconds=15)


def refuse_schedule_outside_its_run(input: SnapshotVirtualMachineInput) -> None:
    """`schedule` hands the snapshot to a schedule's retention: only a schedule's run,
    which starts its snapshots as children, may set it (a run started by a client has no
    parent), else an ad-hoc snapshot could push the schedule's own out of its `keep`."""
    if input.schedule is not None and workflow.info().parent is None:
        raise ApplicationError(
            f"schedule {input.schedule!r}: only a schedule's run names the schedule of its "
            "snapshots; take this snapshot without it", type=INPUT_REFUSED,
            non_retryable=True)


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class SnapshotVirtualMachine(Operation[SnapshotVirtualMachineInput, SnapshotVirtualMachineResult]):
    deadline_error_type = DEADLINE_EXCEEDED
    deadline_name = "snapshot deadline"

    def __init__(self) -> None:
        super().__init__()
        self._record: SnapshotRecordRef | None = None
        self._inspection: VmInspection | None = None
        self._planned: list[PlannedVolumeSnapshot] = []
        self._states: dict[str, VolumeSnapshotState] = {}
        self._volume_steps: dict[str, VolumeStep] = {}
        self._frozen = False  # a freeze is (or may be) in force
        self._lock: str | None = None  # the lock annotation written (one-request release)
        self._renews_lease = False  # the run renews its lock's lease beside its steps
        self._content_states: list[VolumeSnapshotState] = []  # last written to the content
        self._groups: list[PlannedGroup] = []  # the VolumeGroupSnapshots planned
        self._content_names: dict[str, str] = {}  # members to name in the content, once
        self._freeze_queue = False  # a cut with a freeze goes to the freeze task queue

    @workflow.run
    async def run(self, input: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        refuse_schedule_outside_its_run(input)
        self._begin(input)
        # Decided before the first command: a patch asked later, in the task that
        # resolves a local activity, does not replay. Only a run that may outlive the
        # default lease asks (no marker in the others' histories).
        self._renews_lease = lease_for(self.time_left())[1] and workflow.patched(LEASE_RENEWAL)
        self._freeze_queue = workflow.patched(FREEZE_QUEUE)
        await self.admitted(admit([input.namespace], freeze_budget=input.freeze_budget))
        await self.run_steps(self._take_snapshot())
        await self._unlock_vm()
        await self._follow_to_ready()
        await self.report()
        return self.finish()

    async def _take_snapshot(self) -> None:
        """Steps 1-6 up to Succeeded: everything the failure deadline covers."""
        await self._record_snapshot()
        await self._lock_and_inspect_vm()
        await self._freeze_cut_and_thaw()
        await self._mark_succeeded()

    # ---- queries ------------------------------------------------------------------------

    @workflow.query(name="progress")
    def progress(self) -> SnapshotProgress:
        """Step, per-volume state, and the time used and left of the failure deadline."""
        result = self.result
        return SnapshotProgress(
            namespace=result.namespace, name=result.name, vm=result.vm, step=self.step,
            phase=result.phase, frozen=self._frozen, indications=list(result.indications),
            volumes=[self._volume_progress(p) for p in self._planned],
            elapsed_seconds=(workflow.now() - result.started_at).total_seconds(),
            failure_deadline_seconds=self.deadline_seconds or None,
            time_left_seconds=self.time_left() if result.phase == "InProgress" else None,
            error=result.error,
        )

    # ---- step 1: record ---------------------------------------------------------------------

    async def _record_snapshot(self) -> None:
        """The VirtualMachineSnapshot record, phase InProgress (AlreadyExists of another
        snapshot fails here, and its record is left alone)."""
        input, result = self.input, self.result
        self.saga.add("mark the record Failed", self._write_failed_status)
        self.enter("record")
        self._record = await saga.local_step(
            CREATE_SNAPSHOT_RECORD,
            CreateSnapshotRecordInput(
                namespace=input.namespace, name=result.name, vm=input.vm,
                deletion_policy=input.deletion_policy,
                failure_deadline_seconds=input.failure_deadline,
                ready_deadline_seconds=input.ready_deadline, quiesce=input.quiesce,
                labels=self._labels(),
            ))

    # ---- step 2: lock and inspect ---------------------------------------------------------

    async def _lock_and_inspect_vm(self) -> None:
        """One snapshot, restore or clone at a time per VM: a second one is refused. The
        lock is taken on the read that is inspected (VM state, volume selection), which is
        then recorded; no eligible disk fails here, before any freeze; so does quiesce
        `required` on a guest that cannot be frozen."""
        input, result = self.input, self.result
        self.saga.add("release the VM lock", self._release_lock)
        self.saga.add("delete the content", self._delete_content)
        self.enter("lock")
        content = ContentPlan(name=naming.content_name(result.name), snapshot=result.name,
                              snapshot_uid=self._require_record().uid, labels=self._labels())
        inspection = await self._wait_for_the_lock(content)
        self._inspection = inspection
        self._lock = inspection.lock
        self._keep_the_lease()
        result.content_name = inspection.content_name
        self.enter("inspect")
        quiesce = plan_quiesce(inspection.vm, input.quiesce)
        result.vm_uid = inspection.vm.uid
        result.indications = list(quiesce.indications)
        if inspection.volumes.partial:
            result.indications.append(PARTIAL_SNAPSHOT)
        if inspection.vm.vmi_exists and inspection.vm.restart_required:
            result.indications.append(RESTART_REQUIRED)
        result.excluded_volumes = list(inspection.volumes.excluded)
        self._groups = list(inspection.groups)
        group_of = {v: g.name for g in self._groups for v in g.volumes}
        self._planned = [
            PlannedVolumeSnapshot(
                name=naming.volume_snapshot_name(result.name, v.volume_name),
                volume_name=v.volume_name, pvc_name=v.pvc_name, snapshot_class=v.snapshot_class,
                group=group_of.get(v.volume_name),
            )
            for v in inspection.volumes.included
        ]
        result.included_volumes = [
            VolumeResult(volume_name=v.volume_name, pvc_name=v.pvc_name,
                         storage_class=v.storage_class, snapshot_class=v.snapshot_class,
                         volume_snapshot=p.name, hotpluggable=v.hotpluggable, group=p.group)
            for v, p in zip(inspection.volumes.included, self._planned, strict=True)
        ]
        self._volume_steps = {p.name: "planned" for p in self._planned}
        await self._write_status()
        if not self._planned:
            reasons = "; ".join(f"{v.volume_name}: {v.reason}" for v in result.excluded_volumes)
            raise ApplicationError(
                f"no volume of VM {input.namespace}/{input.vm} can be snapshotted"
                + (f" ({reasons})" if reasons else " (it has no volumes)"),
                type=NO_ELIGIBLE_VOLUME, non_retryable=True)
        if quiesce.refusal:
            raise ApplicationError(quiesce.refusal, type=QUIESCE_REQUIRED, non_retryable=True)
        if inspection.group_refusal:
            raise ApplicationError(inspection.group_refusal, type=NO_GROUP_SNAPSHOT_CLASS,
                                   non_retryable=True)

    async def _wait_for_the_lock(self, content: ContentPlan) -> VmInspection:
        """Take the VM's lock; while another operation holds it, wait (as KubeVirt queues
        a second snapshot of a VM) and try again, within the failure deadline, unless
        the caller asked to fail at once (`fail_if_locked`)."""
        pause = LOCK_WAIT_FIRST
        while True:
            try:
                return await saga.local_step(
                    LOCK_AND_INSPECT_VM,
                    LockAndInspectInput(lock=self._lock_input(), content=content,
                                        group_snapshot=self.input.group_snapshot))
            except (ActivityError, ApplicationError) as err:
                if self.input.fail_if_locked or describe(err)[1] != VM_LOCKED:
                    raise
                self.enter("waiting for the VM lock")
                workflow.logger.info("waiting for the lock: %s", describe(err)[0])
            await workflow.sleep(pause)
            pause = min(pause * 2, LOCK_WAIT_MAX)
            self.enter("lock")

    def _keep_the_lease(self) -> None:
        """A run that may outlive its lock's lease renews it (`contracts.lock.lease_for`)."""
        if self._renews_lease:
            async def renew() -> None:
                self._lock = await saga.local_step(RENEW_VM_LOCK, self._lock_input())
            self.hold_lease(renew)

    # ---- steps 3-5: freeze, cut, thaw --------------------------------------------------------

    async def _freeze_cut_and_thaw(self) -> None:
        """Freeze when the guest can be frozen, for at most its freeze budget (it thaws
        itself by then if all else dies), create every VolumeSnapshot at once, thaw at the
        last cut: one activity, so that no workflow round trip lengthens the freeze (see
        activities/cut.py). A cut that outlives the budget is thawed first: `auto` goes
        on crash-consistent (QuiesceTimeout), `required` fails."""
        input, result = self.input, self.result
        record, inspection = self._require_record(), self._require_inspection()
        freeze = None
        if plan_quiesce(inspection.vm, input.quiesce).freeze:
            budget = choose_budget(input.freeze_budget, inspection.vm.freeze_budget)
            if budget.ignored is not None:
                workflow.logger.warning("%s", budget.ignored)
            freeze = FreezePlan(vmi=input.vm, thaw_by=self.deadline_at,
                                budget_seconds=budget.seconds,
                                required=input.quiesce == "required")
            self.saga.add("thaw the guest", self._thaw, urgent=True)
        self.saga.add("delete the VolumeSnapshots", self._delete_volume_snapshots)
        self._frozen = freeze is not None
        self.enter("cut")
        for planned in self._planned:
            self._volume_steps[planned.name] = "creating"
        timeout = CUT_ATTEMPT_WITHOUT_DEADLINE
        if self.deadline_at is not None:
            timeout = self.deadline_at - workflow.now() + CUT_GRACE
        try:
            outcome = await saga.step(
                FREEZE_AND_CUT,
                CutInput(namespace=input.namespace, snapshot=result.name,
                         snapshot_uid=record.uid,
                         owned_by_snapshot=input.deletion_policy == "Delete",
                         volumes=self._planned, labels=self._labels(), freeze=freeze,
                         groups=self._groups,
                         group_required=input.group_snapshot == "required"),
                start_to_close=timeout, heartbeat=CUT_HEARTBEAT, retry=CUT_RETRY,
                task_queue=self._cut_queue(freeze))
        except ActivityError as err:
            if describe(err)[1] == QUIESCE_TIMED_OUT:  # quiesce required: thawed, then failed
                result.indications.append(QUIESCE_TIMEOUT)
            raise
        self._frozen = False
        self._take_group_outcome(outcome)
        self._track(outcome.volume_snapshots)
        result.volume_snapshots = [p.name for p in self._planned]
        result.creation_time = max(
            (s.creation_time for s in outcome.volume_snapshots if s.creation_time),
            default=None)
        result.quiesced = outcome.frozen_at is not None and not outcome.thawed_before_cut
        result.consistency = consistency(inspection.vm, result.quiesced)
        result.freeze_window_ms = outcome.freeze_window_ms
        if outcome.freeze_error is not None:
            workflow.logger.warning("went on crash-consistent: %s", outcome.freeze_error)
            result.indications.append(QUIESCE_FAILED)
        if outcome.thawed_before_cut:
            result.indications.append(QUIESCE_TIMEOUT)

    def _cut_queue(self, freeze: FreezePlan | None) -> str | None:
        """Where the cut runs: a cut that freezes waits for a freeze slot on the freeze
        task queue (contracts.common.freeze_task_queue), unfrozen, for as long as the
        deadline lets it; one without a freeze runs on the workflow's own queue."""
        if freeze is None or not self._freeze_queue:
            return None
        return freeze_task_queue(workflow.info().task_queue)

    def _take_group_outcome(self, outcome: CutOutcome) -> None:
        """The groups' members stand for their disks from here on (readiness, content,
        status); disks whose group failed were cut by their planned VolumeSnapshots."""
        result = self.result
        renamed = outcome.cut_names
        fell_back = set(outcome.fallback)
        steps = dict(self._volume_steps)
        self._planned = [p.model_copy(update={
            "name": renamed.get(p.volume_name, p.name),
            "group": None if p.volume_name in fell_back else p.group}) for p in self._planned]
        self._volume_steps = {p.name: steps.get(p.name, "creating") for p in self._planned}
        for volume, planned in zip(result.included_volumes, self._planned, strict=True):
            volume.volume_snapshot, volume.group = planned.name, planned.group
        self._content_names = dict(renamed)
        result.groups = list(outcome.groups)
        covered = {v for g in outcome.groups for v in g.volumes}
        result.volume_consistency = (
            "group" if len(outcome.groups) == 1 and covered == {
                p.volume_name for p in self._planned} else "per-disk")
        if outcome.fallback:
            workflow.logger.warning("groups cut per disk: %s", "; ".join(outcome.fallback_errors))
            result.indications.append(GROUP_SNAPSHOT_FALLBACK)

    # ---- step 6: Succeeded, lock, readiness ---------------------------------------------------

    async def _mark_succeeded(self) -> None:
        """Phase Succeeded: the cut is taken. From here on nothing is undone."""
        saga.raise_if_cancelled()  # a cancel spent on the last step still undoes the run
        result = self.result
        self.enter("succeeded")
        result.phase = "Succeeded"
        result.succeeded_at = workflow.now()
        if self._planned and all(self._is_ready(p.name) for p in self._planned):
            result.ready_to_use = True  # fast storage: ready at the cut, one write for both
            result.ready_at = result.succeeded_at
        self.upsert_search_attributes([SNAPSHOT_PHASE.value_set("Succeeded")])
        await self._write_status()
        self.saga.clear()

    async def _unlock_vm(self) -> None:
        """Release the lock; a failure here is logged (a closed run's lock is taken over)."""
        self.drop_lease()
        self.enter("unlock")
        try:
            await saga.local_step(UNLOCK_VM, self._lock_input())
        except ActivityError as err:
            message, error_type = describe(err)
            workflow.logger.error("could not release the VM lock: %s", message)
            if error_type == CANCELED:
                await self._record_readiness_canceled()
                raise asyncio.CancelledError() from err

    async def _follow_to_ready(self) -> None:
        """Poll until every VolumeSnapshot is readyToUse, within `ready_deadline`
        (nothing to do when they were ready at the cut)."""
        input, result = self.input, self.result
        if result.ready_to_use:
            return
        self.enter("ready")
        try:
            states = await saga.step(
                CHECK_VOLUME_SNAPSHOTS_READY,
                VolumeSnapshotsInput(namespace=input.namespace,
                                     names=[p.name for p in self._planned],
                                     snapshot=result.name),
                retry=RetryPolicy(initial_interval=READY_POLL, backoff_coefficient=1.0,
                                  maximum_interval=READY_POLL,
                                  non_retryable_error_types=[VOLUME_SNAPSHOT_MISSING]),
                heartbeat=READY_HEARTBEAT,
                schedule_to_close=timedelta(seconds=input.ready_deadline)
                if input.ready_deadline else None)
        except ActivityError as err:
            message, error_type = describe(err)
            if error_type == CANCELED:  # the workflow was cancelled while it waited
                await self._record_readiness_canceled()
                raise asyncio.CancelledError() from err
            # Out of time, the server reports the timeout or the last "not ready yet".
            if isinstance(err.cause, ActivityTimeout) or error_type == VOLUME_SNAPSHOTS_NOT_READY:
                bound = format_go_duration(input.ready_deadline)
                message = f"the VolumeSnapshots were not ready to use within {bound}" + (
                    f" ({message})" if error_type == VOLUME_SNAPSHOTS_NOT_READY else "")
            result.error, result.error_type = message, SNAPSHOT_NOT_READY
            await self._write_status()
            result.finished_at = workflow.now()
            raise ApplicationError(message, result, type=SNAPSHOT_NOT_READY,
                                   non_retryable=True) from err
        except asyncio.CancelledError:
            await self._record_readiness_canceled()
            raise
        self._track(states)
        result.ready_to_use = True
        result.ready_at = workflow.now()
        await self._write_status()

    async def _record_readiness_canceled(self) -> None:
        """Cancelled after Succeeded: the cut stays; the record says readiness was not seen."""
        result = self.result
        result.error, result.error_type = "canceled while waiting for readiness", CANCELED
        result.finished_at = workflow.now()
        await to_completion(self._write_status())

    # ---- the frame's hooks ----------------------------------------------------------------------

    def details(self) -> str:
        result = self.result
        details = [f"**{self.step}** {result.namespace}/{result.name} of VM {result.vm}",
                   f"phase {result.phase}"]
        left = self.time_left()
        if left is not None and result.phase == "InProgress":
            details.append(f"{left:.0f}s left of the deadline")
        if self._planned:
            details.append(f"{len(self._planned)} volume(s)")
        if result.error:
            details.append(f"error: {result.error}")
        return " · ".join(details)

    def on_failed(self) -> None:
        self.upsert_search_attributes([SNAPSHOT_PHASE.value_set("Failed")])

    async def report(self) -> None:
        """A Kubernetes Event on the VM (as KubeVirt does) and the worker's metrics.

        Best effort: a failure to report never changes the snapshot's outcome.
        """
        result = self.result
        ok = result.phase == "Succeeded"
        await saga.report(RECORD_VM_EVENT, VmEventInput(
            namespace=result.namespace, vm=result.vm, vm_uid=result.vm_uid,
            snapshot=result.name, action="Snapshot",
            reason=SNAPSHOT_SUCCEEDED if ok else SNAPSHOT_FAILED,
            type="Normal" if ok else "Warning",
            message=(f"snapshot {result.name} succeeded "
                     f"({len(result.volume_snapshots)} volumes)") if ok
            else f"snapshot {result.name} failed: {result.error}"), local=True)
        await saga.report(RECORD_SNAPSHOT_METRICS, SnapshotMetricsInput(
            outcome="succeeded" if ok else "failed", error_type=result.error_type,
            freeze_window_ms=result.freeze_window_ms,
            deadline_exceeded=result.error_type == DEADLINE_EXCEEDED, compensated=not ok),
            local=True)

    # ---- compensation -------------------------------------------------------------------------

    async def _thaw(self) -> None:
        await saga.compensation(
            UNFREEZE_VM, UnfreezeVmInput(namespace=self.input.namespace, vmi=self.input.vm))
        self._frozen = False

    async def _delete_volume_snapshots(self) -> None:
        input, result = self.input, self.result
        await saga.compensation(
            DELETE_VOLUME_SNAPSHOTS,
            VolumeSnapshotsInput(namespace=input.namespace, names=[p.name for p in self._planned],
                                 snapshot=result.name, groups=self._groups))
        for name in self._volume_steps:
            self._volume_steps[name] = "deleted"
        result.volume_snapshots = []

    async def _delete_content(self) -> None:
        """Harmless when the inspection made none (no volume, or it never ran)."""
        input, result = self.input, self.result
        await saga.compensation(
            DELETE_SNAPSHOT_CONTENT,
            ObjectRef(namespace=input.namespace, name=naming.content_name(result.name)))
        result.content_name = None

    async def _release_lock(self) -> None:
        await saga.compensation(UNLOCK_VM, self._lock_input())

    async def _write_failed_status(self) -> None:
        await saga.compensation(WRITE_SNAPSHOT_STATUS, self._status_input())

    # ---- helpers --------------------------------------------------------------------------------

    def _begin(self, input: SnapshotVirtualMachineInput) -> None:
        now = workflow.now()
        name = input.name or naming.generated_snapshot_name(input.vm, now)
        self.begin(input, SnapshotVirtualMachineResult(
            namespace=input.namespace, name=name, vm=input.vm, phase="InProgress",
            started_at=now, workflow_id=workflow.info().workflow_id),
            deadline_seconds=input.failure_deadline)
        self.upsert_search_attributes([
            VM_NAME.value_set(input.vm), VM_NAMESPACE.value_set(input.namespace),
            OPERATION.value_set("snapshot"), SNAPSHOT_PHASE.value_set("InProgress")])

    def _track(self, states: list[VolumeSnapshotState]) -> None:
        for state in states:
            self._states[state.name] = state
            self._volume_steps[state.name] = ("ready" if state.ready_to_use
                                              else "cut" if state.cut else "creating")
        for volume in self.result.included_volumes:
            seen = self._states.get(volume.volume_snapshot)
            if seen is not None:
                volume.creation_time = seen.creation_time
                volume.ready_to_use = seen.ready_to_use
                volume.restore_size = seen.restore_size
                volume.error = seen.error

    def _is_ready(self, volume_snapshot: str) -> bool:
        state = self._states.get(volume_snapshot)
        return state is not None and state.ready_to_use

    def _volume_progress(self, planned: PlannedVolumeSnapshot) -> VolumeProgress:
        state = self._states.get(planned.name)
        return VolumeProgress(
            volume_name=planned.volume_name, volume_snapshot=planned.name,
            state=self._volume_steps.get(planned.name, "planned"),
            creation_time=state.creation_time if state else None,
            ready_to_use=state.ready_to_use if state else False,
            error=state.error if state else None)

    def _labels(self) -> dict[str, str]:
        labels = dict(self.input.labels)
        if self.input.schedule is not None:
            labels[naming.SCHEDULE_LABEL] = naming.label_value(self.input.schedule)
        return naming.snapshot_labels(self.result.name, self.input.vm, labels, self.cluster)

    def _lock_input(self) -> VmLockInput:
        return VmLockInput(namespace=self.input.namespace, vm=self.input.vm,
                           operation="snapshot", held=self._lock,
                           lease_seconds=lease_for(self.time_left())[0])

    def _status_input(self) -> WriteSnapshotStatusInput:
        """The record's status; the content's too, when the volumes' states changed since
        it was last written."""
        result = self.result
        states = [self._states[p.name] for p in self._planned if p.name in self._states]
        return WriteSnapshotStatusInput(
            result=result, record_uid=self._record.uid if self._record else None,
            indication_messages={i: MESSAGES.get(i, i) for i in result.indications},
            volume_snapshot_states=states if states != self._content_states else [],
            content_volume_snapshots=self._content_names)

    async def _write_status(self) -> None:
        status = self._status_input()
        await saga.local_step(WRITE_SNAPSHOT_STATUS, status)
        self._content_names = {}  # named in the content now
        if status.volume_snapshot_states and self.result.content_name:
            self._content_states = status.volume_snapshot_states

    def _require_record(self) -> SnapshotRecordRef:
        assert self._record is not None, "the record is made in step 1"
        return self._record

    def _require_inspection(self) -> VmInspection:
        assert self._inspection is not None, "the VM is inspected in step 2"
        return self._inspection
