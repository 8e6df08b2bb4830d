"""Restores and clones from Python: start, follow (`progress`), cancel, await.

    async with VmsnapClient.from_environment() as vmsnap:
        restore = await vmsnap.start_restore(
            RestoreVirtualMachineInput(namespace="demo", snapshot="web-1-snap"))
        print((await restore.progress()).step)
        print((await restore.result()).phase)          # RestoreFailed on failure
        clone = await vmsnap.start_clone(CloneVirtualMachineInput(
            namespace="demo", source_snapshot="web-1-snap", target="web-2"))
        print((await clone.result()).target)          # CloneFailed on failure

Kept apart from `starter/sdk.py` so each face stays small; `VmsnapClient`'s
`start_restore` / `start_clone` call in here. The pre-checks (snapshot exists,
target free, filters, patches and MACs valid) run before anything starts, so a
refused request changes nothing; the workflows check the same things again,
later, when there is no kubeconfig.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from cluster.apis import VIRTUAL_MACHINES
from contracts.clone import WORKFLOW as CLONE_WORKFLOW
from contracts.clone import CloneProgress, CloneVirtualMachineInput, CloneVirtualMachineResult
from contracts.restore import WORKFLOW as RESTORE_WORKFLOW
from contracts.restore import (
    RestoreProgress,
    RestoreVirtualMachineInput,
    RestoreVirtualMachineResult,
)
from rules.clone_spec import CloneSpecError, check_mac, parse_patches, validate_filters
from rules.naming import clone_workflow_id, restore_workflow_id
from rules.validation import check_dns_label, check_dns_subdomain
from starter.sdk import (
    AlreadyExists,
    CloneFailed,
    InvalidRequest,
    ObjectNotFound,
    RestoreFailed,
    VmsnapClient,
    invalid,
    rpc_error,
    workflow_failure,
)
from workflows.scheduled import child_search_attributes

QUERY_TIMEOUT = timedelta(seconds=5)

R = TypeVar("R", bound=BaseModel)
P = TypeVar("P", bound=BaseModel)


class _Handle(ABC, Generic[R, P]):
    """A started restore or clone; `result_model` and `_failure` set by the subclass."""

    result_model: type[R]
    progress_model: type[P]
    what: str

    def __init__(self, handle: WorkflowHandle[Any, Any], namespace: str, target: str) -> None:
        self.handle = handle
        self.namespace = namespace
        self.target = target

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    @property
    def run_id(self) -> str | None:
        return self.handle.result_run_id or self.handle.run_id

    @abstractmethod
    def _failure(self, error: WorkflowFailureError) -> Exception:
        """The SDK's exception for a failed run, carrying its typed result."""

    async def result(self) -> R:
        """The result once Succeeded; the failure type (with `.result`) otherwise."""
        try:
            result = await self.handle.result()
        except WorkflowFailureError as error:
            raise self._failure(error) from None
        except RPCError as error:
            raise rpc_error(error, f"{self.what} workflow {self.workflow_id}") from None
        return self.result_model.model_validate(result)

    async def progress(self, timeout: timedelta = QUERY_TIMEOUT) -> P:
        """The `progress` query: the step, the result so far, the pending undos."""
        try:
            answer = await self.handle.query("progress", result_type=self.progress_model,
                                             rpc_timeout=timeout)
        except RPCError as error:
            raise rpc_error(error, f"{self.what} workflow {self.workflow_id}") from None
        return self.progress_model.model_validate(answer)

    async def status(self) -> WorkflowExecutionStatus | None:
        try:
            return (await self.handle.describe()).status
        except RPCError as error:
            raise rpc_error(error, f"{self.what} workflow {self.workflow_id}") from None

    async def cancel(self) -> None:
        """Ask it to stop: the saga undoes what was made and the record ends Failed."""
        try:
            await self.handle.cancel()
        except RPCError as error:
            raise rpc_error(error, f"{self.what} workflow {self.workflow_id}") from None


class RestoreHandle(_Handle[RestoreVirtualMachineResult, RestoreProgress]):
    result_model = RestoreVirtualMachineResult
    progress_model = RestoreProgress
    what = "restore"

    def _failure(self, error: WorkflowFailureError) -> Exception:
        return workflow_failure(error, RestoreFailed)


class CloneHandle(_Handle[CloneVirtualMachineResult, CloneProgress]):
    result_model = CloneVirtualMachineResult
    progress_model = CloneProgress
    what = "clone"

    def _failure(self, error: WorkflowFailureError) -> Exception:
        return workflow_failure(error, CloneFailed)


# ---- input checks (pure: no cluster, no Temporal) -------------------------------------------


def check_restore_input(request: RestoreVirtualMachineInput) -> None:
    """Names a Kubernetes API would refuse are refused here (InvalidRequest)."""
    try:
        check_dns_label(request.namespace, "namespace")
        check_dns_subdomain(request.snapshot, "snapshot")
        if request.target is not None:
            check_dns_subdomain(request.target, "target")
    except ValueError as error:
        raise InvalidRequest(str(error)) from None


def check_clone_input(request: CloneVirtualMachineInput) -> None:
    """Names, filters and patches: what the workflow would refuse as InvalidCloneSpec."""
    try:
        check_dns_label(request.namespace, "namespace")
        check_dns_subdomain(request.target, "target")
        if request.source_vm is not None:
            check_dns_subdomain(request.source_vm, "source VM")
        if request.source_snapshot is not None:
            check_dns_subdomain(request.source_snapshot, "source snapshot")
        validate_filters(request.label_filters, "label")
        validate_filters(request.annotation_filters, "annotation")
        parse_patches(request.patches)
        for interface, mac in request.new_mac_addresses.items():
            check_mac(interface, mac)
    except (ValueError, CloneSpecError) as error:
        raise InvalidRequest(str(error)) from None


# ---- starting ----------------------------------------------------------------------------


async def _snapshot_vm(client: VmsnapClient, namespace: str, snapshot: str) -> str:
    record = await client._record_or_none(namespace, snapshot)
    if record is None:
        raise ObjectNotFound(f"snapshot {namespace}/{snapshot} not found")
    if record.phase != "Succeeded" or not record.ready_to_use:
        raise InvalidRequest(f"snapshot {namespace}/{snapshot} is not ready to use "
                                 f"(phase {record.phase or 'unset'})")
    return str(record.vm)


async def _vm_exists(client: VmsnapClient, namespace: str, name: str) -> bool:
    found = await client._in_cluster(
        lambda c: c.get_custom_or_none(VIRTUAL_MACHINES, namespace, name),
        f"VirtualMachine {namespace}/{name}")
    return found is not None


async def start_restore(
    client: VmsnapClient, request: RestoreVirtualMachineInput, *, check: bool = True
) -> RestoreHandle:
    """Start `RestoreVirtualMachine` (joins a running restore of the same target).

    In place (no target) the workflow ID names the snapshot's VM, read from its
    record, so this needs a kubeconfig; with `target` it does not.
    """
    check_restore_input(request)
    checking = check and client.has_cluster()
    target = request.target
    if target is None or checking:
        vm = await _snapshot_vm(client, request.namespace, request.snapshot)
        target = target or vm
    if checking and request.target is not None and \
            await _vm_exists(client, request.namespace, request.target):
        raise AlreadyExists(f"VirtualMachine {request.namespace}/{request.target} "
                                "already exists; a restore to a new VM needs a free name")
    temporal = await client.temporal()
    try:
        handle = await temporal.start_workflow(
            RESTORE_WORKFLOW, request, id=restore_workflow_id(request.namespace, target),
            task_queue=client.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=child_search_attributes(request.namespace, target, "restore"),
            static_summary=f"restore {request.namespace}/{request.snapshot} -> {target}")
    except RPCError as error:
        raise rpc_error(error, f"restore of {request.namespace}/{target}") from None
    return RestoreHandle(handle, request.namespace, target)


async def start_clone(
    client: VmsnapClient, request: CloneVirtualMachineInput, *, check: bool = True
) -> CloneHandle:
    """Start `CloneVirtualMachine` (joins a running clone to the same target)."""
    check_clone_input(request)
    source_vm = request.source_vm  # VmName: the VM cloned, so the UI's filter on it finds this
    if check and client.has_cluster():
        ns = request.namespace
        if request.source_snapshot is not None:
            source_vm = await _snapshot_vm(client, ns, request.source_snapshot)
        elif request.source_vm is not None and not await _vm_exists(client, ns,
                                                                     request.source_vm):
            raise ObjectNotFound(f"VirtualMachine {ns}/{request.source_vm} not found")
        if await _vm_exists(client, ns, request.target):
            raise AlreadyExists(f"VirtualMachine {ns}/{request.target} already exists; "
                                    "a clone needs a free name")
    source = request.source_vm or request.source_snapshot
    temporal = await client.temporal()
    try:
        handle = await temporal.start_workflow(
            CLONE_WORKFLOW, request, id=clone_workflow_id(request.namespace, request.target),
            task_queue=client.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=child_search_attributes(
                request.namespace, source_vm or request.target, "clone"),
            static_summary=f"clone {request.namespace}/{source} -> {request.target}")
    except RPCError as error:
        raise rpc_error(error, f"clone to {request.namespace}/{request.target}") from None
    return CloneHandle(handle, request.namespace, request.target)


def validated(model: type[R], **fields: Any) -> R:
    """Build a request model; a pydantic error becomes InvalidRequest."""
    try:
        return model(**fields)
    except ValidationError as error:
        raise invalid(error) from None
