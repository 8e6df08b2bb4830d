"""The request-priority interceptor inside real activity runs (time-skipping test server, a
real worker): the key the client layer reads in the activity's thread is its workflow run's."""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.request_priority import RunAges, request_priority_interceptors, run_started_at
from cluster.rate_limit import current_request_priority
from starter.local_stack import REPO_ROOT

TEST_SERVER = Path(REPO_ROOT) / ".venv" / "bin" / "temporal-test-server"


def _seen() -> dict[str, Any] | None:
    priority = current_request_priority()
    if priority is None:
        return None
    return {"key": priority.key, "give_up_in": None if priority.give_up_at is None
            else priority.give_up_at - time.monotonic(), "max_wait": priority.max_wait}


@activity.defn
def probe(fail_first: bool) -> dict[str, Any]:
    """What the cluster layer would see: in this thread, in a thread started with a copy of
    the context, and in a plain thread."""
    if fail_first and activity.info().attempt == 1:
        raise RuntimeError("first attempt fails")
    seen: dict[str, Any] = {"thread": _seen(), "attempt": activity.info().attempt,
                            "run_id": activity.info().workflow_run_id}
    copied: list[Any] = []
    plain: list[Any] = []
    context = contextvars.copy_context()
    threads = [threading.Thread(target=context.run, args=(lambda: copied.append(_seen()),)),
               threading.Thread(target=lambda: plain.append(_seen()))]
    for thread in threads:
        thread.start()
        thread.join()
    seen["copied_context_thread"], seen["plain_thread"] = copied[0], plain[0]
    return seen


@workflow.defn(sandboxed=False)
class ProbeRequestPriority:
    @workflow.run
    async def run(self, fail_first: bool) -> list[dict[str, Any]]:
        regular = await workflow.execute_activity(
            probe, fail_first, start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1)))
        local = await workflow.execute_local_activity(
            probe, False, start_to_close_timeout=timedelta(seconds=10))
        return [regular, local]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER))
    yield environment
    await environment.shutdown()


async def run_probe(env: WorkflowEnvironment, worker: Worker, fail_first: bool
                    ) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await env.client.execute_workflow(
        ProbeRequestPriority.run, fail_first, id=f"probe-{uuid.uuid4().hex[:8]}",
        task_queue=worker.task_queue)
    return result


@pytest.mark.timeout(120)
async def test_activities_and_local_activities_carry_their_runs_key(
        env: WorkflowEnvironment) -> None:
    task_queue = f"prio-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(env.client, task_queue=task_queue, workflows=[ProbeRequestPriority],
                          activities=[probe], activity_executor=pool,
                          workflow_runner=UnsandboxedWorkflowRunner(),
                          interceptors=request_priority_interceptors()) as worker:
            first = await run_probe(env, worker, fail_first=True)
            second = await run_probe(env, worker, fail_first=False)
    regular, local = first
    # The sync activity's own thread sees its run's key, also on the retried attempt.
    assert regular["attempt"] == 2 and regular["thread"] is not None
    key = regular["thread"]["key"]
    assert key < second[0]["thread"]["key"]  # the later run goes after
    assert local["thread"]["key"] == key  # a local activity of the same run: same key
    assert second[1]["thread"]["key"] == second[0]["thread"]["key"]
    # Deadlines from the activity's own timeouts: start-to-close 30 s, heartbeat 20 s.
    assert 20 < regular["thread"]["give_up_in"] <= 30 and regular["thread"]["max_wait"] == 20
    assert 0 < local["thread"]["give_up_in"] <= 10 and local["thread"]["max_wait"] is None
    # Threads the activity starts: with a copy of the context they carry the key, without
    # it they do not (their requests are then keyed by arrival).
    assert regular["copied_context_thread"]["key"] == key
    assert regular["plain_thread"] is None


def v7(epoch_ms: int) -> str:
    """A UUIDv7 run ID of a run started at `epoch_ms`."""
    return str(uuid.UUID(f"{epoch_ms:012x}" + "7" + "0" * 3 + "8" + "0" * 15))


def test_a_uuid7_run_id_gives_the_runs_start_and_other_ids_give_none() -> None:
    assert run_started_at(v7(1_800_000_000_123)) == 1_800_000_000.123
    assert run_started_at(str(uuid.uuid4())) is None
    assert run_started_at("not-a-uuid") is None


def test_runs_are_keyed_by_their_start_on_the_monotonic_clock() -> None:
    now, wall = [50.0], [1_000.0]
    ages = RunAges(clock=lambda: now[0], wall=lambda: wall[0])
    # Started 5 s and 2 s before now by the server's clock: keys 45 and 48, whatever the
    # order this worker sees them in, and the same key for every later activity.
    assert ages.key(v7(998_000)) == 48.0
    assert ages.key(v7(995_000)) == 45.0
    now[0], wall[0] = 60.0, 1_010.5
    assert ages.key(v7(998_000)) == 48.0


def test_runs_without_a_start_are_keyed_by_first_sight_and_the_oldest_forgotten() -> None:
    now = [0.0]
    ages = RunAges(clock=lambda: now[0], capacity=2)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    assert ages.key(a) == 0.0
    now[0] = 1.0
    assert ages.key(b) == 1.0 and ages.key(a) == 0.0  # "a" used again: "b" is oldest
    now[0] = 2.0
    assert ages.key(None) == 2.0 and len(ages) == 2  # no run: keyed by now, not remembered
    assert ages.key(c) == 2.0 and len(ages) == 2
    now[0] = 3.0
    assert ages.key(a) == 0.0 and ages.key(b) == 3.0  # "b" was forgotten: seen anew
    with pytest.raises(ValueError):
        RunAges(capacity=0)
