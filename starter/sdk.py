"""The vmsnap client SDK: snapshots, deletions, schedules, restores and clones from Python.

    from contracts.snapshot import SnapshotVirtualMachineInput
    from starter.sdk import VmsnapClient

    async with VmsnapClient.from_environment() as vmsnap:
        handle = await vmsnap.start_snapshot(
            SnapshotVirtualMachineInput(namespace="demo", vm="web-1"))
        print((await handle.progress()).step)
        result = await handle.result()          # SnapshotFailed on failure
        for info in await vmsnap.list_snapshots("demo", vm="web-1"):
            print(info.name, info.phase, info.ready_to_use, info.freeze_window_ms)

Two sources, each for what it is the truth of:
- Temporal (connection from `starter.connection`: TEMPORAL_ADDRESS,
  TEMPORAL_NAMESPACE, temporal.toml profiles, TLS, API key, codec) for the
  work: start, follow (`progress` query), cancel, await, schedules, and the
  history of runs (`list_runs`, a visibility query on the search attributes).
- The `vmsnap.io` records in the cluster (through `cluster/`, from KUBECONFIG
  or in-cluster config) for what snapshots exist: `list_snapshots`,
  `get_snapshot`. The record is what restore and clone use, it outlives the
  workflow history (retention), it holds snapshots made by any client and
  Failed records until a user deletes them, and `kubectl get vmsnap` shows
  the same thing. A run's history can be gone while its snapshot is there.

Both connections are opened lazily, so listing snapshots needs no Temporal and
starting one needs no kubeconfig (without one the pre-checks are skipped and
the workflow reports the same errors, later).

This module is the client; the rest of the SDK has a module per job, and every
public name is re-exported here: `starter.sdk_errors` (errors), `starter.sdk_views`
(what the read calls return), `starter.schedule_timing` (cron and intervals),
`starter.sdk_handles` (the handle of a started operation), `starter.sdk_checks`
(request checks). Workflow types, IDs, inputs and results come from `contracts/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleState,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from cluster.apis import VIRTUAL_MACHINES
from cluster.client import Cluster
from cluster.errors import ClusterError, ConfigurationError, NotFound
from cluster.identity import configured_cluster_id
from cluster.record_kinds import VIRTUAL_MACHINE_SNAPSHOTS
from contracts.clone import CloneVirtualMachineInput, CloneVirtualMachineResult
from contracts.common import TASK_QUEUE as DEFAULT_TASK_QUEUE
from contracts.delete_snapshot import (
    DeleteVirtualMachineSnapshotInput,
    DeleteVirtualMachineSnapshotResult,
)
from contracts.restore import RestoreVirtualMachineInput, RestoreVirtualMachineResult
from contracts.schedule import (
    SCHEDULE_LABEL,
    ScheduledSnapshotInput,
    ScheduledSnapshotResult,
    schedule_id,
    schedule_id_prefix,
    scheduled_workflow_id,
)
from contracts.schedule import WORKFLOW as SCHEDULED_WORKFLOW
from contracts.snapshot import Quiesce, SnapshotVirtualMachineInput, SnapshotVirtualMachineResult
from rules import naming
from rules.cluster_identity import InvalidClusterId, check_cluster_id, task_queue_for
from starter.connection import (
    ConnectionSettings,
    TemporalUnreachable,
    connect,
    load_connection_settings,
)
from starter.plan import SnapshotPlan, plan_snapshot
from starter.schedule_timing import ScheduleTiming, check_cron
from starter.sdk_checks import check_clone_input, check_names, check_restore_input, query_name
from starter.sdk_errors import (
    AlreadyExists,
    AlreadyRunning,
    CloneFailed,
    InvalidRequest,
    NoClusterAccess,
    ObjectNotFound,
    RestoreFailed,
    ScheduledRunFailed,
    SnapshotFailed,
    VmsnapError,
    WorkflowFailed,
    invalid,
    rpc_error,
    workflow_failure,
)
from starter.sdk_handles import (
    CLONE,
    DELETE,
    RESTORE,
    SNAPSHOT,
    CloneHandle,
    DeleteHandle,
    Operation,
    OperationHandle,
    RestoreHandle,
    SnapshotHandle,
)
from starter.sdk_views import (
    ExcludedVolumeInfo,
    RunInfo,
    RunState,
    ScheduleInfo,
    ScheduleRun,
    SnapshotInfo,
    VmInfo,
    started_workflow_ids,
)
from workflows.scheduled import child_search_attributes
from workflows.search_attributes import CLUSTER, OPERATION, VM_NAME, VM_NAMESPACE

T = TypeVar("T")
ResultT = TypeVar("ResultT", bound=BaseModel)
ProgressT = TypeVar("ProgressT")

OPERATIONS: dict[str, Operation[Any, Any]] = {
    operation.name: operation for operation in (SNAPSHOT, DELETE, RESTORE, CLONE)}
"""The operations whose runs `run_state` follows, by their `VmsnapOperation` value."""

SCHEDULE_MEMO = "vmsnap-timing"
"""The memo key a schedule keeps its `ScheduleTiming` under, to show it as it was given."""


def _vms_query(vms: Iterable[tuple[str, str]]) -> str:
    """`(VmNamespace = "a" AND VmName IN ("x", "y")) OR ...` for (namespace, name) pairs."""
    by_namespace: dict[str, list[str]] = {}
    for namespace, name in sorted(vms):
        by_namespace.setdefault(namespace, []).append(f'"{query_name("VmName", name)}"')
    groups = [f'(VmNamespace = "{query_name("VmNamespace", namespace)}" AND VmName IN '
              f'({", ".join(names)}))' for namespace, names in by_namespace.items()]
    return f"({' OR '.join(groups)})"


class VmsnapClient:
    """Typed access to vmsnap's workflows, schedules and records.

    `temporal` may be given (a client made with vmsnap's data converter, e.g. by
    `starter.connection.connect`) or is connected on first use from `settings`.
    `address`, `temporal_namespace` and `profile` override the environment.
    `cluster` may be given or is built from `kubeconfig`/`context` (or the
    environment) on first use that needs it.
    """

    def __init__(
        self,
        temporal: Client | None = None,
        *,
        settings: ConnectionSettings | None = None,
        cluster: Cluster | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        task_queue: str | None = None,
        address: str | None = None,
        temporal_namespace: str | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self._temporal = temporal
        self._settings = settings
        self._address = address
        self._temporal_namespace = temporal_namespace
        self._profile = profile
        self._cluster = cluster
        self._owns_cluster = cluster is None
        self._kubeconfig = kubeconfig
        self._context = context
        self._task_queue = task_queue or os.environ.get("VMSNAP_TASK_QUEUE") or None
        try:
            self._cluster_id = (check_cluster_id(cluster_id) if cluster_id
                                else configured_cluster_id())
        except InvalidClusterId as error:
            raise InvalidRequest(str(error)) from None

    @classmethod
    def from_environment(cls, **options: Any) -> VmsnapClient:
        """From TEMPORAL_* (and temporal.toml), KUBECONFIG, VMSNAP_CLUSTER_ID and
        VMSNAP_TASK_QUEUE."""
        return cls(**options)

    async def cluster_id(self) -> str:
        """The cluster the operations run in (`rules.cluster_identity`): configured, or
        derived from the cluster's kube-system namespace on first use."""
        if self._cluster_id is None:
            self._cluster_id = await self._in_cluster(
                lambda c: c.cluster_id, "the kube-system namespace (set VMSNAP_CLUSTER_ID)")
        return self._cluster_id

    @property
    def task_queue(self) -> str:
        """The worker's task queue: configured, else the cluster's own (once connected)."""
        if self._task_queue is not None:
            return self._task_queue
        if self._cluster_id is None:
            raise VmsnapError("the task queue is not known before the cluster id: await "
                              "cluster_id() first")
        return task_queue_for(self._cluster_id)

    async def __aenter__(self) -> VmsnapClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cluster is not None and self._owns_cluster:
            self._cluster.close()
            self._cluster = None

    # ---- connections -------------------------------------------------------------------------

    async def temporal(self) -> Client:
        """The Temporal client, connected on first use (TemporalUnreachable if not)."""
        if self._temporal is None:
            self._temporal = await connect(self.connection_settings())
        return self._temporal

    def connection_settings(self) -> ConnectionSettings:
        """The settings in use (ConnectionConfigError when they are unusable)."""
        if self._settings is None:
            self._settings = load_connection_settings(
                self._profile, address=self._address, namespace=self._temporal_namespace)
        return self._settings

    def cluster(self) -> Cluster:
        """The cluster adapter, built on first use (NoClusterAccess if no configuration)."""
        if self._cluster is None:
            try:
                self._cluster = Cluster.from_environment(self._kubeconfig, self._context)
            except ConfigurationError as error:
                raise NoClusterAccess(f"Kubernetes: {error.message}") from None
        return self._cluster

    def has_cluster(self) -> bool:
        """Whether a Kubernetes configuration is usable (for optional pre-checks)."""
        try:
            self.cluster()
        except NoClusterAccess:
            return False
        return True

    async def _in_cluster(self, call: Callable[[Cluster], T], what: str) -> T:
        cluster = self.cluster()
        try:
            return await asyncio.to_thread(call, cluster)
        except NotFound:
            raise ObjectNotFound(f"{what} not found") from None
        except ClusterError as error:
            raise VmsnapError(f"Kubernetes API: {error.message}") from None

    async def _start(
        self, operation: Operation[ResultT, ProgressT], request: BaseModel, namespace: str,
        name: str, attributes: TypedSearchAttributes, *, summary: str, what: str,
    ) -> OperationHandle[ResultT, ProgressT]:
        """Start the operation's workflow under its deterministic ID; a second start of the
        same ID while it runs joins that run when it asks for the same thing, and is
        refused (AlreadyRunning, naming what runs) when it asks for something else."""
        client = await self.temporal()
        cluster = await self.cluster_id()
        workflow_id = operation.workflow_id(cluster, namespace, name)
        attributes = TypedSearchAttributes(
            [*attributes.search_attributes, SearchAttributePair(CLUSTER, cluster)])
        await self._refuse_another_request(client, workflow_id, request, what)
        try:
            handle = await client.start_workflow(
                operation.workflow, request, id=workflow_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=attributes, static_summary=summary)
        except RPCError as error:
            raise rpc_error(error, what) from None
        return OperationHandle(handle, operation, namespace, name)

    async def _refuse_another_request(self, client: Client, workflow_id: str,
                                      request: BaseModel, what: str) -> None:
        """A running workflow of this ID whose input differs from `request` is refused."""
        handle = client.get_workflow_handle(workflow_id)
        try:
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return
            async for event in handle.fetch_history_events():
                started = event.workflow_execution_started_event_attributes
                [running] = await client.data_converter.decode(
                    list(started.input.payloads), [type(request)])
                break
            else:
                return
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return
            raise rpc_error(error, what) from None
        theirs, ours = running.model_dump(mode="json"), request.model_dump(mode="json")
        if theirs != ours:
            differences = ", ".join(f"{key}={theirs.get(key)!r}" for key in sorted(ours)
                                    if theirs.get(key) != ours[key])
            raise AlreadyRunning(
                f"{what} is already running ({workflow_id}) with another request "
                f"({differences}); wait for it, or cancel it first")

    # ---- snapshots ---------------------------------------------------------------------------

    async def plan_snapshot(
        self, namespace: str, vm: str, quiesce: Quiesce = "auto"
    ) -> SnapshotPlan:
        """What a snapshot of `vm` would do now (a dry run: only reads)."""
        try:
            request = SnapshotVirtualMachineInput(namespace=namespace, vm=vm, quiesce=quiesce)
        except ValidationError as error:
            raise invalid(error) from None
        return await self._in_cluster(
            lambda c: plan_snapshot(c, namespace, vm, request.quiesce),
            f"VirtualMachine {namespace}/{vm}")

    async def start_snapshot(
        self, request: SnapshotVirtualMachineInput, *, check: bool = True
    ) -> SnapshotHandle:
        """Start `SnapshotVirtualMachine` (joins a running one of the same name).

        Without a name the snapshot is `{vm}-{YYYYMMDD-HHMMSS}` (UTC now). With
        `check` and a usable kubeconfig, a VM that does not exist, a VM with no
        eligible disk, and a name taken by a finished snapshot are refused here,
        before anything starts.
        """
        name = request.name or naming.generated_snapshot_name(request.vm, datetime.now(UTC))
        request = request.model_copy(update={"name": name})
        if check and self.has_cluster():
            await self._check_snapshot(request, name)
        return await self._start(
            SNAPSHOT, request, request.namespace, name,
            child_search_attributes(request.namespace, request.vm, SNAPSHOT.name),
            summary=f"snapshot {request.namespace}/{request.vm} -> {name}",
            what=f"snapshot {request.namespace}/{name}")

    async def _check_snapshot(self, request: SnapshotVirtualMachineInput, name: str) -> None:
        plan = await self.plan_snapshot(request.namespace, request.vm, request.quiesce)
        if not plan.possible:
            raise InvalidRequest(f"cannot snapshot VM {request.namespace}/{request.vm}: "
                                 + "; ".join(plan.problems))
        existing = await self._record_or_none(request.namespace, name)
        if existing is not None and existing.phase != "InProgress":
            raise AlreadyExists(f"snapshot {request.namespace}/{name} already exists (phase "
                                f"{existing.phase or 'unset'}); pick another name or delete it")

    async def snapshot(self, request: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        """Start a snapshot and wait for it to be ready to use."""
        return await (await self.start_snapshot(request)).result()

    async def snapshot_handle(self, namespace: str, name: str) -> SnapshotHandle:
        """The handle of an existing snapshot's workflow (by its deterministic ID)."""
        client = await self.temporal()
        handle = client.get_workflow_handle(
            SNAPSHOT.workflow_id(await self.cluster_id(), namespace, name))
        return OperationHandle(handle, SNAPSHOT, namespace, name)

    async def cancel_snapshot(self, namespace: str, name: str) -> None:
        """Cancel a running snapshot: it thaws the guest, undoes its cut, and its record
        ends Failed; a snapshot that is not running is refused (VmsnapError)."""
        handle = await self.snapshot_handle(namespace, name)
        status = await handle.status()
        if status != WorkflowExecutionStatus.RUNNING:
            raise VmsnapError(f"snapshot {namespace}/{name} is not running "
                              f"({status.name.lower() if status else 'unknown'})")
        await handle.cancel()

    async def start_delete(self, namespace: str, name: str, *, check: bool = True) -> DeleteHandle:
        """Start `DeleteVirtualMachineSnapshot` (joins a running deletion of it)."""
        try:
            request = DeleteVirtualMachineSnapshotInput(namespace=namespace, name=name)
        except ValidationError as error:
            raise invalid(error) from None
        vm = None
        if check and self.has_cluster():
            record = await self._record_or_none(namespace, name)
            if record is None:
                raise ObjectNotFound(f"snapshot {namespace}/{name} not found")
            vm = record.vm
        attributes = [SearchAttributePair(VM_NAMESPACE, namespace),
                      SearchAttributePair(OPERATION, DELETE.name)]
        if vm:
            attributes.append(SearchAttributePair(VM_NAME, vm))
        return await self._start(
            DELETE, request, namespace, name, TypedSearchAttributes(attributes),
            summary=f"delete snapshot {namespace}/{name}",
            what=f"deletion of snapshot {namespace}/{name}")

    async def delete_snapshot(
        self, namespace: str, name: str
    ) -> DeleteVirtualMachineSnapshotResult:
        """Delete a snapshot and wait for it (WorkflowFailed when it cannot be deleted)."""
        return await (await self.start_delete(namespace, name)).result()

    async def list_snapshots(
        self, namespace: str | None, vm: str | None = None, schedule: str | None = None,
        selector: str | None = None,
    ) -> list[SnapshotInfo]:
        """The snapshots in `namespace` (None: all), oldest first, from the records;
        `selector` is a label selector on them, as `kubectl get -l` takes it."""
        terms = [selector] if selector else []
        if vm:
            terms.append(f"{naming.VM_LABEL}={naming.label_value(vm)}")
        if schedule:
            terms.append(f"{SCHEDULE_LABEL}={naming.label_value(schedule)}")
        listed = await self._in_cluster(
            lambda c: c.list_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, ",".join(terms)),
            f"namespace {namespace}")
        infos = [SnapshotInfo.from_record(obj) for obj in listed.get("items") or []]
        if vm:
            infos = [i for i in infos if i.vm == vm]
        return sorted(infos, key=lambda i: (i.created or datetime.min.replace(tzinfo=UTC),
                                            i.namespace, i.name))

    async def get_snapshot(
        self, namespace: str, name: str, *, progress: bool = True
    ) -> SnapshotInfo:
        """One snapshot's record, with the workflow's live progress while it is in flight."""
        info = await self._record_or_none(namespace, name)
        if info is None:
            raise ObjectNotFound(f"snapshot {namespace}/{name} not found")
        if progress and info.in_flight:
            with contextlib.suppress(VmsnapError, TemporalUnreachable, OSError):
                handle = await self.snapshot_handle(namespace, name)
                info.progress = await handle.progress(timedelta(seconds=3))
        return info

    async def snapshot_sizes(self, info: SnapshotInfo) -> dict[str, str | None]:
        """Each VolumeSnapshot of a snapshot and its restore size (the CSI driver's
        `restoreSize`; None while unknown or when the VolumeSnapshot is gone)."""
        def read(cluster: Cluster) -> dict[str, str | None]:
            sizes: dict[str, str | None] = {}
            for name in info.volume_snapshots:
                state = cluster.get_volume_snapshot(info.namespace, name)
                sizes[name] = state.restore_size if state is not None else None
            return sizes

        return await self._in_cluster(read, f"snapshot {info.namespace}/{info.name}")

    async def _record_or_none(self, namespace: str, name: str) -> SnapshotInfo | None:
        obj = await self._in_cluster(
            lambda c: c.get_custom_or_none(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name),
            f"snapshot {namespace}/{name}")
        return None if obj is None else SnapshotInfo.from_record(obj)

    # ---- restores and clones -----------------------------------------------------------------

    async def start_restore(
        self, request: RestoreVirtualMachineInput, *, check: bool = True
    ) -> RestoreHandle:
        """Start `RestoreVirtualMachine` (joins a running restore of the same target).

        In place (no target) the workflow ID names the snapshot's VM, read from its
        record, so this needs a kubeconfig; with `target` it does not. With `check` and
        a usable kubeconfig, a snapshot that is missing or not ready and a target VM
        that exists are refused here, before anything starts.
        """
        check_restore_input(request)
        checking = check and self.has_cluster()
        target = request.target
        if target is None or checking:
            vm = await self._ready_snapshot_vm(request.namespace, request.snapshot)
            target = target or vm
        if checking and request.target is not None and \
                await self._vm_exists(request.namespace, request.target):
            raise AlreadyExists(f"VirtualMachine {request.namespace}/{request.target} "
                                "already exists; a restore to a new VM needs a free name")
        return await self._start(
            RESTORE, request, request.namespace, target,
            child_search_attributes(request.namespace, target, RESTORE.name),
            summary=f"restore {request.namespace}/{request.snapshot} -> {target}",
            what=f"restore of {request.namespace}/{target}")

    async def restore(self, request: RestoreVirtualMachineInput) -> RestoreVirtualMachineResult:
        """Start a restore and wait for it (RestoreFailed on failure)."""
        return await (await self.start_restore(request)).result()

    async def start_clone(
        self, request: CloneVirtualMachineInput, *, check: bool = True
    ) -> CloneHandle:
        """Start `CloneVirtualMachine` (joins a running clone to the same target).

        With `check` and a usable kubeconfig, a missing or not-ready source and a
        target VM that exists are refused here, before anything starts.
        """
        check_clone_input(request)
        source_vm = request.source_vm  # VmName: the VM cloned, so the UI's filter on it finds this
        if check and self.has_cluster():
            ns = request.namespace
            if request.source_snapshot is not None:
                source_vm = await self._ready_snapshot_vm(ns, request.source_snapshot)
            elif request.source_vm is not None and not await self._vm_exists(
                    ns, request.source_vm):
                raise ObjectNotFound(f"VirtualMachine {ns}/{request.source_vm} not found")
            if await self._vm_exists(ns, request.target):
                raise AlreadyExists(f"VirtualMachine {ns}/{request.target} already exists; "
                                    "a clone needs a free name")
        source = request.source_vm or request.source_snapshot
        return await self._start(
            CLONE, request, request.namespace, request.target,
            child_search_attributes(request.namespace, source_vm or request.target, CLONE.name),
            summary=f"clone {request.namespace}/{source} -> {request.target}",
            what=f"clone to {request.namespace}/{request.target}")

    async def clone(self, request: CloneVirtualMachineInput) -> CloneVirtualMachineResult:
        """Start a clone and wait for it (CloneFailed on failure)."""
        return await (await self.start_clone(request)).result()

    async def _ready_snapshot_vm(self, namespace: str, snapshot: str) -> str:
        """The VM of a snapshot that restore and clone can use (Succeeded, ready to use)."""
        record = await self._record_or_none(namespace, snapshot)
        if record is None:
            raise ObjectNotFound(f"snapshot {namespace}/{snapshot} not found")
        if record.phase != "Succeeded" or not record.ready_to_use:
            raise InvalidRequest(f"snapshot {namespace}/{snapshot} is not ready to use "
                                 f"(phase {record.phase or 'unset'})")
        return str(record.vm)

    async def _vm_exists(self, namespace: str, name: str) -> bool:
        found = await self._in_cluster(
            lambda c: c.get_custom_or_none(VIRTUAL_MACHINES, namespace, name),
            f"VirtualMachine {namespace}/{name}")
        return found is not None

    async def list_runs(
        self,
        namespace: str | None = None,
        vm: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        selector: str | None = None,
    ) -> list[RunInfo]:
        """vmsnap's workflow runs from Temporal visibility, newest first, filtered on the
        search attributes (the query the Temporal UI takes, e.g. `VmName = "web-1"`);
        `selector` keeps the runs of the VMs that label selector matches now."""
        terms = []
        for attribute, value in (("VmsnapCluster", await self.cluster_id()),
                                 ("VmNamespace", namespace), ("VmName", vm),
                                 ("VmsnapOperation", operation)):
            if value is not None:
                terms.append(f'{attribute} = "{query_name(attribute, value)}"')
        if selector is not None:
            listed = await self._in_cluster(
                lambda c: c.list_custom(VIRTUAL_MACHINES, namespace, selector),
                f"namespace {namespace}" if namespace else "the VMs")
            matched = [((o.get("metadata") or {}).get("namespace") or "",
                        (o.get("metadata") or {}).get("name") or "")
                       for o in listed.get("items") or []]
            if not matched:
                return []
            terms.append(_vms_query(matched))
        query = " AND ".join(terms) or None
        client = await self.temporal()
        try:
            return [RunInfo.from_execution(e)
                    async for e in client.list_workflows(query, limit=limit)]
        except RPCError as error:
            raise rpc_error(error, "workflow list") from None

    async def run_state(self, operation: str, workflow_id: str) -> RunState:
        """Where one run of `operation` (a `VmsnapOperation` value: snapshot, delete,
        restore, clone) is: status, live progress, and its result or failure once it ended.
        `workflow_id` comes from a handle (`handle.workflow_id`) or from `list_runs`."""
        kind = OPERATIONS.get(operation)
        if kind is None:
            raise InvalidRequest(f"operation {operation!r} is not one of "
                                 f"{', '.join(sorted(OPERATIONS))}")
        client = await self.temporal()
        raw = client.get_workflow_handle(workflow_id)
        try:
            description = await raw.describe()
        except RPCError as error:
            raise rpc_error(error, f"{operation} workflow {workflow_id}") from None
        attributes = description.typed_search_attributes
        state = RunState(
            workflow_id=workflow_id, run_id=description.run_id, operation=operation,
            namespace=attributes.get(VM_NAMESPACE), vm=attributes.get(VM_NAME),
            status=description.status.name if description.status else "UNKNOWN",
            start_time=description.start_time, close_time=description.close_time)
        handle: OperationHandle[Any, Any] = OperationHandle(
            raw, kind, state.namespace or "", state.vm or "")
        with contextlib.suppress(VmsnapError):
            state.progress = await handle.progress(timedelta(seconds=3))
        if state.running:
            return state
        try:
            state.result = (await handle.result()).model_dump(mode="json")
        except WorkflowFailed as failure:
            state.error, state.error_type = failure.message, failure.error_type
            if failure.details and isinstance(failure.details[0], dict):
                state.result = failure.details[0]
        return state

    async def list_vms(
        self, namespace: str | None = None, selector: str | None = None
    ) -> list[VmInfo]:
        """The VirtualMachines of `namespace` (None: all), by namespace and name."""
        listed = await self._in_cluster(
            lambda c: c.list_custom(VIRTUAL_MACHINES, namespace, selector or ""),
            f"namespace {namespace}" if namespace else "the VMs")
        infos = [VmInfo.from_object(obj) for obj in listed.get("items") or []]
        return sorted(infos, key=lambda i: (i.namespace, i.name))

    # ---- schedules ---------------------------------------------------------------------------

    async def create_schedule(
        self,
        request: ScheduledSnapshotInput,
        timing: ScheduleTiming,
        *,
        paused: bool = False,
        note: str | None = None,
        check: bool = True,
    ) -> ScheduleInfo:
        """A Temporal Schedule (overlap: skip) running ScheduledVirtualMachineSnapshots.

        With `check` and a usable kubeconfig, a `vm` that does not exist is refused.
        """
        if check and request.vm and self.has_cluster():
            await self._in_cluster(lambda c: c.get_vm(request.namespace, request.vm or ""),
                                   f"VirtualMachine {request.namespace}/{request.vm}")
        attributes = [SearchAttributePair(VM_NAMESPACE, request.namespace),
                      SearchAttributePair(OPERATION, "schedule"),
                      SearchAttributePair(CLUSTER, await self.cluster_id())]
        if request.vm:
            attributes.append(SearchAttributePair(VM_NAME, request.vm))
        action = ScheduleActionStartWorkflow(
            SCHEDULED_WORKFLOW, request,
            id=scheduled_workflow_id(await self.cluster_id(), request.namespace,
                                     request.schedule),
            task_queue=self.task_queue,
            typed_search_attributes=TypedSearchAttributes(attributes),
            static_summary=f"scheduled snapshots of {request.namespace} {request.target}, "
            f"keep {request.keep}")
        schedule = Schedule(
            action=action, spec=timing.spec(),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(paused=paused, note=note or (
                f"created by vmsnap: {request.target}, {timing.describe()}, keep {request.keep}")))
        client = await self.temporal()
        sid = schedule_id(await self.cluster_id(), request.namespace, request.schedule)
        try:
            await client.create_schedule(
                sid, schedule, memo={SCHEDULE_MEMO: timing.model_dump(mode="json")})
        except ScheduleAlreadyRunningError:
            raise AlreadyExists(
                f"schedule {request.namespace}/{request.schedule} already exists") from None
        except RPCError as error:
            raise rpc_error(error, f"schedule {request.namespace}/{request.schedule}") from None
        return await self.get_schedule(request.namespace, request.schedule)

    async def _schedule_id(self, namespace: str, name: str) -> str:
        return schedule_id(await self.cluster_id(), namespace, name)

    async def _describe(self, namespace: str, name: str) -> ScheduleDescription:
        check_names(namespace=namespace, schedule_name=name)
        client = await self.temporal()
        try:
            sid = await self._schedule_id(namespace, name)
            return await client.get_schedule_handle(sid).describe()
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def get_schedule(self, namespace: str, name: str, *, run_status: int = 5) -> ScheduleInfo:
        """The schedule; the status of its last `run_status` runs is looked up too."""
        description = await self._describe(namespace, name)
        info = await self._schedule_info(namespace, name, description)
        client = await self.temporal()
        for run in info.recent_runs[-run_status:] if run_status else []:
            with contextlib.suppress(RPCError):
                described = await client.get_workflow_handle(
                    run.workflow_id, run_id=run.run_id).describe()
                run.status = described.status.name if described.status else None
        return info

    async def _schedule_info(
        self, namespace: str, name: str, description: ScheduleDescription
    ) -> ScheduleInfo:
        client = await self.temporal()
        action = description.schedule.action
        if not isinstance(action, ScheduleActionStartWorkflow) or \
                action.workflow != SCHEDULED_WORKFLOW:
            sid = await self._schedule_id(namespace, name)
            raise VmsnapError(f"schedule {sid} is not a vmsnap schedule")
        [request] = await client.data_converter.decode(list(action.args),
                                                       [ScheduledSnapshotInput])
        request = ScheduledSnapshotInput.model_validate(request)
        timing = None
        with contextlib.suppress(KeyError, ValidationError):
            timing = ScheduleTiming.model_validate(await description.memo_value(SCHEDULE_MEMO))
        return ScheduleInfo.from_description(namespace, name, description, request, timing)

    async def list_schedules(self, namespace: str | None) -> list[ScheduleInfo]:
        """vmsnap's schedules of a Kubernetes namespace (None: all), by name. Listing goes
        through Temporal visibility: a schedule made a moment ago may not show yet."""
        client = await self.temporal()
        prefix = schedule_id_prefix(await self.cluster_id(), namespace)
        found: list[tuple[str, str]] = []
        try:
            async for entry in await client.list_schedules():
                if entry.id.startswith(prefix) and entry.id.count(".") == 3:
                    _, _, ns, name = entry.id.split(".")
                    found.append((ns, name))
        except RPCError as error:
            raise rpc_error(error, "schedule list") from None
        infos = []
        for ns, name in sorted(found):
            with contextlib.suppress(ObjectNotFound):  # deleted since it was listed
                infos.append(await self.get_schedule(ns, name, run_status=1))
        return infos

    async def delete_schedule(self, namespace: str, name: str) -> None:
        """Delete the schedule; its snapshots stay (delete them like any other)."""
        await self._describe(namespace, name)  # ObjectNotFound, and never a foreign schedule
        client = await self.temporal()
        try:
            await client.get_schedule_handle(await self._schedule_id(namespace, name)).delete()
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def pause_schedule(self, namespace: str, name: str, note: str | None = None) -> None:
        """Stop the schedule from starting runs (a running one goes on); `note` says why."""
        await self._describe(namespace, name)
        client = await self.temporal()
        try:
            await client.get_schedule_handle(await self._schedule_id(namespace, name)).pause(
                note=note or "paused with vmsnap")
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def unpause_schedule(self, namespace: str, name: str, note: str | None = None) -> None:
        """Let the schedule start runs again, from its next scheduled time."""
        await self._describe(namespace, name)
        client = await self.temporal()
        try:
            await client.get_schedule_handle(await self._schedule_id(namespace, name)).unpause(
                note=note or "unpaused with vmsnap")
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def trigger_schedule(
        self, namespace: str, name: str, *, timeout: float = 10.0
    ) -> str | None:
        """Run the schedule now (overlap skip, as scheduled runs); the workflow ID of the
        run it started, or None when it was skipped because a run is in progress."""
        before = await self._describe(namespace, name)
        seen = set(started_workflow_ids(before.info.running_actions)) | set(
            started_workflow_ids(a.action for a in before.info.recent_actions))
        busy = bool(before.info.running_actions)
        client = await self.temporal()
        try:
            await client.get_schedule_handle(await self._schedule_id(namespace, name)).trigger(
                overlap=ScheduleOverlapPolicy.SKIP)
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None
        deadline = time.monotonic() + (min(timeout, 3.0) if busy else timeout)
        while time.monotonic() < deadline:
            after = await self._describe(namespace, name)
            started = started_workflow_ids(after.info.running_actions) + started_workflow_ids(
                a.action for a in after.info.recent_actions)
            new = [w for w in started if w not in seen]
            if new:
                return new[0]
            await asyncio.sleep(0.2)
        if busy:
            return None
        raise VmsnapError(f"schedule {namespace}/{name} was triggered but no run started "
                          f"within {timeout:g}s")

    async def scheduled_run_result(self, workflow_id: str) -> ScheduledSnapshotResult:
        """The result of one run of a schedule; ScheduledRunFailed (with `.result`)."""
        client = await self.temporal()
        try:
            result = await client.get_workflow_handle(workflow_id).result()
        except WorkflowFailureError as error:
            raise workflow_failure(error, ScheduledRunFailed) from None
        except RPCError as error:
            raise rpc_error(error, f"scheduled run {workflow_id}") from None
        return ScheduledSnapshotResult.model_validate(result)

    async def select_vms(self, namespace: str, selector: str) -> list[str]:
        """The VMs a label selector matches now (as a schedule's next run would see them)."""
        listed = await self._in_cluster(
            lambda c: c.list_custom(VIRTUAL_MACHINES, namespace, selector),
            f"namespace {namespace}")
        return sorted(str((o.get("metadata") or {}).get("name")) for o in listed.get("items") or [])


__all__ = [
    "DEFAULT_TASK_QUEUE", "AlreadyExists", "AlreadyRunning", "CloneFailed", "CloneHandle",
    "DeleteHandle",
    "ExcludedVolumeInfo", "InvalidRequest", "NoClusterAccess", "ObjectNotFound",
    "OperationHandle", "RestoreFailed", "RestoreHandle", "RunInfo", "RunState",
    "ScheduleInfo",
    "ScheduleRun", "ScheduleTiming", "ScheduledRunFailed", "ScheduledSnapshotInput",
    "ScheduledSnapshotResult", "SnapshotFailed", "SnapshotHandle", "SnapshotInfo",
    "SnapshotPlan", "VmInfo", "VmsnapClient", "VmsnapError", "WorkflowFailed", "check_cron",
    "schedule_id", "scheduled_workflow_id",
]
