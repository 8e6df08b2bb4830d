"""Handles of started snapshots, deletions, restores and clones: follow, cancel, await.

Every operation is one workflow with a deterministic ID, a `progress` query and a
typed result, and attaches that result to its failure; so one handle class serves
them all, told by an `Operation` which types to read and which error to raise:

    handle = await vmsnap.start_restore(RestoreVirtualMachineInput(...))
    print((await handle.progress()).step)
    print((await handle.result()).phase)        # RestoreFailed on failure
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, TypeAdapter
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from contracts import clone, delete_snapshot, restore, snapshot
from contracts.clone import CloneProgress, CloneVirtualMachineResult
from contracts.delete_snapshot import DeleteVirtualMachineSnapshotResult
from contracts.restore import RestoreProgress, RestoreVirtualMachineResult
from contracts.snapshot import SnapshotProgress, SnapshotVirtualMachineResult
from starter.sdk_errors import (
    CloneFailed,
    RestoreFailed,
    SnapshotFailed,
    WorkflowFailed,
    rpc_error,
    workflow_failure,
)

QUERY_TIMEOUT = timedelta(seconds=5)
PROGRESS_QUERY = "progress"

ResultT = TypeVar("ResultT", bound=BaseModel)
ProgressT = TypeVar("ProgressT")


@dataclass(frozen=True)
class Operation(Generic[ResultT, ProgressT]):
    """What the SDK knows of one operation's workflow, all of it from `contracts/`."""

    name: str
    """`snapshot`, `delete`, `restore`, `clone`: the `VmsnapOperation` search attribute's
    value, and the word the SDK's messages use."""
    workflow: str
    workflow_id: Callable[[str, str, str], str]
    """(cluster id, namespace, the object the ID names) -> the workflow ID."""
    result_type: type[ResultT]
    progress_type: type[ProgressT]
    failure: type[WorkflowFailed]
    _progress: TypeAdapter[ProgressT] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_progress", TypeAdapter(self.progress_type))

    def progress_of(self, answer: Any) -> ProgressT:
        """The `progress` query's answer as the operation's progress type."""
        return self._progress.validate_python(answer)


SNAPSHOT: Operation[SnapshotVirtualMachineResult, SnapshotProgress] = Operation(
    "snapshot", snapshot.WORKFLOW, snapshot.snapshot_workflow_id,
    SnapshotVirtualMachineResult, SnapshotProgress, SnapshotFailed)
DELETE: Operation[DeleteVirtualMachineSnapshotResult, str] = Operation(
    "delete", delete_snapshot.WORKFLOW, delete_snapshot.delete_snapshot_workflow_id,
    DeleteVirtualMachineSnapshotResult, str, WorkflowFailed)
RESTORE: Operation[RestoreVirtualMachineResult, RestoreProgress] = Operation(
    "restore", restore.WORKFLOW, restore.restore_workflow_id,
    RestoreVirtualMachineResult, RestoreProgress, RestoreFailed)
CLONE: Operation[CloneVirtualMachineResult, CloneProgress] = Operation(
    "clone", clone.WORKFLOW, clone.clone_workflow_id,
    CloneVirtualMachineResult, CloneProgress, CloneFailed)


class OperationHandle(Generic[ResultT, ProgressT]):
    """A started operation: follow it (`progress`), cancel it, await it (`result`).

    `name` is the object its workflow ID names: the snapshot of a snapshot or a
    deletion, the target VM of a restore or a clone (also `target`).
    """

    def __init__(self, handle: WorkflowHandle[Any, Any],
                 operation: Operation[ResultT, ProgressT], namespace: str, name: str) -> None:
        self.handle = handle
        self.operation = operation
        self.namespace = namespace
        self.name = name

    @property
    def target(self) -> str:
        """The VM a restore or clone writes (the same as `name`)."""
        return self.name

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    @property
    def run_id(self) -> str | None:
        return self.handle.result_run_id or self.handle.run_id

    def _rpc_error(self, error: RPCError) -> Exception:
        return rpc_error(error, f"{self.operation.name} workflow {self.workflow_id}")

    async def result(self) -> ResultT:
        """The result once it succeeded (a snapshot: ready to use); otherwise the
        operation's failure type, whose `.result` says what it did and undid."""
        try:
            result = await self.handle.result()
        except WorkflowFailureError as error:
            raise workflow_failure(error, self.operation.failure) from None
        except RPCError as error:
            raise self._rpc_error(error) from None
        return self.operation.result_type.model_validate(result)

    async def progress(self, timeout: timedelta = QUERY_TIMEOUT) -> ProgressT:
        """The `progress` query: the step and the result so far (a snapshot: per-volume
        state, time used and left); it answers after the run ended too."""
        try:
            answer = await self.handle.query(
                PROGRESS_QUERY, result_type=self.operation.progress_type, rpc_timeout=timeout)
        except RPCError as error:
            raise self._rpc_error(error) from None
        return self.operation.progress_of(answer)

    async def status(self) -> WorkflowExecutionStatus | None:
        try:
            return (await self.handle.describe()).status
        except RPCError as error:
            raise self._rpc_error(error) from None

    async def cancel(self) -> None:
        """Ask it to stop: it undoes what it made (a snapshot thaws the guest first) and
        ends Canceled, which `result()` raises with error type "Canceled"."""
        try:
            await self.handle.cancel()
        except RPCError as error:
            raise self._rpc_error(error) from None


SnapshotHandle: TypeAlias = OperationHandle[SnapshotVirtualMachineResult, SnapshotProgress]
DeleteHandle: TypeAlias = OperationHandle[DeleteVirtualMachineSnapshotResult, str]
RestoreHandle: TypeAlias = OperationHandle[RestoreVirtualMachineResult, RestoreProgress]
CloneHandle: TypeAlias = OperationHandle[CloneVirtualMachineResult, CloneProgress]
