"""Shared fixtures: real processes for the simulator, the Temporal dev server and workers.

The dev server and the stack starter live here (not in tests/e2e) because the fault suite
uses them too; every stack has its own simulator and task queue, so tests share the
session's one dev server. Background scenarios (tests/support/background.py) of the
selected modules start with the session's first test.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from cluster.client import Cluster
from rules.cluster_identity import task_queue_for
from simulator.reference import VENDORED_REFERENCE
from starter.connection import connect, load_connection_settings
from starter.local_stack import (
    REPO_ROOT,
    DevServerProcess,
    ManagedProcess,
    start_dev_server,
    start_simulator,
    start_worker,
    stop_all,
)
from tests.support import background as background_scenarios
from tests.support.enforced import new_refusals, start_enforced_simulator
from tests.support.sim import Sim

SEEDS = REPO_ROOT / "simulator" / "seeds"
REFERENCE_EXAMPLES = VENDORED_REFERENCE / "examples"
# Test workers do not create the hourly orphan-sweeper schedule on the shared dev server;
# the tests of that schedule ask for it (extra_env={"VMSNAP_SWEEPER_SCHEDULE": "on"}).
TEST_WORKER_ENV = {"VMSNAP_SWEEPER_SCHEDULE": "off"}

StartSim = Callable[..., Sim]


@pytest.fixture(scope="session")
def start_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartSim]:
    """Start a simulator process on the given seed files; all are stopped at session end."""
    started: list[Sim] = []

    def start(*seeds: Path | str, name: str = "sim", enforce_rbac: bool = False) -> Sim:
        """`enforce_rbac`: the deploy/ RBAC manifests loaded and enforced, the worker's
        ServiceAccount given credentials (`Sim.worker_kubeconfig`)."""
        state = tmp_path_factory.mktemp(name)
        if enforce_rbac:
            process = start_enforced_simulator(state, [Path(s) for s in seeds], name=name)
        else:
            process = start_simulator(state, [Path(s) for s in seeds], name=name)
        sim = Sim(process, state)
        started.append(sim)
        return sim

    yield start
    stop_all(sim.process.process for sim in started)


@pytest.fixture
def simulator(start_sim: StartSim) -> Iterator[Sim]:
    """A fresh simulator on the demo seed, stopped after the test."""
    sim = start_sim(SEEDS / "demo.yaml")
    yield sim
    sim.process.stop()


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServerProcess]:
    """The session's Temporal dev server (on a SQLite file), shared by e2e and fault tests."""
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

    @functools.cached_property
    def cluster_id(self) -> str:
        """The id the worker derived for this simulator (from its kube-system namespace)."""
        cluster = Cluster.from_environment(str(self.sim.kubeconfig))
        try:
            return cluster.cluster_id
        finally:
            cluster.close()


StartStack = Callable[..., Stack]


@pytest.fixture(scope="session")
def start_stack(
    dev_server: DevServerProcess,
    client: Client,
    start_sim: StartSim,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StartStack]:
    """Start a simulator (demo seed by default) and a worker on a task queue of its own; the
    worker runs as its deployed ServiceAccount, refused what deploy/rbac does not grant."""
    workers: list[ManagedProcess] = []

    def start(*seeds: Path | str, extra_env: dict[str, str] | None = None,
              cluster_task_queue: bool = False) -> Stack:
        """`cluster_task_queue`: the worker polls its cluster's own task queue
        (`vmsnap-{cluster id}`), as a deployed worker does, instead of a test's."""
        sim = start_sim(*(seeds or (SEEDS / "demo.yaml",)), name="e2e-sim", enforce_rbac=True)
        task_queue = None if cluster_task_queue else f"vmsnap-e2e-{uuid.uuid4().hex[:8]}"
        worker = start_worker(
            tmp_path_factory.mktemp("worker"),
            dev_server.address,
            sim.worker_kubeconfig,
            task_queue=task_queue,
            extra_env={**TEST_WORKER_ENV, **(extra_env or {})},
        )
        workers.append(worker)
        stack = Stack(sim, worker, task_queue or "", client)
        if task_queue is None:
            stack.task_queue = task_queue_for(stack.cluster_id)
        return stack

    yield start
    stop_all(workers)


@pytest.fixture
def stack(start_stack: StartStack) -> Iterator[Stack]:
    """A fresh simulator on the demo seed and a worker for it, stopped after the test."""
    started = start_stack()
    yield started
    started.worker.stop()
    started.sim.process.stop()


@pytest.fixture(autouse=True)
def no_request_refused() -> Iterator[None]:
    """After each test, no simulator enforcing deploy/rbac refused a request meanwhile: the
    worker runs as its ServiceAccount there, so a refusal is a right the manifests lack
    (tests/support/enforced.py). Background scenarios' refusals count where they are seen."""
    yield
    refused = new_refusals()
    assert not refused, "requests refused by RBAC:\n  " + "\n  ".join(refused)


@pytest.fixture(scope="session", autouse=True)
def background(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[background_scenarios.Background]:
    """The background scenarios of the selected modules, started with the first test so
    that their waits overlap with every other test; nothing when none is selected."""
    chosen = background_scenarios.selected(item.path for item in request.session.items)
    if not chosen:
        yield background_scenarios.Background({})
        return
    started, threads = background_scenarios.start(chosen, tmp_path_factory.mktemp("background"))
    try:
        yield started
    finally:
        unstopped = []
        for thread in threads:  # all at once: their processes' shutdowns overlap
            thread.request_stop()
        for thread in threads:  # each one, even if another does not stop
            try:
                thread.join()
            except RuntimeError as err:
                unstopped.append(str(err))
        assert not unstopped, unstopped
