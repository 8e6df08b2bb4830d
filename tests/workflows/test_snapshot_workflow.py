"""SnapshotVirtualMachine on the time-skipping server, with doubles for the activities."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from contracts.lock import DEFAULT_LEASE_SECONDS, LOCK_LOST, UNLOCK_VM
from contracts.snapshot import (
    CHECK_VOLUME_SNAPSHOTS_READY,
    CREATE_SNAPSHOT_RECORD,
    DELETE_SNAPSHOT_CONTENT,
    DELETE_VOLUME_SNAPSHOTS,
    FREEZE_AND_CUT,
    LOCK_AND_INSPECT_VM,
    UNFREEZE_VM,
    WRITE_SNAPSHOT_STATUS,
    SnapshotProgress,
    SnapshotVirtualMachineResult,
)
from rules.models import ExcludedVolume
from rules.naming import snapshot_workflow_id
from tests.workflows.conftest import StartWorker
from tests.workflows.doubles import CLUSTER, NS, World, disks, vm_state

Handle = WorkflowHandle[Any, SnapshotVirtualMachineResult]


async def start(env: WorkflowEnvironment, task_queue: str, **fields: Any) -> Handle:
    """Start with a plain JSON document, as the Temporal CLI does."""
    document: dict[str, Any] = {"namespace": NS, "vm": "web",
                                "name": f"snap-{uuid.uuid4().hex[:6]}", **fields}
    return await env.client.start_workflow(
        "SnapshotVirtualMachine", document,
        id=snapshot_workflow_id(CLUSTER, NS, document.get("name") or uuid.uuid4().hex),
        task_queue=task_queue, result_type=SnapshotVirtualMachineResult,
    )


async def failure_of(handle: Handle) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


def failed_result(error: ApplicationError) -> SnapshotVirtualMachineResult:
    return SnapshotVirtualMachineResult.model_validate(error.details[0])


async def wait_for_step(handle: Handle, step: str, timeout: float = 10.0) -> SnapshotProgress:
    end = time.monotonic() + timeout
    while True:
        progress = await handle.query("progress", result_type=SnapshotProgress)
        if progress.step == step:
            return progress
        assert time.monotonic() < end, f"still at {progress.step}, never reached {step}"
        await asyncio.sleep(0.05)


COMPENSATION_AFTER_CUT = [UNFREEZE_VM.name, DELETE_VOLUME_SNAPSHOTS.name,
                          DELETE_SNAPSHOT_CONTENT.name, UNLOCK_VM.name,
                          WRITE_SNAPSHOT_STATUS.name]


async def test_running_vm_with_agent_is_frozen_once_and_thawed_at_the_cut(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        handle = await start(env, task_queue, name="web-1")
        result = await handle.result()
    assert result.phase == "Succeeded" and result.ready_to_use
    assert result.indications == ["Online", "GuestAgent"]
    assert [v.volume_name for v in result.included_volumes] == ["root", "data"]
    assert result.volume_snapshots == ["web-1-root", "web-1-data"]
    assert result.excluded_volumes[0].volume_name == "cloudinit"
    assert result.quiesced and result.freeze_window_ms == 250
    assert result.content_name == "web-1-content"
    assert world.calls == [
        CREATE_SNAPSHOT_RECORD.name, LOCK_AND_INSPECT_VM.name,
        WRITE_SNAPSHOT_STATUS.name, FREEZE_AND_CUT.name, "freeze", "thaw-at-cut",
        WRITE_SNAPSHOT_STATUS.name,
        UNLOCK_VM.name, CHECK_VOLUME_SNAPSHOTS_READY.name, WRITE_SNAPSHOT_STATUS.name,
    ]
    assert world.count("freeze") == 1 and not world.frozen
    assert world.locks == {}
    # The content is made by the lock-and-inspect step, before the freeze (as KubeVirt
    # does). One-request writes: the record by its uid, the lock released by the
    # annotation the lock step wrote; the content's status only when the volumes' states
    # changed (none at the inspection; the cut's with Succeeded; readiness).
    assert world.contents == {"web-1-content": "web-1"}
    assert {s.record_uid for s in world.status_inputs} == {"uid-web-1"}
    assert world.unlock_inputs[0].held == f"held-by-{handle.result_run_id}"
    assert [len(s.volume_snapshot_states) for s in world.status_inputs] == [0, 2, 2]
    assert [s.result.content_name for s in world.status_inputs] == ["web-1-content"] * 3
    assert not any(s.ready_to_use for s in world.status_inputs[1].volume_snapshot_states)
    assert all(s.ready_to_use for s in world.status_inputs[-1].volume_snapshot_states)
    record = world.records["web-1"]
    assert record.phase == "Succeeded" and record.result and record.result.ready_to_use
    # the default freeze budget (the unfreezeTimeout), thawed by the deadline at the latest
    cut = world.cut_inputs[0]
    assert cut.freeze is not None and not cut.freeze.required
    assert cut.freeze.budget_seconds == 10.0
    assert cut.freeze.thaw_by is not None
    assert cut.freeze.thaw_by - result.started_at == timedelta(minutes=5)
    assert cut.owned_by_snapshot and cut.snapshot_uid == "uid-web-1"
    assert cut.labels == {"vmsnap.io/snapshot": "web-1", "vmsnap.io/vm": "web",
                          "vmsnap.io/cluster": CLUSTER}


async def test_default_deadline_fails_a_never_cut_snapshot_and_cleans_up_in_reverse(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None)
    began = time.monotonic()
    async with worker_for(world):
        handle = await start(env, task_queue)
        error = await failure_of(handle)
    assert time.monotonic() - began < 30, "the 5-minute deadline must pass in test time"
    assert error.type == "SnapshotDeadlineExceeded"
    assert error.message == "snapshot deadline exceeded (5m0s)"
    result = failed_result(error)
    assert result.phase == "Failed"
    assert result.finished_at and result.finished_at - result.started_at >= timedelta(minutes=5)
    assert world.cut_attempts > 3  # retried in skipped time until the deadline
    # thaw first, then the saga in reverse: VolumeSnapshots, content, lock, record Failed
    assert world.after(FREEZE_AND_CUT.name) == COMPENSATION_AFTER_CUT
    assert not world.frozen and world.volume_snapshots == {} and world.locks == {}
    assert world.contents == {}
    record = world.records[result.name]
    assert record.phase == "Failed"  # the Failed record stays
    assert record.result and record.result.error == "snapshot deadline exceeded (5m0s)"
    assert record.result.volume_snapshots == []


async def test_custom_deadline(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None)
    async with worker_for(world):
        handle = await start(env, task_queue, failure_deadline="90s")
        error = await failure_of(handle)
    assert error.message == "snapshot deadline exceeded (1m30s)"
    result = failed_result(error)
    assert result.finished_at is not None
    elapsed = result.finished_at - result.started_at
    assert timedelta(seconds=90) <= elapsed < timedelta(minutes=2)
    freeze = world.cut_inputs[0].freeze
    assert freeze is not None and freeze.thaw_by is not None
    assert freeze.thaw_by - result.started_at == timedelta(seconds=90)


async def test_zero_deadline_waits_past_five_minutes_and_bounds_the_freeze(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    # 40 attempts with the step retry policy (1, 2, 4, 8, then 10 s) take about 6 minutes.
    world = World(cut_after_attempts=40)
    async with worker_for(world):
        handle = await start(env, task_queue, failure_deadline=0)
        result = await handle.result()
    assert result.phase == "Succeeded"
    assert result.finished_at and result.finished_at - result.started_at > timedelta(minutes=5)
    # no deadline: the freeze is still bounded by its budget (never unfreezeTimeout 0)
    freeze = world.cut_inputs[0].freeze
    assert freeze is not None and freeze.thaw_by is None and freeze.budget_seconds == 10.0


async def test_no_eligible_disk_is_refused_before_any_freeze(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(included=[], excluded=[
        ExcludedVolume(volume_name="data", reason='storage class "local" has no '
                       "VolumeSnapshotClass", snapshottable_type=True, pvc_name="data-pvc"),
        ExcludedVolume(volume_name="boot", reason="containerDisk volume", snapshottable_type=False),
    ])
    async with worker_for(world):
        handle = await start(env, task_queue)
        error = await failure_of(handle)
    assert error.type == "NoEligibleVolume"
    assert 'data: storage class "local" has no VolumeSnapshotClass' in error.message
    assert FREEZE_AND_CUT.name not in world.calls
    result = failed_result(error)
    assert "PartialSnapshot" in result.indications
    record = world.records[result.name]
    assert record.phase == "Failed" and record.result
    assert [v.volume_name for v in record.result.excluded_volumes] == ["data", "boot"]
    assert world.locks == {}


async def test_quiesce_auto_goes_on_crash_consistent_when_the_freeze_fails(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(freeze_fails=True)
    async with worker_for(world):
        result = await (await start(env, task_queue, quiesce="auto")).result()
    assert result.phase == "Succeeded"
    assert result.indications == ["Online", "GuestAgent", "QuiesceFailed"]
    assert not result.quiesced and result.freeze_window_ms is None
    assert "freeze" not in world.calls and not world.frozen


async def test_quiesce_required_fails_when_the_freeze_fails_and_thaws(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(freeze_fails=True)
    async with worker_for(world):
        error = await failure_of(await start(env, task_queue, quiesce="required"))
    assert error.type == "FreezeFailed"
    assert error.message == "cut: quiesce is required and freeze failed: guest agent error"
    assert world.volume_snapshots == {}
    assert world.after(FREEZE_AND_CUT.name) == COMPENSATION_AFTER_CUT


async def test_quiesce_required_refuses_a_guest_without_agent_before_freezing(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(vms={"web": vm_state(agent=False)})
    async with worker_for(world):
        error = await failure_of(await start(env, task_queue, quiesce="required"))
    assert error.type == "QuiesceRequired"
    assert "no guest agent is connected" in error.message
    assert FREEZE_AND_CUT.name not in world.calls and world.volume_snapshots == {}


async def test_quiesce_skip_never_freezes(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        result = await (await start(env, task_queue, quiesce="skip")).result()
    assert result.phase == "Succeeded"
    assert "freeze" not in world.calls and UNFREEZE_VM.name not in world.calls
    assert result.indications == ["Online", "GuestAgent", "QuiesceSkipped"]
    assert world.cut_inputs[0].freeze is None


@pytest.mark.parametrize(
    ("vm", "indications"),
    [
        (vm_state(agent=False), ["Online", "NoGuestAgent"]),
        (vm_state(running=False), []),
        (vm_state(paused=True), ["Online", "GuestAgent", "Paused"]),
    ],
    ids=["no-agent", "stopped", "paused"],
)
async def test_guests_that_cannot_be_frozen_are_never_frozen(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker,
    vm: Any, indications: list[str],
) -> None:
    world = World(vms={"web": vm})
    async with worker_for(world):
        result = await (await start(env, task_queue)).result()
    assert result.phase == "Succeeded"
    assert result.indications == indications
    assert world.cut_inputs[0].freeze is None
    assert "freeze" not in world.calls and UNFREEZE_VM.name not in world.calls


async def test_partial_snapshot_is_indicated(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(included=disks("root"), excluded=[ExcludedVolume(
        volume_name="scratch", reason="PVC not Bound", snapshottable_type=True)])
    async with worker_for(world):
        result = await (await start(env, task_queue)).result()
    assert result.indications == ["Online", "GuestAgent", "PartialSnapshot"]


async def test_cancellation_compensates_and_keeps_a_failed_record(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None)
    async with worker_for(world):
        handle = await start(env, task_queue, name="to-cancel")
        progress = await wait_for_step(handle, "cut")
        assert progress.frozen and progress.phase == "InProgress"
        assert [v.state for v in progress.volumes] == ["creating", "creating"]
        assert progress.time_left_seconds is not None and progress.time_left_seconds <= 300
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    assert world.after("freeze") == COMPENSATION_AFTER_CUT
    record = world.records["to-cancel"]
    assert record.phase == "Failed" and record.result and record.result.error == "canceled"
    assert not world.frozen and world.volume_snapshots == {} and world.locks == {}


async def test_the_same_snapshot_started_twice_is_one_snapshot(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    document = {"namespace": NS, "vm": "web", "name": "twice"}
    async with worker_for(world):
        handles = [
            await env.client.start_workflow(
                "SnapshotVirtualMachine", document,
                id=snapshot_workflow_id(CLUSTER, NS, "twice"), task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                result_type=SnapshotVirtualMachineResult)
            for _ in range(2)
        ]
        results = [await h.result() for h in handles]
    assert handles[0].first_execution_run_id == handles[1].first_execution_run_id
    assert results[0] == results[1]
    assert world.record_creates == 1 and world.count("freeze") == 1


async def holding_the_vm(env: WorkflowEnvironment, task_queue: str) -> Handle:
    """A first snapshot of `web` that holds its lock, waiting for a cut that never comes."""
    first = await start(env, task_queue, name="first", failure_deadline="1h")
    await wait_for_step(first, "cut")
    return first


async def test_a_second_snapshot_that_may_not_wait_is_refused_while_one_runs(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None)
    async with worker_for(world):
        first = await holding_the_vm(env, task_queue)
        error = await failure_of(await start(env, task_queue, name="second",
                                             fail_if_locked=True))
        assert error.type == "VmLocked"
        assert f"locked by snapshot workflow snapshot/{CLUSTER}/demo/first" in error.message
        assert world.records["second"].phase == "Failed"
        # the holder keeps its lock
        assert world.locks["web"][0] == f"snapshot/{CLUSTER}/demo/first"
        assert (await first.query("progress", result_type=SnapshotProgress)).phase == "InProgress"
        assert world.count("freeze") == 1  # the second never froze the guest
        await first.cancel()
        with pytest.raises(WorkflowFailureError):
            await first.result()
    assert world.locks == {}


async def test_a_second_snapshot_waits_for_the_lock_and_then_runs(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None)
    async with worker_for(world):
        first = await holding_the_vm(env, task_queue)
        second = await start(env, task_queue, name="second", failure_deadline="1h")
        await wait_for_step(second, "waiting for the VM lock")
        assert world.records["second"].phase == "InProgress"
        world.cut_after_attempts = world.cut_attempts + 1  # the storage cuts from now on
        await first.cancel()
        with pytest.raises(WorkflowFailureError):
            await first.result()
        result = await second.result()
    assert result.phase == "Succeeded"
    assert world.count("freeze") == 2 and world.locks == {}


async def test_a_second_snapshot_waits_no_longer_than_its_deadline(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None)
    async with worker_for(world):
        first = await holding_the_vm(env, task_queue)
        error = await failure_of(await start(env, task_queue, name="second",
                                             failure_deadline="2m"))
        try:
            assert error.type == "SnapshotDeadlineExceeded"
            assert world.records["second"].phase == "Failed"
            assert world.count("freeze") == 1  # the second never froze the guest
            assert world.locks["web"][0] == f"snapshot/{CLUSTER}/demo/first"
        finally:
            await first.cancel()
        with pytest.raises(WorkflowFailureError):
            await first.result()


async def test_a_run_that_may_outlive_its_lease_renews_it_and_fails_when_it_loses_it(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_after_attempts=None, lock_taken_after_renewals=3)
    async with worker_for(world):
        stuck = await start(env, task_queue, name="stuck", failure_deadline="0")
        error = await failure_of(stuck)
    assert len(world.renewals) == 3
    assert all(r.lease_seconds == DEFAULT_LEASE_SECONDS for r in world.renewals)
    assert error.type == LOCK_LOST
    assert UNFREEZE_VM.name in world.calls and not world.frozen  # thawed on the way out
    assert world.records["stuck"].phase == "Failed"
    assert world.locks["web"] == ("another/run", "other")  # never released another's lock


async def test_a_run_whose_deadline_ends_before_the_lease_never_renews(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        result = await (await start(env, task_queue, name="quick")).result()
    assert result.phase == "Succeeded" and world.renewals == []


async def test_an_existing_snapshot_of_that_name_is_left_alone(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        await (await start(env, task_queue, name="taken")).result()
        # a new run with the same workflow ID, once the first one has closed
        error = await failure_of(await start(env, task_queue, name="taken"))
    assert error.type == "SnapshotAlreadyExists"
    record = world.records["taken"]
    assert record.phase == "Succeeded" and record.result and record.result.ready_to_use
    assert world.count(LOCK_AND_INSPECT_VM.name) == 1


async def test_volume_snapshots_ready_at_the_cut_are_recorded_ready_with_succeeded(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(ready_at_cut=True)
    async with worker_for(world):
        result = await (await start(env, task_queue, name="fast")).result()
    assert result.phase == "Succeeded" and result.ready_to_use
    assert result.ready_at == result.succeeded_at
    assert CHECK_VOLUME_SNAPSHOTS_READY.name not in world.calls
    assert world.after(FREEZE_AND_CUT.name) == [
        "freeze", "thaw-at-cut", WRITE_SNAPSHOT_STATUS.name, UNLOCK_VM.name]
    record = world.records["fast"]
    assert record.result and record.result.phase == "Succeeded" and record.result.ready_to_use


async def test_vm_not_found_fails_with_a_clear_type(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        error = await failure_of(await start(env, task_queue, vm="ghost"))
    assert error.type == "VmNotFound"
    assert error.message.startswith("lock: VirtualMachine ghost not found")


async def test_readiness_has_its_own_bound_and_keeps_the_cut(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(ready_after_attempts=None)
    async with worker_for(world):
        error = await failure_of(await start(env, task_queue, name="slow", ready_deadline="2m"))
    assert error.type == "SnapshotNotReady"
    assert error.message.startswith("the VolumeSnapshots were not ready to use within 2m0s")
    record = world.records["slow"]
    assert record.phase == "Succeeded" and record.result and not record.result.ready_to_use
    assert world.volume_snapshots  # the cut is taken: nothing is deleted
    assert world.locks == {}  # released at Succeeded, before the readiness wait
    assert world.ready_attempts > 10  # polled every 2 s of skipped time


async def test_readiness_is_polled_until_ready(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(ready_after_attempts=5)
    async with worker_for(world):
        result = await (await start(env, task_queue)).result()
    assert result.ready_to_use and world.ready_attempts == 5
    assert all(v.ready_to_use and v.restore_size == "1Gi" for v in result.included_volumes)
    assert result.ready_at and result.succeeded_at and result.ready_at > result.succeeded_at


async def test_a_snapshot_without_a_name_is_named_after_the_vm_and_start_time(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        handle = await env.client.start_workflow(
            "SnapshotVirtualMachine", {"namespace": NS, "vm": "web"},
            id=f"snapshot-unnamed-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
            result_type=SnapshotVirtualMachineResult)
        result = await handle.result()
    assert result.name == f"web-{result.started_at:%Y%m%d-%H%M%S}"
    assert list(world.records) == [result.name]


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"namespace": NS, "vm": "web", "quiesce": "sometimes"}, "quiesce"),
        ({"namespace": NS, "vm": "web", "failure_deadline": "5 minutes"}, "failure_deadline"),
        ({"namespace": NS, "vm": "web", "failureDeadline": "5m"}, "failureDeadline"),
        ({"namespace": "Demo", "vm": "web"}, "namespace"),
        ({"vm": "web"}, "namespace"),
    ],
    ids=["quiesce", "duration", "camel-case", "bad-namespace", "missing-namespace"],
)
async def test_bad_input_fails_at_once_and_changes_nothing(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker,
    document: dict[str, Any], complaint: str,
) -> None:
    world = World()
    async with worker_for(world):
        handle = await env.client.start_workflow(
            "SnapshotVirtualMachine", document, id=f"bad-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), timeout=20)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ValidationError"
    assert complaint in cause.message
    assert world.calls == []


async def test_cancelling_the_readiness_wait_keeps_the_cut(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(ready_after_attempts=None)
    async with worker_for(world):
        handle = await start(env, task_queue, name="cut-kept")
        await wait_for_step(handle, "ready")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    record = world.records["cut-kept"]
    assert record.phase == "Succeeded" and record.result
    assert record.result.error == "canceled while waiting for readiness"
    assert sorted(world.volume_snapshots) == ["cut-kept-data", "cut-kept-root"]
    assert DELETE_VOLUME_SNAPSHOTS.name not in world.calls and world.locks == {}
