"""End-to-end fixtures: the Temporal dev server, simulators and workers as real processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from starter.connection import connect, load_connection_settings
from starter.local_stack import (
    DevServerProcess,
    ManagedProcess,
    start_dev_server,
    start_worker,
)
from tests.conftest import SEEDS, StartSim
from tests.support.sim import Sim


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServerProcess]:
    server = start_dev_server(tmp_path_factory.mktemp("temporal"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def client(dev_server: DevServerProcess) -> AsyncIterator[Client]:
    yield await connect(
        load_connection_settings(address=dev_server.address, namespace=dev_server.namespace)
    )


@dataclass
class Stack:
    """One simulator and one worker on its own task queue, sharing the session's dev server."""

    sim: Sim
    worker: ManagedProcess
    task_queue: str
    client: Client


StartStack = Callable[..., Stack]


@pytest.fixture(scope="session")
def start_stack(
    dev_server: DevServerProcess,
    client: Client,
    start_sim: StartSim,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StartStack]:
    workers: list[ManagedProcess] = []

    def start(*seeds: Path | str, extra_env: dict[str, str] | None = None) -> Stack:
        sim = start_sim(*(seeds or (SEEDS / "demo.yaml",)), name="e2e-sim")
        task_queue = f"vmsnap-e2e-{uuid.uuid4().hex[:8]}"
        worker = start_worker(
            tmp_path_factory.mktemp("worker"),
            dev_server.address,
            sim.kubeconfig,
            task_queue=task_queue,
            extra_env=extra_env,
        )
        workers.append(worker)
        return Stack(sim, worker, task_queue, client)

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def stack(start_stack: StartStack) -> Iterator[Stack]:
    """A fresh simulator on the demo seed and a worker for it, stopped after the test."""
    started = start_stack()
    yield started
    started.worker.stop()
    started.sim.process.stop()
