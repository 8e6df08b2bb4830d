"""How a workflow reports a failed step: the activity's own message and error type.

Users read the workflow's failure in the UI or CLI; "Activity task failed"
says nothing, so a workflow fails with an ApplicationError that carries the
activity's message (prefixed with the step) and its stable error type.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from contracts.common import CANCELED


def describe(error: BaseException) -> tuple[str, str]:
    """(message, type) of a step's failure, from the activity's own error when there is one
    (through a child workflow's failure too)."""
    if isinstance(error, ChildWorkflowError) and error.cause is not None:
        return describe(error.cause)
    if isinstance(error, ActivityError):
        cause = error.cause
        if isinstance(cause, ApplicationError):
            return cause.message, cause.type or "ActivityFailed"
        if isinstance(cause, ActivityTimeout):
            kind = cause.type.name if cause.type is not None else "timeout"
            return f"activity {error.activity_type} timed out ({kind})", "ActivityTimeout"
        if isinstance(cause, CancelledError):
            return "canceled", CANCELED
        return str(cause or error), "ActivityFailed"
    if isinstance(error, ApplicationError):
        return error.message, error.type or "ApplicationError"
    return str(error), type(error).__name__


def step_failure(step: str, error: BaseException, *details: object) -> ApplicationError:
    """The final error of a workflow whose `step` failed with `error`."""
    message, error_type = describe(error)
    return ApplicationError(f"{step}: {message}", *details, type=error_type, non_retryable=True)
