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
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows.failures import CANCELED, describe

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


T = TypeVar("T")

STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10))
COMPENSATION_TIMEOUT = timedelta(minutes=5)
COMPENSATION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                 maximum_interval=timedelta(seconds=15))


async def step(
    name: str,
    arg: BaseModel,
    result_type: type[T],
    *,
    start_to_close: timedelta = STEP_TIMEOUT,
    schedule_to_close: timedelta | None = None,
    heartbeat: timedelta | None = None,
    retry: RetryPolicy = STEP_RETRY,
) -> T:
    """A step's activity, waited for even when cancelled: no step outlives its undo."""
    return await workflow.execute_activity(
        name, arg, result_type=result_type, start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=schedule_to_close, heartbeat_timeout=heartbeat,
        retry_policy=retry,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)


LOCAL_STEP_TIMEOUT = timedelta(seconds=30)
# Past this much retrying, a local step's next attempt waits in a durable timer (an event)
# instead of in the worker: short API hiccups cost no history, long outages stay visible.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=20)


async def local_step(
    name: str,
    arg: BaseModel,
    result_type: type[T],
    *,
    start_to_close: timedelta = LOCAL_STEP_TIMEOUT,
    retry: RetryPolicy = STEP_RETRY,
) -> T:
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
    return await workflow.execute_local_activity(
        name, arg, result_type=result_type, start_to_close_timeout=start_to_close,
        retry_policy=retry, local_retry_threshold=LOCAL_RETRY_THRESHOLD,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)


async def compensation(
    name: str,
    arg: BaseModel,
    *,
    start_to_close: timedelta = STEP_TIMEOUT,
    schedule_to_close: timedelta = COMPENSATION_TIMEOUT,
    retry: RetryPolicy = COMPENSATION_RETRY,
) -> None:
    """An undo's activity: retried for longer than a step, since giving up leaves debris."""
    await workflow.execute_activity(
        name, arg, start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=schedule_to_close, retry_policy=retry)


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


async def run_or_undo(
    steps: Coroutine[Any, Any, None],
    fail: Callable[[str, str], Coroutine[Any, Any, ApplicationError]],
    current_step: Callable[[], str],
) -> None:
    """Run a workflow's steps; when one fails for good or the workflow is cancelled, raise
    what `fail(reason, error type)` returns (it runs the saga and attaches the result).

    A cancel is answered the same way whenever it lands, during a step or between two:
    the steps are stopped and waited for (no step outlives its undo), then the workflow
    fails with type `Canceled` and the result, rather than ending as cancelled.
    """
    task = asyncio.create_task(steps)
    try:
        await task
    except asyncio.CancelledError:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *STEP_FAILURES):
                await task
        raise await to_completion(fail("canceled", CANCELED)) from None
    except STEP_FAILURES as error:
        message, error_type = describe(error)
        raise await fail(f"{current_step()}: {message}", error_type) from error


def run_suffix() -> str:
    """Six hex digits of this run, to tell apart runs stamped in the same second.

    From the end of the run id: Temporal's run ids are UUIDv7, whose leading digits are
    the clock (the same for weeks) and whose trailing digits are random.
    """
    return workflow.info().run_id.replace("-", "")[-6:]
