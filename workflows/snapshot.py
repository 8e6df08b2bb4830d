"""`SnapshotVirtualMachine`: a crash- or application-consistent snapshot of one KubeVirt VM.

`run` reads as DESIGN.md's steps, each a method below it:

  1. `_record_snapshot`                 the record
  2. `_lock_and_inspect_vm`             the VM's lock, and on the same read its state,
                                         agent, volumes with reasons, and the content (a
                                         copy of the VM and its PVCs); InProgress; no
                                         disk: fail
  3-5. `_freeze_cut_and_thaw`           freeze when the VM runs with its agent and is not
                                         paused; every VolumeSnapshot at once; thaw at the
                                         last cut (one activity: nothing lengthens the freeze)
  6. `_mark_succeeded`, then `_unlock_vm` and `_follow_to_ready`

The failure deadline (default 5m, 0 = none) is a durable timer raced against
steps 1-6 up to Succeeded. When it fires, when a step fails for good, or when
the workflow is cancelled, the saga runs: thaw first, then in reverse delete
the VolumeSnapshots and the content, release the lock, and mark the record
Failed with the reason. The Failed record stays until a user deletes it, and
the workflow fails with an ApplicationError whose details are the result.

Short steps (record, lock and inspection with the content, status writes,
unlock, the Event) are local activities: a marker each in the history and no task-queue
round trip. The cut and the readiness poll, which hold watches and heartbeat,
are ordinary activities; so are the compensations.

Readiness (every VolumeSnapshot `readyToUse`) is followed after Succeeded
(skipped when the cut already saw them ready: Succeeded and ready in one write),
with its own bound (`ready_deadline`), by an activity that watches for a few
seconds and is retried at a fixed interval: a poll that adds no history
events, sees fast storage at once, and lets test time skip.

Names: workflow ID `snapshot/{namespace}/{name}` (start with
USE_EXISTING: a second start joins the first); without `name` the snapshot is
`{vm}-{YYYYMMDD-HHMMSS}` (UTC workflow time at the start).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    import activities.names as names
    import rules.naming as naming
    import workflows.saga as saga
    from activities.events import (
        RECORD_VM_EVENT,
        SNAPSHOT_FAILED,
        SNAPSHOT_SUCCEEDED,
        VmEventInput,
    )
    from activities.metrics import RECORD_SNAPSHOT_METRICS, SnapshotMetricsInput
    from activities.models import (
        ContentPlan,
        CreateSnapshotRecordInput,
        CutInput,
        CutOutcome,
        FreezePlan,
        LockAndInspectInput,
        ObjectRef,
        PlannedVolumeSnapshot,
        SnapshotRecordRef,
        UnfreezeVmInput,
        VmInspection,
        VmLockInput,
        VolumeSnapshotsInput,
        WriteSnapshotStatusInput,
    )
    from rules.durations import format_go_duration
    from rules.models import VolumeSnapshotState
    from workflows.failures import CANCELED, describe
    from workflows.models import (
        PARTIAL_SNAPSHOT,
        QUIESCE_FAILED,
        QUIESCE_TIMEOUT,
        SnapshotProgress,
        SnapshotVirtualMachineInput,
        SnapshotVirtualMachineResult,
        VolumeProgress,
        VolumeResult,
        VolumeStep,
    )
    from workflows.quiesce import MESSAGES, plan_quiesce
    from workflows.saga import Saga, to_completion
    from workflows.search_attributes import ALL as ALL_ATTRIBUTES
    from workflows.search_attributes import OPERATION, SNAPSHOT_PHASE, VM_NAME, VM_NAMESPACE

# Failure types of this workflow (ApplicationError.type); activities add theirs.
DEADLINE_EXCEEDED = "SnapshotDeadlineExceeded"
NO_ELIGIBLE_VOLUME = "NoEligibleVolume"
QUIESCE_REQUIRED = "QuiesceRequired"
SNAPSHOT_NOT_READY = "SnapshotNotReady"

CUT_HEARTBEAT = timedelta(seconds=10)
CUT_GRACE = timedelta(seconds=30)  # past the deadline: the deadline, not the timeout, decides
CUT_ATTEMPT_WITHOUT_DEADLINE = timedelta(hours=1)  # then retried: with deadline 0 it waits on
FREEZE_BOUND_WITHOUT_DEADLINE = timedelta(minutes=5)  # the guest never stays frozen longer
READY_POLL = timedelta(seconds=2)  # between attempts; each attempt watches for a while
READY_HEARTBEAT = timedelta(seconds=15)
REPORT_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3)


@workflow.defn(name="SnapshotVirtualMachine", failure_exception_types=[ValidationError])
class SnapshotVirtualMachine:
    def __init__(self) -> None:
        self._saga = Saga()
        self._step = "starting"
        self._input: SnapshotVirtualMachineInput | None = None
        self._result: SnapshotVirtualMachineResult | None = None
        self._record: SnapshotRecordRef | None = None
        self._inspection: VmInspection | None = None
        self._planned: list[PlannedVolumeSnapshot] = []
        self._states: dict[str, VolumeSnapshotState] = {}
        self._volume_steps: dict[str, VolumeStep] = {}
        self._frozen = False  # a freeze is (or may be) in force
        self._lock: str | None = None  # the lock annotation written (one-request release)
        self._content_states: list[VolumeSnapshotState] = []  # last written to the content
        self._deadline_at: datetime | None = None

    @workflow.run
    async def run(self, input: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        self._start(input)
        steps = asyncio.create_task(self._take_snapshot())
        try:
            await workflow.wait_condition(steps.done, timeout=self._deadline_seconds or None)
        except TimeoutError:
            await self._stop(steps)
            deadline = format_go_duration(self._deadline_seconds)
            raise await self._fail(f"snapshot deadline exceeded ({deadline})",
                                   DEADLINE_EXCEEDED) from None
        except asyncio.CancelledError:
            await to_completion(self._stop(steps))
            await to_completion(self._fail("canceled", CANCELED))
            raise
        error = steps.exception()
        if error is not None:
            if not isinstance(error, ActivityError | ApplicationError):
                raise error  # a bug: fail the workflow task (retried), never compensate it
            message, error_type = describe(error)
            raise await self._fail(f"{self._step}: {message}", error_type) from error
        await self._unlock_vm()
        await self._follow_to_ready()
        await self._report()
        return self._finish()

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
        result = self._require_result()
        now = workflow.now()
        left = None
        if self._deadline_at is not None and result.phase == "InProgress":
            left = max((self._deadline_at - now).total_seconds(), 0.0)
        return SnapshotProgress(
            namespace=result.namespace, name=result.name, vm=result.vm, step=self._step,
            phase=result.phase, frozen=self._frozen, indications=list(result.indications),
            volumes=[self._volume_progress(p) for p in self._planned],
            elapsed_seconds=(now - result.started_at).total_seconds(),
            failure_deadline_seconds=self._deadline_seconds or None,
            time_left_seconds=left, error=result.error,
        )

    # ---- step 1: record ---------------------------------------------------------------------

    async def _record_snapshot(self) -> None:
        """The VirtualMachineSnapshot record, phase InProgress (AlreadyExists of another
        snapshot fails here, and its record is left alone)."""
        input, result = self._require_input(), self._require_result()
        self._saga.add("mark the record Failed", self._write_failed_status)
        self._enter("record")
        self._record = await saga.local_step(
            names.CREATE_SNAPSHOT_RECORD,
            CreateSnapshotRecordInput(
                namespace=input.namespace, name=result.name, vm=input.vm,
                deletion_policy=input.deletion_policy,
                failure_deadline_seconds=input.failure_deadline,
                ready_deadline_seconds=input.ready_deadline, quiesce=input.quiesce,
                labels=self._labels(),
            ),
            SnapshotRecordRef,
        )

    # ---- step 2: lock and inspect ---------------------------------------------------------

    async def _lock_and_inspect_vm(self) -> None:
        """One snapshot, restore or clone at a time per VM: a second one is refused. The
        lock is taken on the read that is inspected (VM state, volume selection), which is
        then recorded; no eligible disk fails here, before any freeze; so does quiesce
        `required` on a guest that cannot be frozen."""
        input, result = self._require_input(), self._require_result()
        self._saga.add("release the VM lock", self._release_lock)
        self._saga.add("delete the content", self._delete_content)
        self._enter("lock")
        content = ContentPlan(name=naming.content_name(result.name), snapshot=result.name,
                              snapshot_uid=self._require_record().uid, labels=self._labels())
        inspection = await saga.local_step(
            names.LOCK_AND_INSPECT_VM,
            LockAndInspectInput(lock=self._lock_input(), content=content), VmInspection)
        self._inspection = inspection
        self._lock = inspection.lock
        result.content_name = inspection.content_name
        self._enter("inspect")
        quiesce = plan_quiesce(inspection.vm, input.quiesce)
        result.vm_uid = inspection.vm.uid
        result.indications = list(quiesce.indications)
        if inspection.volumes.partial:
            result.indications.append(PARTIAL_SNAPSHOT)
        result.excluded_volumes = list(inspection.volumes.excluded)
        self._planned = [
            PlannedVolumeSnapshot(
                name=naming.volume_snapshot_name(result.name, v.volume_name),
                volume_name=v.volume_name, pvc_name=v.pvc_name, snapshot_class=v.snapshot_class,
            )
            for v in inspection.volumes.included
        ]
        result.included_volumes = [
            VolumeResult(volume_name=v.volume_name, pvc_name=v.pvc_name,
                         storage_class=v.storage_class, snapshot_class=v.snapshot_class,
                         volume_snapshot=p.name, hotpluggable=v.hotpluggable)
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

    # ---- steps 3-5: freeze, cut, thaw --------------------------------------------------------

    async def _freeze_cut_and_thaw(self) -> None:
        """Freeze when the guest can be frozen (it thaws itself by the deadline if all else
        dies), create every VolumeSnapshot at once, thaw at the last cut: one activity, so
        that no workflow round trip lengthens the freeze (see activities/cut.py)."""
        input, result = self._require_input(), self._require_result()
        record, inspection = self._require_record(), self._require_inspection()
        freeze = None
        if plan_quiesce(inspection.vm, input.quiesce).freeze:
            freeze = FreezePlan(vmi=input.vm, thaw_by=self._thaw_by(),
                                required=input.quiesce == "required")
            self._saga.add("thaw the guest", self._thaw, urgent=True)
        self._saga.add("delete the VolumeSnapshots", self._delete_volume_snapshots)
        self._frozen = freeze is not None
        self._enter("cut")
        for planned in self._planned:
            self._volume_steps[planned.name] = "creating"
        timeout = CUT_ATTEMPT_WITHOUT_DEADLINE
        if self._deadline_at is not None:
            timeout = self._deadline_at - workflow.now() + CUT_GRACE
        outcome = await saga.step(
            names.FREEZE_AND_CUT,
            CutInput(namespace=input.namespace, snapshot=result.name, snapshot_uid=record.uid,
                     owned_by_snapshot=input.deletion_policy == "Delete",
                     volumes=self._planned, labels=self._labels(), freeze=freeze),
            CutOutcome, start_to_close=timeout, heartbeat=CUT_HEARTBEAT)
        self._frozen = False
        self._track(outcome.volume_snapshots)
        result.volume_snapshots = [p.name for p in self._planned]
        result.creation_time = max(
            (s.creation_time for s in outcome.volume_snapshots if s.creation_time),
            default=None)
        result.quiesced = outcome.frozen_at is not None and not outcome.thawed_before_cut
        result.freeze_window_ms = outcome.freeze_window_ms
        if outcome.freeze_error is not None:
            workflow.logger.warning("went on crash-consistent: %s", outcome.freeze_error)
            result.indications.append(QUIESCE_FAILED)
        if outcome.thawed_before_cut:
            result.indications.append(QUIESCE_TIMEOUT)

    # ---- step 6: Succeeded, lock, readiness ---------------------------------------------------

    async def _mark_succeeded(self) -> None:
        """Phase Succeeded: the cut is taken. From here on nothing is undone."""
        saga.raise_if_cancelled()  # a cancel spent on the last step still undoes the run
        result = self._require_result()
        self._enter("succeeded")
        result.phase = "Succeeded"
        result.succeeded_at = workflow.now()
        if self._planned and all(self._is_ready(p.name) for p in self._planned):
            result.ready_to_use = True  # fast storage: ready at the cut, one write for both
            result.ready_at = result.succeeded_at
        self._upsert_search_attributes([SNAPSHOT_PHASE.value_set("Succeeded")])
        await self._write_status()
        self._saga.clear()

    async def _unlock_vm(self) -> None:
        """Release the lock; a failure here is logged (a closed run's lock is taken over)."""
        self._enter("unlock")
        try:
            await saga.local_step(names.UNLOCK_VM, self._lock_input(), bool)
        except ActivityError as err:
            message, error_type = describe(err)
            workflow.logger.error("could not release the VM lock: %s", message)
            if error_type == CANCELED:
                await self._record_readiness_canceled()
                raise asyncio.CancelledError() from err

    async def _follow_to_ready(self) -> None:
        """Poll until every VolumeSnapshot is readyToUse, within `ready_deadline`
        (nothing to do when they were ready at the cut)."""
        input, result = self._require_input(), self._require_result()
        if result.ready_to_use:
            return
        self._enter("ready")
        try:
            states = await saga.step(
                names.CHECK_VOLUME_SNAPSHOTS_READY,
                VolumeSnapshotsInput(namespace=input.namespace,
                                     names=[p.name for p in self._planned],
                                     snapshot=result.name),
                list[VolumeSnapshotState],
                retry=RetryPolicy(initial_interval=READY_POLL, backoff_coefficient=1.0,
                                  maximum_interval=READY_POLL,
                                  non_retryable_error_types=["VolumeSnapshotMissing"]),
                heartbeat=READY_HEARTBEAT,
                schedule_to_close=timedelta(seconds=input.ready_deadline)
                if input.ready_deadline else None)
        except ActivityError as err:
            message, error_type = describe(err)
            if error_type == CANCELED:  # the workflow was cancelled while it waited
                await self._record_readiness_canceled()
                raise asyncio.CancelledError() from err
            # Out of time, the server reports the timeout or the last "not ready yet".
            if isinstance(err.cause, ActivityTimeout) or error_type == "VolumeSnapshotsNotReady":
                bound = format_go_duration(input.ready_deadline)
                message = f"the VolumeSnapshots were not ready to use within {bound}" + (
                    f" ({message})" if error_type == "VolumeSnapshotsNotReady" else "")
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
        result = self._require_result()
        result.error, result.error_type = "canceled while waiting for readiness", CANCELED
        result.finished_at = workflow.now()
        await to_completion(self._write_status())

    # ---- reporting ----------------------------------------------------------------------------

    async def _report(self) -> None:
        """A Kubernetes Event on the VM (as KubeVirt does) and the worker's metrics.

        Best effort: a failure to report never changes the snapshot's outcome.
        """
        result = self._require_result()
        ok = result.phase == "Succeeded"
        event = VmEventInput(
            namespace=result.namespace, vm=result.vm, vm_uid=result.vm_uid,
            snapshot=result.name, action="Snapshot",
            reason=SNAPSHOT_SUCCEEDED if ok else SNAPSHOT_FAILED,
            type="Normal" if ok else "Warning",
            message=(f"snapshot {result.name} succeeded "
                     f"({len(result.volume_snapshots)} volumes)") if ok
            else f"snapshot {result.name} failed: {result.error}")
        metrics = SnapshotMetricsInput(
            outcome="succeeded" if ok else "failed", error_type=result.error_type,
            freeze_window_ms=result.freeze_window_ms,
            deadline_exceeded=result.error_type == DEADLINE_EXCEEDED, compensated=not ok)
        for name, arg in ((RECORD_VM_EVENT, event), (RECORD_SNAPSHOT_METRICS, metrics)):
            try:
                await workflow.execute_local_activity(
                    name, arg, start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=REPORT_RETRY)
            except ActivityError as error:
                workflow.logger.warning("reporting %s failed: %s", name, error)

    # ---- compensation -------------------------------------------------------------------------

    async def _fail(self, reason: str, error_type: str) -> ApplicationError:
        """Run the saga and return the error the workflow fails with."""
        result = self._require_result()
        self._enter("compensating")
        result.phase = "Failed"
        result.error, result.error_type = reason, error_type
        self._upsert_search_attributes([SNAPSHOT_PHASE.value_set("Failed")])
        result.cleanup_errors = await self._saga.compensate()
        result.finished_at = workflow.now()
        await self._report()
        self._enter("failed")
        return ApplicationError(reason, result, type=error_type, non_retryable=True)

    async def _stop(self, steps: asyncio.Task[None]) -> None:
        """Cancel the steps and wait until their activity has really stopped
        (WAIT_CANCELLATION_COMPLETED): nothing may be created after its clean-up."""
        steps.cancel()
        with contextlib.suppress(asyncio.CancelledError, ActivityError, ApplicationError):
            await steps

    async def _thaw(self) -> None:
        input = self._require_input()
        await saga.compensation(names.UNFREEZE_VM,
                                 UnfreezeVmInput(namespace=input.namespace, vmi=input.vm))
        self._frozen = False

    async def _delete_volume_snapshots(self) -> None:
        input, result = self._require_input(), self._require_result()
        await saga.compensation(
            names.DELETE_VOLUME_SNAPSHOTS,
            VolumeSnapshotsInput(namespace=input.namespace, names=[p.name for p in self._planned],
                                 snapshot=result.name))
        for name in self._volume_steps:
            self._volume_steps[name] = "deleted"
        result.volume_snapshots = []

    async def _delete_content(self) -> None:
        """Harmless when the inspection made none (no volume, or it never ran)."""
        input, result = self._require_input(), self._require_result()
        await saga.compensation(
            names.DELETE_SNAPSHOT_CONTENT,
            ObjectRef(namespace=input.namespace, name=naming.content_name(result.name)))
        result.content_name = None

    async def _release_lock(self) -> None:
        await saga.compensation(names.UNLOCK_VM, self._lock_input())

    async def _write_failed_status(self) -> None:
        await saga.compensation(names.WRITE_SNAPSHOT_STATUS, self._status_input())

    # ---- helpers --------------------------------------------------------------------------------

    def _start(self, input: SnapshotVirtualMachineInput) -> None:
        self._input = input
        now = workflow.now()
        name = input.name or naming.generated_snapshot_name(input.vm, now)
        self._result = SnapshotVirtualMachineResult(
            namespace=input.namespace, name=name, vm=input.vm, phase="InProgress",
            started_at=now, workflow_id=workflow.info().workflow_id)
        if input.failure_deadline:
            self._deadline_at = now + timedelta(seconds=input.failure_deadline)
        self._upsert_search_attributes([
            VM_NAME.value_set(input.vm), VM_NAMESPACE.value_set(input.namespace),
            OPERATION.value_set("snapshot"), SNAPSHOT_PHASE.value_set("InProgress")])
        self._enter("starting")

    @staticmethod
    def _upsert_search_attributes(updates: list[SearchAttributeUpdate[Any]]) -> None:
        """Keep the UI's filters current, on runs started with vmsnap's attributes only.

        An attribute the namespace does not know fails the workflow task, and the
        workflow cannot see the namespace's registrations. A run started with any of
        them (the SDK, the CLI and schedules always set them) proves they exist; a run
        started without (a bare `temporal workflow start`) is left unfiltered rather
        than stuck. The worker registers them at start-up where the server lets it.
        """
        started_with = workflow.info().typed_search_attributes
        if any(started_with.get(key) is not None for key in ALL_ATTRIBUTES):
            workflow.upsert_search_attributes(updates)

    @property
    def _deadline_seconds(self) -> float:
        return self._require_input().failure_deadline

    def _thaw_by(self) -> datetime:
        """When the guest must be thawed at the latest: the deadline, or a safety bound."""
        if self._deadline_at is not None:
            return self._deadline_at
        return workflow.now() + FREEZE_BOUND_WITHOUT_DEADLINE

    def _enter(self, step: str) -> None:
        self._step = step
        result = self._require_result()
        details = [f"**{step}** {result.namespace}/{result.name} of VM {result.vm}",
                   f"phase {result.phase}"]
        if self._deadline_at is not None and result.phase == "InProgress":
            left = max((self._deadline_at - workflow.now()).total_seconds(), 0.0)
            details.append(f"{left:.0f}s left of the deadline")
        if self._planned:
            details.append(f"{len(self._planned)} volume(s)")
        if result.error:
            details.append(f"error: {result.error}")
        workflow.set_current_details(" · ".join(details))

    def _track(self, states: list[VolumeSnapshotState]) -> None:
        for state in states:
            self._states[state.name] = state
            self._volume_steps[state.name] = ("ready" if state.ready_to_use
                                              else "cut" if state.cut else "creating")
        for volume in self._require_result().included_volumes:
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

    def _finish(self) -> SnapshotVirtualMachineResult:
        result = self._require_result()
        result.finished_at = workflow.now()
        self._enter("done")
        return result

    def _labels(self) -> dict[str, str]:
        input, result = self._require_input(), self._require_result()
        return naming.snapshot_labels(result.name, input.vm, input.labels)

    def _lock_input(self) -> VmLockInput:
        input = self._require_input()
        return VmLockInput(namespace=input.namespace, vm=input.vm, operation="snapshot",
                           held=self._lock)

    def _status_input(self) -> WriteSnapshotStatusInput:
        """The record's status; the content's too, when the volumes' states changed since
        it was last written."""
        result = self._require_result()
        states = [self._states[p.name] for p in self._planned if p.name in self._states]
        return WriteSnapshotStatusInput(
            result=result, record_uid=self._record.uid if self._record else None,
            indication_messages={i: MESSAGES.get(i, i) for i in result.indications},
            volume_snapshot_states=states if states != self._content_states else [])

    async def _write_status(self) -> None:
        status = self._status_input()
        await saga.local_step(names.WRITE_SNAPSHOT_STATUS, status, bool)
        if status.volume_snapshot_states and self._require_result().content_name:
            self._content_states = status.volume_snapshot_states

    def _require_input(self) -> SnapshotVirtualMachineInput:
        assert self._input is not None, "the workflow has not started"
        return self._input

    def _require_result(self) -> SnapshotVirtualMachineResult:
        assert self._result is not None, "the workflow has not started"
        return self._result

    def _require_record(self) -> SnapshotRecordRef:
        assert self._record is not None, "the record is made in step 1"
        return self._record

    def _require_inspection(self) -> VmInspection:
        assert self._inspection is not None, "the VM is inspected in step 2"
        return self._inspection
