"""The SDK's errors, and how Temporal's failures and RPC errors become them.

Every error a user of `starter.sdk` sees is a `VmsnapError` with a one-line message,
so a CLI or a service can print it as it is. A failed workflow keeps its stable
`error_type` (the `ApplicationError.type` the workflow raised: VmNotFound,
SnapshotNotFound, ...; "Canceled" for a canceled run) and, through `.result`, the
typed result the workflow attached to its failure, which says what it did and undid.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    TimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.clone import CloneVirtualMachineResult
from contracts.common import CANCELED
from contracts.restore import RestoreVirtualMachineResult
from contracts.schedule import ScheduledSnapshotResult
from contracts.snapshot import SnapshotVirtualMachineResult

ModelT = TypeVar("ModelT", bound=BaseModel)


class VmsnapError(Exception):
    """Anything the SDK reports to a user; the message is one line."""


class InvalidRequest(VmsnapError, ValueError):
    """The request cannot be valid; nothing was started or changed."""


class ObjectNotFound(VmsnapError):
    """A VM, snapshot, schedule or workflow that does not exist."""


class AlreadyExists(VmsnapError):
    """A snapshot, schedule or target VM of that name exists already."""


class AlreadyRunning(VmsnapError):
    """Another request runs under the same workflow ID (a restore of the same VM from
    another snapshot, say): joining it would silently do something else."""


class NoClusterAccess(VmsnapError):
    """The operation reads the cluster and no Kubernetes configuration is usable."""


class WorkflowFailed(VmsnapError):
    """A workflow failed; `error_type` is the stable type (VmNotFound, NoEligibleVolume, ...)."""

    def __init__(self, message: str, error_type: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.details = details or []

    def _result(self, model: type[ModelT]) -> ModelT | None:
        """The typed result the workflow attached as its failure's first detail, if any."""
        if not self.details:
            return None
        try:
            return model.model_validate(self.details[0])
        except ValidationError:
            return None


class SnapshotFailed(WorkflowFailed):
    """The snapshot failed; `result` is what it did (phase Failed, cleanup errors, ...)."""

    @property
    def result(self) -> SnapshotVirtualMachineResult | None:
        return self._result(SnapshotVirtualMachineResult)


class RestoreFailed(WorkflowFailed):
    """The restore failed and was rolled back; `result` is what it did."""

    @property
    def result(self) -> RestoreVirtualMachineResult | None:
        return self._result(RestoreVirtualMachineResult)


class CloneFailed(WorkflowFailed):
    """The clone failed and was rolled back; `result` is what it did."""

    @property
    def result(self) -> CloneVirtualMachineResult | None:
        return self._result(CloneVirtualMachineResult)


class ScheduledRunFailed(WorkflowFailed):
    """A run of a schedule failed (a VM's snapshot failed); `result` says VM by VM."""

    @property
    def result(self) -> ScheduledSnapshotResult | None:
        return self._result(ScheduledSnapshotResult)


def invalid(error: ValidationError) -> InvalidRequest:
    """The first problem of a pydantic error as one line naming the field."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    field = ".".join(str(p) for p in first["loc"])
    return InvalidRequest(f"{field}: {message}" if field else message)


def workflow_failure(error: WorkflowFailureError, kind: type[WorkflowFailed]) -> WorkflowFailed:
    """A failed run as the operation's failure type, keeping the workflow's error type."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return kind(cause.message, cause.type or "ApplicationError", list(cause.details))
    if isinstance(cause, CancelledError):
        return kind("canceled", CANCELED, list(cause.details))
    if isinstance(cause, TerminatedError):
        return kind(f"terminated: {cause.message}", "Terminated")
    if isinstance(cause, TimeoutError):
        return kind("the workflow timed out", "Timeout")
    return kind(str(cause or error), type(cause or error).__name__)


def rpc_error(error: RPCError, what: str) -> VmsnapError:
    """A Temporal RPC error as one line a user can act on."""
    if error.status == RPCStatusCode.NOT_FOUND:
        return ObjectNotFound(f"{what} not found")
    if error.status == RPCStatusCode.ALREADY_EXISTS:
        return AlreadyExists(f"{what} already exists")
    if error.status == RPCStatusCode.UNAVAILABLE:
        return VmsnapError(f"Temporal unavailable: {error.message}")
    if error.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in error.message:
        return VmsnapError(
            f"{error.message}: register vmsnap's search attributes (the worker does it at "
            "start-up, or: temporal operator search-attribute create --name VmName --type "
            "Keyword, and the same for VmNamespace, SnapshotPhase, VmsnapOperation, "
            "VmsnapCluster)")
    if error.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return VmsnapError(f"{what}: no answer in time (is a worker polling the task queue?)")
    return VmsnapError(f"{what}: {error.message}")
