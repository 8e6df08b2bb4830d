"""A saga: compensations registered before their steps, run in reverse when the work fails.

An activity can take effect and still report failure (a timeout after the
server acted), so each compensation goes on the list *before* its step runs
and must be harmless when the step never happened. Compensations marked
`urgent` run first (the guest's thaw: a frozen guest cannot wait for
deletions); the rest run in reverse order of registration. One failing
compensation does not stop the others: its error is collected and reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from contracts.activity import ActivityRef

I = TypeVar("I")  # noqa: E741 - as in contracts.activity
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")

Compensation = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class _Entry:
    description: str
    undo: Compensation
    urgent: bool


class Saga:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self.ran: list[str] = []

    def add(self, description: str, undo: Compensation, *, urgent: bool = False) -> None:
        """Register `undo` for the step about to run (once per description)."""
        if all(e.description != description for e in self._entries):
            self._entries.append(_Entry(description, undo, urgent))

    def clear(self) -> None:
        """The work is done: nothing to undo any more."""
        self._entries.clear()

    @property
    def pending(self) -> list[str]:
        return [e.description for e in self._ordered()]

    async def compensate(self) -> list[str]:
        """Run every compensation once, urgent first, then in reverse; the failures."""
        failures: list[str] = []
        for entry in self._ordered():
            workflow.logger.info("compensating: %s", entry.description)
            self.ran.append(entry.description)
            try:
                await entry.undo()
            except (ActivityError, ApplicationError) as err:
                cause = err.cause if isinstance(err, ActivityError) and err.cause else err
                failures.append(f"{entry.description}: {cause}")
                workflow.logger.error("compensation failed: %s: %s", entry.description, cause)
        self._entries.clear()
        return failures

    def _ordered(self) -> list[_Entry]:
        backwards = list(reversed(self._entries))
        return [e for e in backwards if e.urgent] + [e for e in backwards if not e.urgent]


STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10))
COMPENSATION_TIMEOUT = timedelta(minutes=5)
COMPENSATION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                 maximum_interval=timedelta(seconds=15))
REPORT_TIMEOUT = timedelta(seconds=30)
REPORT_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3)


async def step(
    activity: ActivityRef[I, O],
    arg: I,
    *,
    start_to_close: timedelta = STEP_TIMEOUT,
    schedule_to_close: timedelta | None = None,
    heartbeat: timedelta | None = None,
    retry: RetryPolicy = STEP_RETRY,
    task_queue: str | None = None,
) -> O:
    """A step's activity, waited for even when cancelled: no step outlives its undo; on
    `task_queue` when given, else on the workflow's."""
    result: O = await workflow.execute_activity(
        activity.name, arg, result_type=activity.output, start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=schedule_to_close, heartbeat_timeout=heartbeat,
        retry_policy=retry, task_queue=task_queue,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
    return result


LOCAL_STEP_TIMEOUT = timedelta(seconds=30)
# Past this much retrying, a local step's next attempt waits in a durable timer (an event)
# instead of in the worker: short API hiccups cost no history, long outages stay visible.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=20)


async def local_step(
    activity: ActivityRef[I, O],
    arg: I,
    *,
    start_to_close: timedelta = LOCAL_STEP_TIMEOUT,
    retry: RetryPolicy = STEP_RETRY,
) -> O:
    """A short step (a few Kubernetes requests) as a local activity, waited for even when
    cancelled.

    It runs in the worker that runs the workflow task, and only its result is written to
    the history (one marker event, no task-queue round trip): a snapshot's record, lock,
    inspection and status writes cost a marker each instead of six events, and no wait
    for an activity task between them. Steps that hold a watch or a frozen guest (the cut,
    readiness) stay ordinary activities, with heartbeats. A worker that dies mid-step
    loses only the workflow task: the next worker runs the step again (every step is
    idempotent).
    """
    result: O = await workflow.execute_local_activity(
        activity.name, arg, result_type=activity.output, start_to_close_timeout=start_to_close,
        retry_policy=retry, local_retry_threshold=LOCAL_RETRY_THRESHOLD,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
    return result


async def compensation(
    activity: ActivityRef[I, O],
    arg: I,
    *,
    start_to_close: timedelta = STEP_TIMEOUT,
    schedule_to_close: timedelta = COMPENSATION_TIMEOUT,
    retry: RetryPolicy = COMPENSATION_RETRY,
) -> None:
    """An undo's activity: retried for longer than a step, since giving up leaves debris."""
    await workflow.execute_activity(
        activity.name, arg, result_type=activity.output, start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=schedule_to_close, retry_policy=retry)


async def report(activity: ActivityRef[I, O], arg: I, *, local: bool = False) -> None:
    """A courtesy (an Event, metrics): retried briefly; its failure is logged, not raised."""
    try:
        if local:
            await workflow.execute_local_activity(
                activity.name, arg, result_type=activity.output,
                start_to_close_timeout=REPORT_TIMEOUT, retry_policy=REPORT_RETRY)
        else:
            await workflow.execute_activity(
                activity.name, arg, result_type=activity.output,
                start_to_close_timeout=REPORT_TIMEOUT, retry_policy=REPORT_RETRY)
    except ActivityError as error:
        workflow.logger.warning("reporting through %s failed: %s", activity.name, error)


def raise_if_cancelled() -> None:
    """Raise CancelledError if the workflow was asked to cancel.

    Temporal hands back a step's result when the step completed in spite of a
    cancel request (WAIT_CANCELLATION_COMPLETED), and the request is then spent:
    without this check before the saga is cleared, such a run would carry on
    and succeed as though it had never been cancelled.
    """
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError()


async def to_completion(work: Coroutine[Any, Any, T]) -> T:
    """Finish `work` even if the workflow is cancelled again meanwhile (clean-up must end)."""
    task = asyncio.create_task(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            continue


STEP_FAILURES = (ActivityError, ApplicationError, ChildWorkflowError)
"""What a step may fail with for good: the saga runs. Anything else is a bug."""


def run_suffix() -> str:
    """Six hex digits of this run, to tell apart runs stamped in the same second.

    From the end of the run id: Temporal's run ids are UUIDv7, whose leading digits are
    the clock (the same for weeks) and whose trailing digits are random.
    """
    return workflow.info().run_id.replace("-", "")[-6:]
