"""The vmsnap client SDK: snapshots, deletions, schedules, restores and clones from Python.

    from starter.sdk import VmsnapClient
    from workflows.models import SnapshotVirtualMachineInput

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

Errors are `VmsnapError` subclasses with one-line messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecution,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    TimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

from cluster.apis import VIRTUAL_MACHINES
from cluster.client import Cluster
from cluster.errors import ClusterError, ConfigurationError, NotFound
from cluster.record_kinds import VIRTUAL_MACHINE_SNAPSHOTS, WORKFLOW_ID_ANNOTATION
from cluster.snapshots import parse_time
from contracts.clone import CloneVirtualMachineInput, CloneVirtualMachineResult
from contracts.common import TASK_QUEUE as DEFAULT_TASK_QUEUE
from contracts.delete_snapshot import WORKFLOW as DELETE_WORKFLOW
from contracts.delete_snapshot import (
    DeleteVirtualMachineSnapshotInput,
    DeleteVirtualMachineSnapshotResult,
)
from contracts.restore import RestoreVirtualMachineInput, RestoreVirtualMachineResult
from contracts.schedule import (
    SCHEDULE_ID_PREFIX,
    SCHEDULE_LABEL,
    ScheduledSnapshotInput,
    ScheduledSnapshotResult,
    schedule_id,
    scheduled_workflow_id,
)
from contracts.schedule import WORKFLOW as SCHEDULED_WORKFLOW
from contracts.snapshot import WORKFLOW as SNAPSHOT_WORKFLOW
from contracts.snapshot import (
    Duration,
    Quiesce,
    SnapshotProgress,
    SnapshotVirtualMachineInput,
    SnapshotVirtualMachineResult,
)
from rules import naming
from rules.durations import format_go_duration
from rules.validation import check_dns_label
from starter.connection import (
    ConnectionSettings,
    TemporalUnreachable,
    connect,
    load_connection_settings,
)
from starter.plan import SnapshotPlan, plan_snapshot
from workflows.scheduled import child_search_attributes
from workflows.search_attributes import OPERATION, SNAPSHOT_PHASE, VM_NAME, VM_NAMESPACE

if TYPE_CHECKING:
    from starter.sdk_restore_clone import CloneHandle, RestoreHandle

T = TypeVar("T")

SCHEDULE_MEMO = "vmsnap-timing"
QUERY_TIMEOUT = timedelta(seconds=5)


# ---- errors -------------------------------------------------------------------------------


class VmsnapError(Exception):
    """Anything the SDK reports to a user; the message is one line."""


class InvalidRequest(VmsnapError, ValueError):
    """The request cannot be valid; nothing was started or changed."""


class ObjectNotFound(VmsnapError):
    """A VM, snapshot, schedule or workflow that does not exist."""


class AlreadyExists(VmsnapError):
    """A snapshot or schedule of that name exists already."""


class NoClusterAccess(VmsnapError):
    """The operation reads the cluster and no Kubernetes configuration is usable."""


class WorkflowFailed(VmsnapError):
    """A workflow failed; `error_type` is the stable type (VmNotFound, NoEligibleVolume, ...)."""

    def __init__(self, message: str, error_type: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.details = details or []


class SnapshotFailed(WorkflowFailed):
    """The snapshot failed; `result` is what it did (phase Failed, cleanup errors, ...)."""

    @property
    def result(self) -> SnapshotVirtualMachineResult | None:
        return _first_detail(self.details, SnapshotVirtualMachineResult)


class RestoreFailed(WorkflowFailed):
    """The restore failed and was rolled back; `result` is what it did."""

    @property
    def result(self) -> RestoreVirtualMachineResult | None:
        return _first_detail(self.details, RestoreVirtualMachineResult)


class CloneFailed(WorkflowFailed):
    """The clone failed and was rolled back; `result` is what it did."""

    @property
    def result(self) -> CloneVirtualMachineResult | None:
        return _first_detail(self.details, CloneVirtualMachineResult)


class ScheduledRunFailed(WorkflowFailed):
    @property
    def result(self) -> ScheduledSnapshotResult | None:
        return _first_detail(self.details, ScheduledSnapshotResult)


def _first_detail(details: list[Any], model: type[BaseModel]) -> Any:
    if not details:
        return None
    try:
        return model.model_validate(details[0])
    except ValidationError:
        return None


def invalid(error: ValidationError) -> InvalidRequest:
    """The first problem of a pydantic error as one line naming the field."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    field = ".".join(str(p) for p in first["loc"])
    return InvalidRequest(f"{field}: {message}" if field else message)


def workflow_failure(error: WorkflowFailureError, kind: type[WorkflowFailed]) -> WorkflowFailed:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return kind(cause.message, cause.type or "ApplicationError", list(cause.details))
    if isinstance(cause, CancelledError):
        return kind("canceled", "Canceled", list(cause.details))
    if isinstance(cause, TerminatedError):
        return kind(f"terminated: {cause.message}", "Terminated")
    if isinstance(cause, TimeoutError):
        return kind("the workflow timed out", "Timeout")
    return kind(str(cause or error), type(cause or error).__name__)


# ---- what the SDK returns -------------------------------------------------------------------


class ExcludedVolumeInfo(BaseModel):
    volume_name: str
    reason: str


class SnapshotInfo(BaseModel):
    """A snapshot as its `vmsnap.io` record says (what `kubectl get vmsnap` shows)."""

    namespace: str
    name: str
    vm: str
    phase: str | None
    ready_to_use: bool
    indications: list[str] = Field(default_factory=list)
    included_volumes: list[str] = Field(default_factory=list)
    excluded_volumes: list[ExcludedVolumeInfo] = Field(default_factory=list)
    volume_snapshots: list[str] = Field(default_factory=list)
    freeze_window_ms: int | None = None
    created: datetime | None = Field(default=None, description="when the record was made")
    creation_time: datetime | None = Field(default=None, description="when the cut was taken")
    deletion_policy: str | None = None
    failure_deadline: str | None = None
    quiesce: str | None = None
    error: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    schedule: str | None = Field(default=None, description="the schedule that owns it")
    workflow_id: str | None = None
    deleting: bool = False
    progress: SnapshotProgress | None = Field(
        default=None, description="live progress, for a snapshot still being taken")

    @classmethod
    def from_record(cls, obj: Mapping[str, Any]) -> SnapshotInfo:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        labels = dict(metadata.get("labels") or {})
        volumes = status.get("snapshotVolumes") or {}
        return cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            vm=str((spec.get("source") or {}).get("name") or ""),
            phase="Deleting" if metadata.get("deletionTimestamp") and not status.get("phase")
            else status.get("phase"),
            ready_to_use=bool(status.get("readyToUse")),
            indications=list(status.get("indications") or []),
            included_volumes=list(volumes.get("includedVolumes") or []),
            excluded_volumes=[
                ExcludedVolumeInfo(volume_name=str(r.get("volumeName") or ""),
                                   reason=str(r.get("reason") or ""))
                for r in status.get("excludedVolumeReasons") or []],
            volume_snapshots=list(status.get("volumeSnapshots") or []),
            freeze_window_ms=status.get("freezeWindowMilliseconds"),
            created=parse_time(metadata.get("creationTimestamp")),
            creation_time=parse_time(status.get("creationTime")),
            deletion_policy=spec.get("deletionPolicy"),
            failure_deadline=spec.get("failureDeadline"),
            quiesce=spec.get("quiesce"),
            error=(status.get("error") or {}).get("message") or None,
            labels=labels,
            schedule=labels.get(SCHEDULE_LABEL),
            workflow_id=(metadata.get("annotations") or {}).get(WORKFLOW_ID_ANNOTATION),
            deleting=bool(metadata.get("deletionTimestamp")),
        )

    @property
    def in_flight(self) -> bool:
        """Its workflow still works on it: the cut, or the wait for readiness."""
        return self.phase == "InProgress" or (
            self.phase == "Succeeded" and not self.ready_to_use and not self.error)


class RunInfo(BaseModel):
    """One workflow run, as Temporal visibility lists it."""

    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    start_time: datetime
    close_time: datetime | None = None
    vm: str | None = None
    vm_namespace: str | None = None
    operation: str | None = None
    snapshot_phase: str | None = None

    @classmethod
    def from_execution(cls, execution: WorkflowExecution) -> RunInfo:
        attributes = execution.typed_search_attributes
        return cls(
            workflow_id=execution.id, run_id=execution.run_id,
            workflow_type=execution.workflow_type,
            status=execution.status.name if execution.status else "UNKNOWN",
            start_time=execution.start_time, close_time=execution.close_time,
            vm=attributes.get(VM_NAME), vm_namespace=attributes.get(VM_NAMESPACE),
            operation=attributes.get(OPERATION), snapshot_phase=attributes.get(SNAPSHOT_PHASE),
        )


class ScheduleTiming(BaseModel):
    """When a schedule fires: a cron expression or a fixed interval, plus jitter."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    every: Duration | None = None
    jitter: Duration = 0.0
    time_zone: str | None = Field(default=None, description="for cron; default UTC")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("every")
    @classmethod
    def _every(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError(f"the interval must be at least 1s, not {format_go_duration(value)}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _one_spec(self) -> ScheduleTiming:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of a cron expression and an interval (every)")
        if self.every is not None and self.jitter >= self.every:
            raise ValueError("the jitter must be shorter than the interval")
        return self

    def describe(self) -> str:
        every = format_go_duration(self.every or 0)
        when = f"cron {self.cron!r}" if self.cron else f"every {every}"
        if self.cron and self.time_zone:
            when += f" {self.time_zone}"
        if self.jitter:
            when += f", jitter {format_go_duration(self.jitter)}"
        return when


class ScheduleRun(BaseModel):
    workflow_id: str
    run_id: str
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    status: str | None = None


class ScheduleInfo(BaseModel):
    """A vmsnap schedule: what it snapshots, when, what it keeps, and how it ran."""

    name: str
    namespace: str
    schedule_id: str
    vm: str | None
    selector: str | None
    keep: int
    labels: dict[str, str] = Field(
        default_factory=dict, description="the labels its snapshots carry (`-l` matches them)")
    timing: ScheduleTiming | None
    quiesce: str
    failure_deadline: str
    paused: bool
    note: str | None
    running: list[str] = Field(default_factory=list)
    recent_runs: list[ScheduleRun] = Field(default_factory=list, description="newest last")
    next_runs: list[datetime] = Field(default_factory=list)
    actions: int = 0
    skipped_overlap: int = 0


# ---- names -----------------------------------------------------------------------------------

_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                 "@hourly"}
_CRON_FIELDS = [("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, {m: i + 1 for i, m in enumerate(
                    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                     "nov", "dec"])}),
                ("day of week", 0, 7, {d: i for i, d in enumerate(
                    ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])})]


def check_cron(expression: str) -> str:
    """A standard 5-field cron expression (or @daily, @hourly, ...); ValueError naming the
    bad field. Temporal reads the same syntax; checked here so the user hears it first."""
    text = " ".join(expression.split())
    if text.lower() in _CRON_ALIASES:
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"cron expression {expression!r} must have 5 fields "
                         "(minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\"")
    for value, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in value.split(","):
            _check_cron_part(part, what, low, high, names, expression)
    return text


def _check_cron_part(part: str, what: str, low: int, high: int, names: dict[str, int],
                     expression: str) -> None:
    def bad(why: str) -> ValueError:
        return ValueError(f"cron expression {expression!r}: {what} {part!r} {why}")

    def number(token: str) -> int:
        if token.lower() in names:
            return names[token.lower()]
        if not token.isdigit():
            raise bad(f"is not a number{' or a name' if names else ''}")
        value = int(token)
        if not low <= value <= high:
            raise bad(f"is out of range {low}-{high}")
        return value

    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise bad("has an invalid step")
    if base in ("*", "?"):
        return
    start, dash, end = base.partition("-")
    if not start:
        raise bad("is empty")
    first = number(start)
    if dash and number(end) < first:
        raise bad("is a backwards range")




def _check_names(**names: str) -> None:
    try:
        for what, value in names.items():
            check_dns_label(value, what.replace("_", " "))
    except ValueError as error:
        raise InvalidRequest(str(error)) from None


# ---- handles ---------------------------------------------------------------------------------


class SnapshotHandle:
    """A started snapshot: follow it, cancel it, await it."""

    def __init__(self, handle: WorkflowHandle[Any, Any], namespace: str, name: str) -> None:
        self.handle = handle
        self.namespace = namespace
        self.name = name

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    @property
    def run_id(self) -> str | None:
        return self.handle.result_run_id or self.handle.run_id

    async def result(self) -> SnapshotVirtualMachineResult:
        """The result once ready to use; SnapshotFailed (with `.result`) otherwise."""
        try:
            result = await self.handle.result()
        except WorkflowFailureError as error:
            raise workflow_failure(error, SnapshotFailed) from None
        except RPCError as error:
            raise rpc_error(error, f"snapshot workflow {self.workflow_id}") from None
        return SnapshotVirtualMachineResult.model_validate(result)

    async def progress(self, timeout: timedelta = QUERY_TIMEOUT) -> SnapshotProgress:
        """The `progress` query: step, per-volume state, time used and left."""
        try:
            answer = await self.handle.query("progress", result_type=SnapshotProgress,
                                             rpc_timeout=timeout)
        except RPCError as error:
            raise rpc_error(error, f"snapshot workflow {self.workflow_id}") from None
        return SnapshotProgress.model_validate(answer)

    async def status(self) -> WorkflowExecutionStatus | None:
        try:
            return (await self.handle.describe()).status
        except RPCError as error:
            raise rpc_error(error, f"snapshot workflow {self.workflow_id}") from None

    async def cancel(self) -> None:
        """Ask the snapshot to stop: it compensates (thaw, clean up) and ends Failed."""
        try:
            await self.handle.cancel()
        except RPCError as error:
            raise rpc_error(error, f"snapshot workflow {self.workflow_id}") from None


class DeleteHandle:
    def __init__(self, handle: WorkflowHandle[Any, Any], namespace: str, name: str) -> None:
        self.handle = handle
        self.namespace = namespace
        self.name = name

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    async def result(self) -> DeleteVirtualMachineSnapshotResult:
        try:
            result = await self.handle.result()
        except WorkflowFailureError as error:
            raise workflow_failure(error, WorkflowFailed) from None
        except RPCError as error:
            raise rpc_error(error, f"delete workflow {self.workflow_id}") from None
        return DeleteVirtualMachineSnapshotResult.model_validate(result)


def _workflow_ids(actions: Iterable[ScheduleActionExecution]) -> list[str]:
    return [a.workflow_id for a in actions if isinstance(a, ScheduleActionExecutionStartWorkflow)]


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
            "Keyword, and the same for VmNamespace, SnapshotPhase, VmsnapOperation)")
    if error.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return VmsnapError(f"{what}: no answer in time (is a worker polling the task queue?)")
    return VmsnapError(f"{what}: {error.message}")


# ---- the client ------------------------------------------------------------------------------


def _query_name(attribute: str, value: str) -> str:
    """A name safe to quote in a visibility query (names are DNS labels and subdomains)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        raise InvalidRequest(f"{attribute} {value!r} is not a valid name")
    return value


def _vms_query(vms: Iterable[tuple[str, str]]) -> str:
    """`(VmNamespace = "a" AND VmName IN ("x", "y")) OR ...` for (namespace, name) pairs."""
    by_namespace: dict[str, list[str]] = {}
    for namespace, name in sorted(vms):
        by_namespace.setdefault(namespace, []).append(
            f'"{_query_name("VmName", name)}"')
    groups = [f'(VmNamespace = "{_query_name("VmNamespace", namespace)}" AND VmName IN '
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
        self.task_queue = task_queue or os.environ.get("VMSNAP_TASK_QUEUE") or DEFAULT_TASK_QUEUE

    @classmethod
    def from_environment(cls, **options: Any) -> VmsnapClient:
        """From TEMPORAL_* (and temporal.toml), KUBECONFIG and VMSNAP_TASK_QUEUE."""
        return cls(**options)

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
        client = await self.temporal()
        try:
            handle = await client.start_workflow(
                SNAPSHOT_WORKFLOW, request, id=naming.snapshot_workflow_id(request.namespace, name),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=child_search_attributes(request.namespace, request.vm,
                                                          "snapshot"),
                static_summary=f"snapshot {request.namespace}/{request.vm} -> {name}")
        except RPCError as error:
            raise rpc_error(error, f"snapshot {request.namespace}/{name}") from None
        return SnapshotHandle(handle, request.namespace, name)

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
        handle = client.get_workflow_handle(naming.snapshot_workflow_id(namespace, name))
        return SnapshotHandle(handle, namespace, name)

    async def cancel_snapshot(self, namespace: str, name: str) -> None:
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
        client = await self.temporal()
        attributes = [SearchAttributePair(VM_NAMESPACE, namespace),
                      SearchAttributePair(OPERATION, "delete")]
        if vm:
            attributes.append(SearchAttributePair(VM_NAME, vm))
        try:
            handle = await client.start_workflow(
                DELETE_WORKFLOW, request, id=naming.delete_snapshot_workflow_id(namespace, name),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=TypedSearchAttributes(attributes),
                static_summary=f"delete snapshot {namespace}/{name}")
        except RPCError as error:
            raise rpc_error(error, f"deletion of snapshot {namespace}/{name}") from None
        return DeleteHandle(handle, namespace, name)

    async def delete_snapshot(
        self, namespace: str, name: str
    ) -> DeleteVirtualMachineSnapshotResult:
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

    async def _record_or_none(self, namespace: str, name: str) -> SnapshotInfo | None:
        obj = await self._in_cluster(
            lambda c: c.get_custom_or_none(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name),
            f"snapshot {namespace}/{name}")
        return None if obj is None else SnapshotInfo.from_record(obj)

    # ---- restores and clones (starter/sdk_restore_clone.py) ----------------------------------

    async def start_restore(
        self, request: RestoreVirtualMachineInput, *, check: bool = True
    ) -> RestoreHandle:
        """Start `RestoreVirtualMachine`; see `starter.sdk_restore_clone.start_restore`."""
        from starter.sdk_restore_clone import start_restore

        return await start_restore(self, request, check=check)

    async def restore(self, request: RestoreVirtualMachineInput) -> RestoreVirtualMachineResult:
        """Start a restore and wait for it (RestoreFailed on failure)."""
        return await (await self.start_restore(request)).result()

    async def start_clone(
        self, request: CloneVirtualMachineInput, *, check: bool = True
    ) -> CloneHandle:
        """Start `CloneVirtualMachine`; see `starter.sdk_restore_clone.start_clone`."""
        from starter.sdk_restore_clone import start_clone

        return await start_clone(self, request, check=check)

    async def clone(self, request: CloneVirtualMachineInput) -> CloneVirtualMachineResult:
        """Start a clone and wait for it (CloneFailed on failure)."""
        return await (await self.start_clone(request)).result()

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
        for attribute, value in (("VmNamespace", namespace), ("VmName", vm),
                                 ("VmsnapOperation", operation)):
            if value is not None:
                terms.append(f'{attribute} = "{_query_name(attribute, value)}"')
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
        spec = ScheduleSpec(
            cron_expressions=[timing.cron] if timing.cron else [],
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=timing.every))]
            if timing.every else [],
            jitter=timedelta(seconds=timing.jitter) if timing.jitter else None,
            time_zone_name=timing.time_zone)
        attributes = [SearchAttributePair(VM_NAMESPACE, request.namespace),
                      SearchAttributePair(OPERATION, "schedule")]
        if request.vm:
            attributes.append(SearchAttributePair(VM_NAME, request.vm))
        action = ScheduleActionStartWorkflow(
            SCHEDULED_WORKFLOW, request,
            id=scheduled_workflow_id(request.namespace, request.schedule),
            task_queue=self.task_queue,
            typed_search_attributes=TypedSearchAttributes(attributes),
            static_summary=f"scheduled snapshots of {request.namespace} {request.target}, "
            f"keep {request.keep}")
        schedule = Schedule(
            action=action, spec=spec,
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(paused=paused, note=note or (
                f"created by vmsnap: {request.target}, {timing.describe()}, keep {request.keep}")))
        client = await self.temporal()
        sid = schedule_id(request.namespace, request.schedule)
        try:
            await client.create_schedule(
                sid, schedule, memo={SCHEDULE_MEMO: timing.model_dump(mode="json")})
        except ScheduleAlreadyRunningError:
            raise AlreadyExists(
                f"schedule {request.namespace}/{request.schedule} already exists") from None
        except RPCError as error:
            raise rpc_error(error, f"schedule {request.namespace}/{request.schedule}") from None
        return await self.get_schedule(request.namespace, request.schedule)

    async def _describe(self, namespace: str, name: str) -> ScheduleDescription:
        _check_names(namespace=namespace, schedule_name=name)
        client = await self.temporal()
        try:
            return await client.get_schedule_handle(schedule_id(namespace, name)).describe()
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
            raise VmsnapError(f"schedule {schedule_id(namespace, name)} is not a vmsnap schedule")
        [request] = await client.data_converter.decode(list(action.args),
                                                       [ScheduledSnapshotInput])
        request = ScheduledSnapshotInput.model_validate(request)
        timing = None
        with contextlib.suppress(KeyError, ValidationError):
            timing = ScheduleTiming.model_validate(await description.memo_value(SCHEDULE_MEMO))
        state, sinfo = description.schedule.state, description.info
        return ScheduleInfo(
            name=name, namespace=namespace, schedule_id=description.id, vm=request.vm,
            selector=request.selector, keep=request.keep, timing=timing,
            labels={**request.labels, SCHEDULE_LABEL: naming.label_value(name)},
            quiesce=request.quiesce, failure_deadline=format_go_duration(request.failure_deadline),
            paused=state.paused, note=state.note,
            running=_workflow_ids(sinfo.running_actions),
            recent_runs=[ScheduleRun(workflow_id=a.action.workflow_id,
                                     run_id=a.action.first_execution_run_id,
                                     scheduled_at=a.scheduled_at, started_at=a.started_at)
                         for a in sinfo.recent_actions
                         if isinstance(a.action, ScheduleActionExecutionStartWorkflow)],
            next_runs=list(sinfo.next_action_times),
            actions=sinfo.num_actions, skipped_overlap=sinfo.num_actions_skipped_overlap,
        )

    async def list_schedules(self, namespace: str | None) -> list[ScheduleInfo]:
        """vmsnap's schedules of a Kubernetes namespace (None: all), by name. Listing goes
        through Temporal visibility: a schedule made a moment ago may not show yet."""
        client = await self.temporal()
        prefix = f"{SCHEDULE_ID_PREFIX}.{namespace}." if namespace else f"{SCHEDULE_ID_PREFIX}."
        found: list[tuple[str, str]] = []
        try:
            async for entry in await client.list_schedules():
                if entry.id.startswith(prefix) and entry.id.count(".") == 2:
                    _, ns, name = entry.id.split(".")
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
            await client.get_schedule_handle(schedule_id(namespace, name)).delete()
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def pause_schedule(self, namespace: str, name: str, note: str | None = None) -> None:
        await self._describe(namespace, name)
        client = await self.temporal()
        try:
            await client.get_schedule_handle(schedule_id(namespace, name)).pause(
                note=note or "paused with vmsnap")
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def unpause_schedule(self, namespace: str, name: str, note: str | None = None) -> None:
        await self._describe(namespace, name)
        client = await self.temporal()
        try:
            await client.get_schedule_handle(schedule_id(namespace, name)).unpause(
                note=note or "unpaused with vmsnap")
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None

    async def trigger_schedule(
        self, namespace: str, name: str, *, timeout: float = 10.0
    ) -> str | None:
        """Run the schedule now (overlap skip, as scheduled runs); the workflow ID of the
        run it started, or None when it was skipped because a run is in progress."""
        before = await self._describe(namespace, name)
        seen = set(_workflow_ids(before.info.running_actions)) | set(
            _workflow_ids(a.action for a in before.info.recent_actions))
        busy = bool(before.info.running_actions)
        client = await self.temporal()
        try:
            await client.get_schedule_handle(schedule_id(namespace, name)).trigger(
                overlap=ScheduleOverlapPolicy.SKIP)
        except RPCError as error:
            raise rpc_error(error, f"schedule {namespace}/{name}") from None
        deadline = time.monotonic() + (min(timeout, 3.0) if busy else timeout)
        while time.monotonic() < deadline:
            after = await self._describe(namespace, name)
            started = _workflow_ids(after.info.running_actions) + _workflow_ids(
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
    "DEFAULT_TASK_QUEUE", "AlreadyExists", "DeleteHandle", "InvalidRequest", "NoClusterAccess",
    "ObjectNotFound", "RunInfo", "ScheduleInfo", "ScheduleRun", "ScheduleTiming",
    "ScheduledRunFailed", "ScheduledSnapshotInput", "ScheduledSnapshotResult",
    "SnapshotFailed", "SnapshotHandle", "SnapshotInfo", "SnapshotPlan", "VmsnapClient",
    "VmsnapError", "WorkflowFailed", "check_cron", "schedule_id", "scheduled_workflow_id",
]
