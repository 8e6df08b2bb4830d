"""DeleteVirtualMachineSnapshot on the time-skipping server, with doubles for the activities."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.delete_snapshot import (
    CLAIMS_NOT_BOUND,
    DELETE_SNAPSHOT_RECORD,
    PREPARE_SNAPSHOT_DELETION,
    DeleteVirtualMachineSnapshotInput,
    DeleteVirtualMachineSnapshotResult,
)
from contracts.snapshot import DELETE_SNAPSHOT_CONTENT, DELETE_VOLUME_SNAPSHOTS, FREEZE_AND_CUT
from rules.naming import delete_snapshot_workflow_id, snapshot_workflow_id
from tests.workflows.conftest import StartWorker
from tests.workflows.doubles import CLUSTER, NS, World
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot


async def snapshot(env: WorkflowEnvironment, task_queue: str, name: str, policy: str) -> None:
    await env.client.execute_workflow(
        "SnapshotVirtualMachine",
        {"namespace": NS, "vm": "web", "name": name, "deletion_policy": policy},
        id=snapshot_workflow_id(CLUSTER, NS, name), task_queue=task_queue)


async def delete(
    env: WorkflowEnvironment, task_queue: str, name: str
) -> DeleteVirtualMachineSnapshotResult:
    return await env.client.execute_workflow(
        DeleteVirtualMachineSnapshot.run,
        DeleteVirtualMachineSnapshotInput(namespace=NS, name=name),
        id=f"{delete_snapshot_workflow_id(CLUSTER, NS, name)}-{uuid.uuid4().hex[:4]}",
        task_queue=task_queue)


async def test_delete_removes_volume_snapshots_content_and_record(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        await snapshot(env, task_queue, "gone", "Delete")
        assert world.volume_snapshots and world.contents
        result = await delete(env, task_queue, "gone")
    assert sorted(result.deleted_volume_snapshots) == ["gone-data", "gone-root"]
    assert result.content_deleted and result.record_deleted
    assert world.volume_snapshots == {} and world.contents == {} and world.records == {}
    assert world.calls[-4:] == [PREPARE_SNAPSHOT_DELETION.name, DELETE_VOLUME_SNAPSHOTS.name,
                                DELETE_SNAPSHOT_CONTENT.name, DELETE_SNAPSHOT_RECORD.name]


async def test_a_deletion_waits_for_the_claims_provisioned_from_it(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    """A PVC waiting for its first consumer still needs the VolumeSnapshot: the deletion
    checks back (timers skipped here) and continues as new after 100 checks."""
    world = World(binds_after_checks={"clone-root": 150, "clone-data": 2})
    async with worker_for(world):
        await snapshot(env, task_queue, "served", "Delete")
        handle = await env.client.start_workflow(
            DeleteVirtualMachineSnapshot.run,
            DeleteVirtualMachineSnapshotInput(namespace=NS, name="served",
                                              after_claims_bound=["clone-root", "clone-data"]),
            id=delete_snapshot_workflow_id(CLUSTER, NS, "served"), task_queue=task_queue)
        result = await handle.result()
    assert result.record_deleted and world.records == {}
    checks = [i for i, call in enumerate(world.calls) if call == CLAIMS_NOT_BOUND.name]
    assert len(checks) == 150
    assert world.calls.index(PREPARE_SNAPSHOT_DELETION.name) > checks[-1]
    assert (await handle.describe()).run_id != handle.first_execution_run_id


async def test_retain_keeps_the_volume_snapshots(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        await snapshot(env, task_queue, "kept", "Retain")
        result = await delete(env, task_queue, "kept")
    assert result.deletion_policy == "Retain"
    assert sorted(result.retained_volume_snapshots) == ["kept-data", "kept-root"]
    assert result.deleted_volume_snapshots == []
    assert sorted(world.volume_snapshots) == ["kept-data", "kept-root"]
    assert world.records == {} and world.contents == {}
    assert DELETE_VOLUME_SNAPSHOTS.name not in world.after(PREPARE_SNAPSHOT_DELETION.name)


@pytest.mark.parametrize(("exists", "error_type"), [(False, "SnapshotNotFound"),
                                                     (True, "SnapshotInProgress")])
async def test_delete_refuses_and_changes_nothing(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker,
    exists: bool, error_type: str,
) -> None:
    world = World(cut_after_attempts=None)
    async with worker_for(world):
        running = None
        if exists:
            running = await env.client.start_workflow(
                "SnapshotVirtualMachine",
                {"namespace": NS, "vm": "web", "name": "busy", "failure_deadline": "1h"},
                id=snapshot_workflow_id(CLUSTER, NS, "busy"), task_queue=task_queue)
            while FREEZE_AND_CUT.name not in world.calls:
                await asyncio.sleep(0.02)
        with pytest.raises(WorkflowFailureError) as caught:
            await delete(env, task_queue, "busy")
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == error_type
        if running is not None:
            assert world.records["busy"].phase == "InProgress"
            assert world.volume_snapshots  # nothing deleted
            await running.cancel()
            with pytest.raises(WorkflowFailureError):
                await running.result()
