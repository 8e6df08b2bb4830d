"""Stacks for background scenarios: a dev server of their own, simulators and workers (each
worker as its deployed ServiceAccount, under RBAC enforcement: tests/support/enforced.py).

Why not the session's: a background scenario runs on its own thread and event loop, so it
needs a Temporal client made on that loop, and its load stays off the server that the
in-line tests use.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from starter.connection import connect, load_connection_settings
from starter.local_stack import DevServerProcess, start_dev_server, start_worker
from tests.conftest import SEEDS, TEST_WORKER_ENV, Stack
from tests.support.enforced import refused_requests, start_enforced_simulator
from tests.support.sim import Sim


@dataclass
class OwnStacks:
    """A dev server, a client on the scenario's loop, and `start` (blocking: call it with
    `asyncio.to_thread`) for a simulator plus a worker on a task queue of its own."""

    server: DevServerProcess
    client: Client
    start: Callable[..., Stack]


@asynccontextmanager
async def own_stacks(state: Path) -> AsyncIterator[OwnStacks]:
    """Every process started here is stopped on the way out (by its PID)."""
    server = await asyncio.to_thread(start_dev_server, state)
    stops: list[Callable[[], object]] = [server.stop]
    numbers = itertools.count()
    sims: list[Sim] = []
    try:
        client = await connect(
            load_connection_settings(address=server.address, namespace=server.namespace)
        )

        def start(*seeds: Path | str, extra_env: dict[str, str] | None = None) -> Stack:
            home = state / f"stack-{next(numbers)}"
            home.mkdir()
            process = start_enforced_simulator(
                home, [Path(s) for s in seeds or (SEEDS / "demo.yaml",)], name="e2e-sim")
            stops.append(process.stop)
            task_queue = f"vmsnap-bg-{uuid.uuid4().hex[:8]}"
            sim = Sim(process, home)
            worker = start_worker(home, server.address, sim.worker_kubeconfig,
                                  task_queue=task_queue,
                                  extra_env={**TEST_WORKER_ENV, **(extra_env or {})})
            stops.append(worker.stop)
            sims.append(sim)
            return Stack(sim, worker, task_queue, client)

        yield OwnStacks(server, client, start)
        refused = [line for sim in sims for line in refused_requests(sim)]
        assert not refused, f"requests refused by RBAC: {refused}"
    finally:
        for stop in reversed(stops):
            await asyncio.to_thread(stop)
