"""A cut that freezes waits for its turn on the freeze task queue, before the freeze."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import ActivityTaskScheduledEventAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.common import freeze_task_queue
from contracts.snapshot import FREEZE_AND_CUT
from tests.workflows.conftest import TEST_SERVER, StartWorker
from tests.workflows.doubles import World
from tests.workflows.test_snapshot_workflow import Handle, failed_result, failure_of, start
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot
from workflows.snapshot import SnapshotVirtualMachine


async def scheduled_cuts(handle: Handle) -> list[ActivityTaskScheduledEventAttributes]:
    """How the run scheduled its cut (every attempt's options), from its history."""
    history = await handle.fetch_history()
    return [e.activity_task_scheduled_event_attributes for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name
            == FREEZE_AND_CUT.name]


async def cut_queues(handle: Handle) -> list[str]:
    return [cut.task_queue.name for cut in await scheduled_cuts(handle)]


async def waiting_cut(handle: Handle, timeout: float = 10.0) -> None:
    """Until the cut is scheduled (and, with nobody to take it, waits in its queue)."""
    deadline = time.monotonic() + timeout
    while True:
        pending = (await handle.describe()).raw_description.pending_activities
        if any(p.activity_type.name == FREEZE_AND_CUT.name for p in pending):
            return
        assert time.monotonic() < deadline, "the cut was never scheduled"
        await asyncio.sleep(0.05)


async def test_a_cut_that_freezes_runs_on_the_freeze_queue_one_without_on_the_workflows(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World()
    async with worker_for(world):
        frozen = await start(env, task_queue)
        await frozen.result()
        unfrozen = await start(env, task_queue, quiesce="skip")
        await unfrozen.result()
    assert await cut_queues(frozen) == [freeze_task_queue(task_queue)]
    assert await cut_queues(unfrozen) == [task_queue]
    assert world.cut_inputs[0].freeze is not None and world.cut_inputs[1].freeze is None


@pytest.fixture
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own: an activity that is scheduled and never
    started stops the server's time skipping for good, even once its workflow has
    ended, and the session's shared server must keep skipping for the other tests."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter)
    yield environment
    await environment.shutdown()


async def test_a_snapshot_with_no_freeze_slot_fails_at_its_deadline_never_frozen(
    own_env: WorkflowEnvironment, task_queue: str
) -> None:
    """No freeze worker polls (all slots busy, or none runs): the snapshot waits unfrozen
    and its deadline fails it; nothing was frozen or cut, everything is undone."""
    env = own_env
    world = World()
    began = time.monotonic()
    async with Worker(env.client, task_queue=task_queue,
                      workflows=[SnapshotVirtualMachine, DeleteVirtualMachineSnapshot],
                      activities=world.activities()):
        # A scheduled activity holds the server's time skipping: a deadline of seconds.
        handle = await start(env, task_queue, failure_deadline="3s")
        await waiting_cut(handle)
        error = await failure_of(handle)
    assert time.monotonic() - began < 15
    assert error.type == "SnapshotDeadlineExceeded"
    assert error.message == "snapshot deadline exceeded (3s)"
    assert world.cut_attempts == 0 and FREEZE_AND_CUT.name not in world.calls
    assert not world.frozen and world.volume_snapshots == {} and world.locks == {}
    result = failed_result(error)
    assert world.records[result.name].phase == "Failed"
