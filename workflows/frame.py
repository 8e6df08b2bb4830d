"""The frame every long operation runs in: steps raced against a deadline, a saga, one
way to fail and one way to be cancelled.

A workflow class derives from `Operation[InputT, ResultT]`, sets `input` and `result`
in `begin`, and hands its own steps to `run_steps`. The frame then gives every
operation the same behaviour:

- **the current step** (`enter`): what the `progress` query and the Temporal UI's
  current details show;
- **the failure deadline**, a durable timer raced against the steps (none when it is
  0); when it fires the steps are stopped and the saga runs;
- **the saga** (`self.saga`, urgent compensations first): when a step fails for good,
  the deadline passes or the workflow is cancelled, the steps are stopped and waited
  for (no step outlives its undo), then every compensation runs once;
- **failure**: the result, phase `Failed` with the reason and the compensations that
  failed, reported (`report`), then an `ApplicationError` of the step's error type that
  carries the result as its details;
- **cancellation**: the same saga, then the workflow ends as *Canceled* (Temporal's own
  state, which the UI, parents and schedules understand); the result with phase `Failed`
  and error type `Canceled` is reported and stays in the record and the `progress`
  query;
- **search attributes** updated only on runs started with vmsnap's attributes
  (`upsert_search_attributes`), since an attribute the namespace lacks would stall the
  run.

A value that cannot be computed for a step (`OverflowError`, `ValueError`: a time out of
range, a payload its model refuses) is a failure of that step too, of type
`InvalidValue`: the saga runs and the run ends Failed, instead of retrying its workflow
task forever while it holds a lock and objects. Any other exception is a bug in the
workflow: it fails the workflow task (Temporal retries it after a fix is deployed)
instead of being compensated as though the cluster had refused something.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.common import CANCELED, INVALID_VALUE
    from contracts.lock import RENEW_EVERY_SECONDS
    from rules.durations import format_go_duration
    from workflows.failures import describe
    from workflows.saga import STEP_FAILURES, Saga, to_completion
    from workflows.search_attributes import ALL as ALL_ATTRIBUTES


class OperationResult(Protocol):
    """What the frame writes on every operation's result."""

    phase: Any
    error: str | None
    error_type: str | None
    cleanup_errors: list[str]
    finished_at: datetime | None


VALUE_ERRORS = (OverflowError, ValueError)
"""What a step may fail with while computing its inputs: a failure, not a bug."""

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT", bound=OperationResult)


class Operation(Generic[InputT, ResultT]):
    """One long operation: its input, its result so far, its step and its saga."""

    deadline_error_type = "DeadlineExceeded"
    deadline_name = "deadline"

    def __init__(self) -> None:
        self.saga = Saga()
        self.step = "starting"
        self._input: InputT | None = None
        self._result: ResultT | None = None
        self.deadline_at: datetime | None = None
        self.deadline_seconds = 0.0
        self.cluster = ""  # the cluster id, once admitted ("" for runs from before ids)
        self._lease: asyncio.Task[None] | None = None
        self._lease_error: BaseException | None = None  # the renewal that failed for good

    # ---- what each operation says --------------------------------------------------------

    def details(self) -> str:
        """One line for the Temporal UI: the step, the object, the phase."""
        return f"**{self.step}**"

    async def report(self) -> None:
        """Tell the cluster and the metrics how the operation ended (best effort)."""

    def on_failed(self) -> None:
        """The result has just turned Failed (before the saga runs)."""

    # ---- the frame ------------------------------------------------------------------------

    def begin(self, input: InputT, result: ResultT, deadline_seconds: float = 0) -> None:
        """The operation starts: its input, its first result, its deadline (0 = none)."""
        self._input, self._result = input, result
        self.deadline_seconds = deadline_seconds
        if deadline_seconds:
            self.deadline_at = workflow.now() + timedelta(seconds=deadline_seconds)
        self.enter("starting")

    @property
    def input(self) -> InputT:
        assert self._input is not None, "the workflow has not started"
        return self._input

    @property
    def result(self) -> ResultT:
        assert self._result is not None, "the workflow has not started"
        return self._result

    def enter(self, step: str) -> None:
        self.step = step
        workflow.set_current_details(self.details())

    def time_left(self) -> float | None:
        """Seconds to the deadline (never negative); None without one."""
        if self.deadline_at is None:
            return None
        return max((self.deadline_at - workflow.now()).total_seconds(), 0.0)

    async def run_steps(self, steps: Coroutine[Any, Any, None]) -> None:
        """Run the steps within the deadline; on failure, deadline or cancel, undo and raise."""
        task = asyncio.create_task(steps)
        try:
            await workflow.wait_condition(lambda: task.done() or self._lease_lost(),
                                          timeout=self.time_left())
        except TimeoutError:
            self.drop_lease()
            await self._stop(task)
            raise await self.fail(self._deadline_message(), self.deadline_error_type) from None
        except asyncio.CancelledError:
            self.drop_lease()
            await to_completion(self._stop(task))
            await to_completion(self.fail("canceled", CANCELED))
            raise
        self.drop_lease()
        if self._lease_error is not None and not task.done():
            await self._stop(task)
        error = self._lease_error or task.exception()
        if error is None:
            return
        if isinstance(error, VALUE_ERRORS) and not isinstance(error, STEP_FAILURES):
            raise await self.fail(f"{self.step}: {type(error).__name__}: {error}",
                                  INVALID_VALUE) from error
        if not isinstance(error, STEP_FAILURES):
            raise error  # a bug: fail the workflow task (retried), never compensate it
        message, error_type = describe(error)
        if error_type == CANCELED:  # a step saw the cancel first
            await to_completion(self.fail("canceled", CANCELED))
            raise asyncio.CancelledError() from error
        raise await self.fail(f"{self.step}: {message}", error_type) from error

    # ---- the VM lock's lease ----------------------------------------------------------

    def hold_lease(self, renew: Callable[[], Awaitable[None]]) -> None:
        """Renew the VM lock's lease every `RENEW_EVERY_SECONDS` beside the steps, until
        `drop_lease` or the steps end. A renewal that fails for good (LockLost: the
        lease ended and another operation has the VM) stops the steps and fails the run
        with its error, saga and all: a run that has lost its VM must not go on."""

        async def renewals() -> None:
            while True:
                await workflow.sleep(RENEW_EVERY_SECONDS)
                try:
                    await renew()
                except STEP_FAILURES as error:
                    self._lease_error = error
                    return

        self._lease = asyncio.create_task(renewals())

    def drop_lease(self) -> None:
        """Stop renewing (the lock is about to be released, or the steps have ended)."""
        if self._lease is not None and not self._lease.done():
            self._lease.cancel()
        self._lease = None

    def _lease_lost(self) -> bool:
        return self._lease_error is not None

    async def admitted(self, admission: Awaitable[str]) -> None:
        """The admission, before any step: refused or cancelled there, the operation ends
        Failed with nothing to undo and nothing reported (nothing was touched). Admitted,
        the run knows its cluster (`self.cluster`)."""
        try:
            self.cluster = await admission
        except asyncio.CancelledError:
            self._ended("canceled", CANCELED)
            raise
        except ApplicationError as error:
            self._ended(error.message, error.type or "")
            raise

    def _ended(self, reason: str, error_type: str) -> None:
        result = self.result
        result.phase = "Failed"
        result.error, result.error_type = reason, error_type
        result.finished_at = workflow.now()
        self.enter("failed")

    async def fail(self, reason: str, error_type: str) -> ApplicationError:
        """Run the saga, report, and return the error the workflow fails with."""
        result = self.result
        self.enter("compensating")
        result.phase = "Failed"
        result.error, result.error_type = reason, error_type
        self.on_failed()
        result.cleanup_errors = await self.saga.compensate()
        result.finished_at = workflow.now()
        await self.report()
        self.enter("failed")
        return ApplicationError(reason, result, type=error_type, non_retryable=True)

    def finish(self) -> ResultT:
        """The operation is done: its result, with the time it ended."""
        self.result.finished_at = workflow.now()
        self.enter("done")
        return self.result

    @staticmethod
    def upsert_search_attributes(updates: list[SearchAttributeUpdate[Any]]) -> None:
        """Keep the UI's filters current, on runs started with vmsnap's attributes only.

        An attribute the namespace does not know fails the workflow task, and the
        workflow cannot see the namespace's registrations. A run started with any of
        them (the SDK, the CLI and schedules always set them) proves they exist; a run
        started without (a bare `temporal workflow start`) is left unfiltered rather
        than stuck. The worker registers them at start-up where the server lets it.
        """
        started_with = workflow.info().typed_search_attributes
        if any(started_with.get(key) is not None for key in ALL_ATTRIBUTES):
            workflow.upsert_search_attributes(updates)

    def _deadline_message(self) -> str:
        return f"{self.deadline_name} exceeded ({format_go_duration(self.deadline_seconds)})"

    @staticmethod
    async def _stop(task: asyncio.Task[None]) -> None:
        """Cancel the steps and wait until their activity has really stopped
        (WAIT_CANCELLATION_COMPLETED): nothing may be created after its clean-up."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *STEP_FAILURES):
            await task
