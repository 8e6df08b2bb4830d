"""The bare-Temporal floor for the orchestration benchmark: a snapshot's shape, doing nothing.

`BareSnapshot` replays a *shape*, the commands that SnapshotVirtualMachine's
workflow tasks issued in a real run (search-attribute upserts, the deadline
timer started and cancelled, the activities in the same order and grouping),
read from that run's history with `shape_from_history`. Reading the shape from
a real history, rather than writing it down here, keeps the floor honest while
the real workflow changes: the benchmark checks that the bare run's history
has the same shape as the real one.

Its activities do nothing: one dynamic activity answers every name. The worker
that runs them (`python -m bench.bare_snapshot --task-queue Q`) uses the same
worker settings as worker.py, so the ratio real / bare is vmsnap's own cost
(Kubernetes calls, payloads, the simulator), not a different worker setup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey

BARE_WORKFLOW = "BareSnapshot"
UPSERT = "upsert"
TIMER = "timer"
CANCEL_TIMER = "cancel_timer"
ACTIVITY = "activity:"
LOCAL = "local:"
LOCAL_ACTIVITY_MARKER = "core_local_activity"

PHASE = SearchAttributeKey.for_keyword("SnapshotPhase")
STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10))


@dataclass
class BareShape:
    """Per workflow task, the commands it issues, in order: `upsert`, `timer`,
    `cancel_timer`, `activity:NAME` (activities of one task run concurrently) or
    `local:NAME` (a local activity: run in turn, before the commands after it)."""

    tasks: list[list[str]] = field(default_factory=list)
    timer_seconds: float = 300.0

    def activity_names(self) -> list[str]:
        return [c[len(ACTIVITY):] for task in self.tasks for c in task if c.startswith(ACTIVITY)]

    def local_activity_names(self) -> list[str]:
        return [c[len(LOCAL):] for task in self.tasks for c in task if c.startswith(LOCAL)]


def shape_from_history(events: Iterable[Any]) -> BareShape:
    """The commands each workflow task of a history issued (events of
    `temporalio.api.history.v1.HistoryEvent`), and the timer's duration."""
    from temporalio.api.enums.v1 import EventType

    command_kinds = {
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: UPSERT,
        EventType.EVENT_TYPE_TIMER_STARTED: TIMER,
        EventType.EVENT_TYPE_TIMER_CANCELED: CANCEL_TIMER,
    }
    tasks: list[list[str]] = []
    current: list[str] | None = None
    timer_seconds = BareShape().timer_seconds
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            current = []
            tasks.append(current)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if current is None:
                raise ValueError("an activity was scheduled before any workflow task completed")
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            current.append(ACTIVITY + name)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            if current is None:
                raise ValueError("a marker appears before any workflow task completed")
            if event.marker_recorded_event_attributes.marker_name == PATCH_MARKER:
                continue  # a version marker (workflow.patched): no work to copy
            current.append(LOCAL + local_activity_type(event))
        elif kind in command_kinds:
            if current is None:
                raise ValueError("a command appears before any workflow task completed")
            current.append(command_kinds[kind])
            if kind == EventType.EVENT_TYPE_TIMER_STARTED:
                timeout = event.timer_started_event_attributes.start_to_fire_timeout
                timer_seconds = timeout.ToTimedelta().total_seconds()
        elif kind in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
                      EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
                      EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
                      EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED):
            raise ValueError("the history is not of a completed run: its shape is not the "
                             "happy path the benchmark compares")
    # The last task completes the workflow: it issues no command the bare run copies.
    while tasks and not tasks[-1]:
        tasks.pop()
    if not tasks:
        raise ValueError("the history holds no completed workflow task")
    return BareShape(tasks=tasks, timer_seconds=timer_seconds)


PATCH_MARKER = "core_patch"  # what the SDK core names the marker of workflow.patched


def local_activity_type(event: Any) -> str:
    """The activity type a local activity's marker records (the SDK core writes it as JSON
    under `data`); a marker of any other kind is refused, not guessed at."""
    attributes = event.marker_recorded_event_attributes
    if attributes.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in attributes.details:
        raise ValueError(f"marker {attributes.marker_name!r} is not a local activity's")
    payload = attributes.details["data"].payloads[0]
    return str(json.loads(payload.data)["activity_type"])


@workflow.defn(name=BARE_WORKFLOW)
class BareSnapshot:
    """Issues the shape's commands, task by task; every activity is a no-op."""

    @workflow.run
    async def run(self, shape: BareShape) -> int:
        # Every command is a task, started in the recorded order: tasks first run in the
        # order they were created, so the commands reach the server in that order.
        timer: asyncio.Task[None] | None = None
        done = 0
        for task in shape.tasks:
            steps: list[asyncio.Task[Any]] = []
            for command in task:
                if command == UPSERT:
                    steps.append(asyncio.create_task(_upsert()))
                elif command == TIMER:
                    timer = asyncio.create_task(
                        workflow.sleep(timedelta(seconds=shape.timer_seconds)))
                elif command == CANCEL_TIMER:
                    if timer is not None:
                        timer.cancel()
                elif command.startswith(LOCAL):
                    # Local activities run one after another, as the snapshot's do.
                    await workflow.execute_local_activity(
                        command[len(LOCAL):], start_to_close_timeout=STEP_TIMEOUT,
                        retry_policy=STEP_RETRY)
                elif command.startswith(ACTIVITY):
                    steps.append(asyncio.create_task(workflow.execute_activity(
                        command[len(ACTIVITY):], start_to_close_timeout=STEP_TIMEOUT,
                        retry_policy=STEP_RETRY)))
                else:
                    raise ValueError(f"unknown command {command!r} in the shape")
            for step in steps:
                await step
            done += sum(1 for command in task if command.startswith((ACTIVITY, LOCAL)))
        return done


async def _upsert() -> None:
    workflow.upsert_search_attributes([PHASE.value_set("bare")])


@activity.defn(dynamic=True)
def do_nothing(args: Sequence[RawValue]) -> None:
    """Every activity of the bare shape: it returns at once."""
    del args


async def serve(task_queue: str, stop: asyncio.Event) -> None:
    """A worker with worker.py's settings for the bare workflow and its no-op activity."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    import worker as product

    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        data_converter=pydantic_data_converter)
    options = product_worker_options()
    threads = int(options.pop("activity_threads"))
    with ThreadPoolExecutor(threads, thread_name_prefix="activity") as pool:
        async with Worker(client, task_queue=task_queue, workflows=[BareSnapshot],
                          activities=[do_nothing], activity_executor=pool,
                          graceful_shutdown_timeout=product.GRACEFUL_SHUTDOWN,
                          max_heartbeat_throttle_interval=product.MAX_HEARTBEAT_THROTTLE,
                          **options):
            print(f"worker started: polling task queue {task_queue!r} (bare)", flush=True)
            await stop.wait()


def product_worker_options() -> dict[str, Any]:
    """The worker's concurrency settings as worker.py uses them (with the environment's
    tuning, when starter.worker_tuning is wired in), plus `activity_threads`."""
    from starter.worker_tuning import WorkerTuning

    tuning = WorkerTuning.from_environment(os.environ)
    return {**tuning.worker_options(), "activity_threads": tuning.activity_threads}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the bare-Temporal worker of the benchmark")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.task_queue, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
