"""Histories of finished snapshots replay on the current code without nondeterminism."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from rules.naming import snapshot_workflow_id
from tests.workflows.conftest import StartWorker
from tests.workflows.doubles import NS, World
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot
from workflows.snapshot import SnapshotVirtualMachine


@pytest.mark.parametrize("outcome", ["succeeded", "deadline", "canceled"])
async def test_histories_replay(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker, outcome: str
) -> None:
    world = World(cut_after_attempts=1 if outcome == "succeeded" else None)
    name = f"replay-{uuid.uuid4().hex[:6]}"
    async with worker_for(world):
        handle = await env.client.start_workflow(
            "SnapshotVirtualMachine",
            {"namespace": NS, "vm": "web", "name": name, "failure_deadline": "1m"},
            id=snapshot_workflow_id(NS, name), task_queue=task_queue)
        if outcome == "canceled":
            while "freeze" not in world.calls:
                await asyncio.sleep(0.02)
            await handle.cancel()
        if outcome == "succeeded":
            await handle.result()
        else:
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[SnapshotVirtualMachine, DeleteVirtualMachineSnapshot],
                        data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
