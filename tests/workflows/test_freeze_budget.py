"""The freeze budget in SnapshotVirtualMachine, on the time-skipping server with doubles:
where the budget comes from, the worker's maximum at admission, a cut that outlives it
(`auto` goes on crash-consistent, `required` fails after the thaw), and the cut's
takeover options (short heartbeat timeout, quick first retry)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cut import QUIET_START_SECONDS
from contracts.snapshot import FREEZE_AND_CUT
from rules.naming import snapshot_workflow_id
from tests.workflows.conftest import StartWorker, freeze_worker
from tests.workflows.doubles import CLUSTER, NS, World, admission, vm_state
from tests.workflows.test_freeze_queue import scheduled_cuts
from tests.workflows.test_snapshot_workflow import (
    COMPENSATION_AFTER_CUT,
    failed_result,
    failure_of,
    start,
)
from workflows.snapshot import CUT_HEARTBEAT, CUT_RETRY, SnapshotVirtualMachine


@asynccontextmanager
async def worker_with_maximum(env: WorkflowEnvironment, task_queue: str, world: World,
                              maximum: float) -> AsyncIterator[Worker]:
    """The doubles, with the real admission of a worker whose maximum budget is `maximum`."""
    activities = [a for a in world.activities()
                  if getattr(a, "__temporal_activity_definition").name != "admit_request"]
    activities = [*activities, admission(max_freeze_budget=maximum)]
    async with Worker(env.client, task_queue=task_queue, workflows=[SnapshotVirtualMachine],
                      activities=activities) as worker, \
            freeze_worker(env, task_queue, activities):
        yield worker


@pytest.mark.parametrize(("fields", "annotation", "budget"), [
    ({}, None, 10.0),
    ({"freeze_budget": "30s"}, "20s", 30.0),
    ({}, "20s", 20.0),
    ({}, "1m30s", 90.0),
    ({}, "not-a-duration", 10.0),
    ({}, "500ms", 10.0),
    ({}, "1h", 300.0),  # well-formed but long: lowered (the cut lowers it to the maximum)
], ids=["default", "input-first", "annotation", "annotation-minutes", "annotation-malformed",
        "annotation-too-short", "annotation-too-long"])
async def test_the_budget_is_the_inputs_else_the_annotations_else_ten_seconds(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker,
    fields: dict[str, Any], annotation: str | None, budget: float,
) -> None:
    world = World(vms={"web": vm_state(freeze_budget=annotation)})
    async with worker_for(world):
        result = await (await start(env, task_queue, **fields)).result()
    assert result.phase == "Succeeded" and result.quiesced
    freeze = world.cut_inputs[0].freeze
    assert freeze is not None and freeze.budget_seconds == budget
    # the deadline still bounds the thaw, whatever the budget
    assert freeze.thaw_by is not None
    assert freeze.thaw_by - result.started_at == timedelta(minutes=5)


async def test_a_budget_above_the_workers_maximum_is_refused_before_any_step(
    env: WorkflowEnvironment, task_queue: str,
) -> None:
    world = World()
    async with worker_with_maximum(env, task_queue, world, maximum=30.0):
        error = await failure_of(await start(env, task_queue, freeze_budget="45s"))
        assert world.calls == []
        within = await (await start(env, task_queue, freeze_budget="30s")).result()
    assert error.type == "FreezeBudgetTooLong"
    assert error.message == ("freeze_budget 45s is above this worker's maximum 30s "
                             "(VMSNAP_MAX_FREEZE_BUDGET); ask for at most that")
    assert within.phase == "Succeeded"


@pytest.mark.parametrize(("budget", "complaint"), [
    ("soon", "invalid duration 'soon'"),
    ("500ms", "'500ms' is too short: at least 1s"),
    ("10m", "'10m' is too long: at most 5m0s"),
    (0, "0 is too short: at least 1s"),
])
async def test_a_malformed_budget_is_refused_at_once(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker,
    budget: object, complaint: str,
) -> None:
    world = World()
    async with worker_for(world):
        handle = await env.client.start_workflow(
            "SnapshotVirtualMachine", {"namespace": NS, "vm": "web", "freeze_budget": budget},
            id=snapshot_workflow_id(CLUSTER, NS, uuid.uuid4().hex[:8]), task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), timeout=20)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ValidationError"
    assert "freeze_budget" in cause.message and complaint in cause.message, cause.message
    assert world.calls == []


async def test_quiesce_auto_goes_on_crash_consistent_when_the_cut_outlives_the_budget(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_outlives_budget=True)
    async with worker_for(world):
        result = await (await start(env, task_queue, freeze_budget="3s")).result()
    assert result.phase == "Succeeded"
    assert result.indications == ["Online", "GuestAgent", "QuiesceTimeout"]
    assert not result.quiesced and result.consistency == "crash"
    assert result.freeze_window_ms == 3000
    assert "thaw-at-budget" in world.calls and not world.frozen
    status = world.status_inputs[-1]
    assert "QuiesceTimeout" in status.indication_messages


async def test_quiesce_required_fails_after_the_thaw_when_the_cut_outlives_the_budget(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(cut_outlives_budget=True)
    async with worker_for(world):
        error = await failure_of(await start(env, task_queue, quiesce="required"))
    assert error.type == "QuiesceTimedOut"
    assert "the freeze budget passed before the cut" in error.message
    result = failed_result(error)
    assert result.phase == "Failed" and "QuiesceTimeout" in result.indications
    # thawed by the cut itself, then the saga: the VolumeSnapshots go, the record stays Failed
    assert world.after(FREEZE_AND_CUT.name) == ["freeze", "thaw-at-budget",
                                                *COMPENSATION_AFTER_CUT]
    assert world.volume_snapshots == {} and not world.frozen
    record = world.records[result.name].result
    assert record is not None and "QuiesceTimeout" in record.indications


async def test_the_cut_is_scheduled_for_a_quick_takeover(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    """A dead worker's cut is noticed within the heartbeat timeout and retried at once."""
    world = World()
    async with worker_for(world):
        handle = await start(env, task_queue)
        await handle.result()
    scheduled = await scheduled_cuts(handle)
    assert len(scheduled) == 1
    cut = scheduled[0]
    # at most 1.5 s: the takeover's aim is 2 s, and a shorter timeout handed live cuts to
    # another worker on a loaded host (workflows/snapshot.py)
    assert cut.heartbeat_timeout.ToTimedelta() == CUT_HEARTBEAT <= timedelta(seconds=1.5)
    # the background heartbeat starts before the timeout passes
    assert timedelta(seconds=QUIET_START_SECONDS) < CUT_HEARTBEAT
    assert cut.retry_policy.initial_interval.ToTimedelta() == CUT_RETRY.initial_interval
    assert CUT_RETRY.initial_interval <= timedelta(milliseconds=200)
