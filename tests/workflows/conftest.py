"""Workflow tests on Temporal's time-skipping test server (a real process, no download)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.common import freeze_task_queue
from starter.local_stack import REPO_ROOT
from tests.workflows.doubles import World
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot
from workflows.snapshot import SnapshotVirtualMachine

TEST_SERVER = Path(REPO_ROOT) / ".venv" / "bin" / "temporal-test-server"


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter
    )
    yield environment
    await environment.shutdown()


StartWorker = Callable[[World], AbstractAsyncContextManager[Worker]]


@pytest.fixture
def task_queue() -> str:
    return f"wf-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def worker_for(env: WorkflowEnvironment, task_queue: str) -> StartWorker:
    """`async with worker_for(world):` a worker on a fresh task queue with the doubles."""

    @asynccontextmanager
    async def make(world: World) -> AsyncIterator[Worker]:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[SnapshotVirtualMachine, DeleteVirtualMachineSnapshot],
            activities=world.activities(),
        ) as worker, freeze_worker(env, task_queue, world.activities()):
            yield worker

    return make


def freeze_worker(env: WorkflowEnvironment, task_queue: str,
                  activities: Sequence[Callable[..., Any]]) -> Worker:
    """The worker of `task_queue`'s freeze task queue, where a cut that freezes runs (the
    worker's freeze process in production: worker.build_freeze_worker)."""
    return Worker(env.client, task_queue=freeze_task_queue(task_queue),
                  activities=list(activities))
