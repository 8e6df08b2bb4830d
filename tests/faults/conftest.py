"""Fault-suite fixtures: dev servers on SQLite files, simulators and workers as real
processes that tests kill (-9) and restart by PID.

`FaultStack` is one simulator (on a seed of `tests/faults/seeds.py`) with its own task
queue and the workers serving it; several scenarios share one stack, each in its own
namespace. The workers run as their deployed ServiceAccount under RBAC enforcement
(tests/support/enforced.py): a retry or compensation that needs a right deploy/rbac does
not grant fails as it would in a cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from rules.naming import snapshot_workflow_id
from starter.local_stack import (
    DevServerProcess,
    ManagedProcess,
    start_dev_server,
    start_worker,
    stop_all,
)
from tests.conftest import TEST_WORKER_ENV
from tests.faults.seeds import VmSeed, write_seed
from tests.support.background import Background as Background  # for the scenarios' tests
from tests.support.background import Scenario, register
from tests.support.enforced import refused_requests, start_enforced_simulator
from tests.support.sim import Sim

K = TypeVar("K", bound=Hashable)
LONG = os.environ.get("VMSNAP_FAULTS_LONG", "") not in ("", "0")


def scale(bounded: int, long: int) -> int:
    """The bounded form's figure in `make test`; the long form's with VMSNAP_FAULTS_LONG=1."""
    return long if LONG else bounded


@dataclass
class Outcome:
    """How a workflow ended, as Temporal has it."""

    status: str  # "completed", "failed", or "running" (not ended within the wait)
    result: dict[str, Any] | None = None
    error_type: str | None = None
    message: str = ""


async def outcome(handle: WorkflowHandle[Any, Any], timeout: float) -> Outcome:
    try:
        result = await asyncio.wait_for(handle.result(), timeout)
    except TimeoutError:
        return Outcome("running", None, None, f"{handle.id} still running after {timeout}s")
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            return Outcome("failed", None, cause.type, cause.message)
        return Outcome("failed", None, type(cause).__name__, str(cause))
    return Outcome("completed", result)


FAULTS_CLUSTER = "faults"  # the workers' VMSNAP_CLUSTER_ID: in every workflow ID
# The scenarios hold several guests frozen at once on purpose (slow cuts held open at their
# boundaries, all at the same time): the default bound of 2 would queue the third behind
# them. Freeze admission has tests of its own (tests/workflows/test_freeze_queue.py,
# tests/e2e/test_snapshot_worker.py).
FAULT_FREEZES_IN_FLIGHT = "8"


@dataclass
class FaultStack:
    server: DevServerProcess
    client: Client
    sim: Sim
    state_dir: Path
    task_queue: str = field(default_factory=lambda: f"vmsnap-faults-{uuid.uuid4().hex[:8]}")
    workers: list[ManagedProcess] = field(default_factory=list)

    def start_worker(self) -> ManagedProcess:
        worker = start_worker(
            self.state_dir, self.server.address, self.sim.worker_kubeconfig,
            task_queue=self.task_queue, name=f"worker-{len(self.workers)}",
            extra_env={**TEST_WORKER_ENV, "VMSNAP_CLUSTER_ID": FAULTS_CLUSTER,
                       "VMSNAP_MAX_FREEZES_IN_FLIGHT": FAULT_FREEZES_IN_FLIGHT},
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def kill_workers(self) -> None:
        """kill -9 of every running worker of this stack, by PID."""
        for worker in self.workers:
            if worker.running():
                worker.kill()

    async def start_snapshot(
        self, namespace: str, name: str, vm: str = "vm", **fields: Any
    ) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            "SnapshotVirtualMachine", {"namespace": namespace, "vm": vm, "name": name, **fields},
            id=snapshot_workflow_id(FAULTS_CLUSTER, namespace, name), task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )  # fmt: skip

    async def start(
        self, workflow: str, workflow_id: str, arg: dict[str, Any]
    ) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            workflow, arg, id=workflow_id, task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )  # fmt: skip

    async def wait_for_request(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first logged API request that `matches` (logged once answered)."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in await asyncio.to_thread(self.sim.requests_log):
                if matches(entry):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching request in the simulator's log in {timeout}s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        stop_all(self.workers)
        self.sim.process.stop()


async def outcomes(
    handles: dict[K, WorkflowHandle[Any, Any]], timeout: float
) -> dict[K, Outcome]:
    """Every run's end, waited for together (so one slow run does not hide the others)."""
    ends = await asyncio.gather(*(outcome(h, timeout) for h in handles.values()))
    return dict(zip(handles, ends, strict=True))


async def wait_thawed(sim: Sim, timeout: float) -> None:
    """Until every freeze in the simulator's freeze log has ended (the guest's own timer
    included); returns at the timeout either way, for the invariants to judge."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = await asyncio.to_thread(sim.freeze_log)
        if all(entry["thawed_at"] is not None for entry in log):
            return
        await asyncio.sleep(0.1)


def request_matcher(
    verb: str, resource: str, namespace: str, subresource: str = "", ok: bool = True
) -> Callable[[dict[str, Any]], bool]:
    """A predicate on request-log entries: this verb on this resource in this namespace."""

    def matches(entry: dict[str, Any]) -> bool:
        return (
            entry["verb"] == verb
            and entry["resource"] == resource
            and entry["namespace"] == namespace
            and entry["subresource"] == subresource
            and (not ok or 200 <= entry["status"] < 300)
        )

    return matches


@pytest.fixture(scope="session")
def fault_server(dev_server: DevServerProcess) -> DevServerProcess:
    """The session's dev server (tests/conftest.py, on a SQLite file): the scenarios that do
    not kill the server share it, each on its own task queue and namespaces."""
    return dev_server


@pytest.fixture(scope="session")
def fault_client(client: Client) -> Client:
    return client


StartFaultStack = Callable[[list[VmSeed]], FaultStack]

# ---- scenarios run in the background --------------------------------------------------
# A scenario that mostly waits (on activity timeouts after a kill) runs on its own stack
# while the other tests run, so that the suite's wall time is not the sum of its waits.
# Its test module registers it; the session's first test starts every registered scenario
# whose module is selected (tests/support/background.py, on a thread of its own), and the
# scenario's test awaits its result through the `background` fixture.


@asynccontextmanager
async def fault_environment(state: Path) -> AsyncIterator[StartFaultStack]:
    """A dev server of the background scenarios' own (their load stays off the session's
    server) and a stack starter on it; every stack and the server stop at session end."""
    server = await asyncio.to_thread(start_dev_server, state, db_file=state / "temporal.db")
    stacks: list[FaultStack] = []
    numbers = itertools.count()  # scenarios start stacks at once, from worker threads
    try:
        client = await Client.connect(server.address, namespace=server.namespace)

        def start(vms: list[VmSeed]) -> FaultStack:
            directory = state / f"stack-{next(numbers)}"
            directory.mkdir()
            stack = _start_stack(server, client, directory, vms)
            stacks.append(stack)
            return stack

        yield start
        refused = [line for stack in stacks
                   for line in await asyncio.to_thread(refused_requests, stack.sim)]
        assert not refused, f"requests refused by RBAC: {refused}"
    finally:  # the stacks at once: their workers' and simulators' shutdowns overlap
        await asyncio.gather(*(asyncio.to_thread(stack.stop) for stack in stacks))
        await asyncio.to_thread(server.stop)


def background_scenario(module_file: str) -> Callable[[Scenario], Scenario]:
    """Register `scenario` (async, given a stack starter) to run in the background."""
    return register(module_file, fault_environment, shared=True)


def _start_stack(
    server: DevServerProcess, client: Client, state: Path, vms: list[VmSeed]
) -> FaultStack:
    seed = write_seed(state / "seed.yaml", vms)
    process = start_enforced_simulator(state, [seed], name="faults-sim")
    stack = FaultStack(server, client, Sim(process, state), state)
    try:
        stack.start_worker()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture
def start_fault_stack(
    fault_server: DevServerProcess, fault_client: Client, tmp_path: Path
) -> Iterator[StartFaultStack]:
    """A simulator on the given VMs and one worker; everything stopped after the test."""
    stacks: list[FaultStack] = []

    def start(vms: list[VmSeed]) -> FaultStack:
        state = tmp_path / f"stack-{len(stacks)}"
        state.mkdir()
        stack = _start_stack(fault_server, fault_client, state, vms)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.stop()
