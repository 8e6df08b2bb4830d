"""The per-VM operation lock: one snapshot, restore or clone-from-VM at a time per VM.

The lock is an annotation on the VirtualMachine (`vmsnap.io/lock`, a JSON
document naming the holder: cluster id, Temporal namespace, workflow ID, run ID,
operation, since, and the end of its lease). It is written with the VM's
resourceVersion as a precondition, so two workers racing for it cannot both win:
the loser re-reads and sees the winner.

Policy: a second operation is refused (`VmLocked`, naming the holder); the caller
decides whether to wait and try again. A lock is never left behind, and never
stolen (`holder_is_alive`):
- a holder whose lease has ended has lost its claim, whoever it is: a worker that
  died, or a run that stopped renewing (its workers are gone or it is stuck);
- a holder of this deployment (same cluster, same Temporal namespace) whose run has
  closed is taken over at once (the caller asks Temporal);
- a holder of another deployment (another Temporal namespace, another cluster's
  workers) cannot be asked: it is alive until its lease ends.
A lock written before leases existed names no cluster: it counts as this
deployment's, as it always did. Release removes the annotation only if it still names
the releasing holder; renewal moves the lease's end only if it still does.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from cluster.apis import VIRTUAL_MACHINES, KubeApis
from cluster.errors import ClusterError, Conflict, Invalid, NotFound

LOCK_ANNOTATION = "vmsnap.io/lock"
_ATTEMPTS = 5
_LOCK_POINTER = "/metadata/annotations/" + LOCK_ANNOTATION.replace("~", "~0").replace("/", "~1")


class LockHolder(BaseModel):
    """Who holds (or wants) a lock: one run of one workflow, doing one operation, in one
    deployment (cluster id and Temporal namespace), until its lease ends."""

    workflow_id: str
    run_id: str
    operation: str
    since: datetime
    cluster: str = ""
    temporal_namespace: str = ""
    expires: datetime | None = None

    def same_run(self, other: LockHolder) -> bool:
        return self.workflow_id == other.workflow_id and self.run_id == other.run_id

    def same_deployment(self, other: LockHolder) -> bool:
        """Whether `other` runs where this holder can ask Temporal about it. A lock from
        before leases names no deployment: it is taken as this one's."""
        if not other.cluster and not other.temporal_namespace:
            return True
        return (self.cluster, self.temporal_namespace) == (other.cluster,
                                                           other.temporal_namespace)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def renewed(self, lease_seconds: float, now: datetime) -> LockHolder:
        """The same holder with its lease ending `lease_seconds` from `now`."""
        return self.model_copy(update={
            "expires": (now + timedelta(seconds=lease_seconds)).replace(microsecond=0)})

    def describe(self) -> str:
        where = (f" of cluster {self.cluster} (Temporal namespace {self.temporal_namespace})"
                 if self.cluster else "")
        lease = f", lease until {self.expires.isoformat()}" if self.expires else ""
        return (f"{self.operation} workflow {self.workflow_id} (run {self.run_id}){where}, "
                f"since {self.since.isoformat()}{lease}")

    def to_annotation(self) -> str:
        document: dict[str, str] = {
            "workflowId": self.workflow_id, "runId": self.run_id,
            "operation": self.operation, "since": self.since.isoformat()}
        if self.cluster:
            document["cluster"] = self.cluster
        if self.temporal_namespace:
            document["temporalNamespace"] = self.temporal_namespace
        if self.expires is not None:
            document["expires"] = self.expires.isoformat()
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str) -> LockHolder:
        """ValueError when the annotation is not one this module wrote."""
        try:
            raw = json.loads(text)
            return cls(workflow_id=raw["workflowId"], run_id=raw["runId"],
                       operation=raw["operation"], since=raw["since"],
                       cluster=raw.get("cluster", ""),
                       temporal_namespace=raw.get("temporalNamespace", ""),
                       expires=raw.get("expires"))
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            raise ValueError(f"malformed {LOCK_ANNOTATION} annotation {text!r}") from exc


def holder_is_alive(current: LockHolder, me: LockHolder, now: datetime,
                    run_is_open: Callable[[LockHolder], bool]) -> bool:
    """Whether `current` still holds its claim against `me` (see the module docstring):
    its lease first, then, for a holder of this deployment, its run (`run_is_open`)."""
    if current.expired(now):
        return False
    if not me.same_deployment(current):
        return True
    return run_is_open(current)


class VmLocked(ClusterError):
    """Another live operation holds the VM's lock; `holder` says which (None: unreadable)."""

    def __init__(self, message: str, holder: LockHolder | None = None) -> None:
        super().__init__(message, status=409, reason="Locked")
        self.holder = holder

    def __reduce__(self) -> tuple[Any, ...]:
        return (VmLocked, (self.message, self.holder))

    @classmethod
    def naming(cls, namespace: str, vm: str, holder: LockHolder | None, who: str = "") -> VmLocked:
        who = holder.describe() if holder is not None else who
        return cls(f"VirtualMachine {namespace}/{vm} is locked by {who}; one snapshot, "
                   "restore or clone runs at a time per VM", holder)


def now_holder(workflow_id: str, run_id: str, operation: str) -> LockHolder:
    return LockHolder(workflow_id=workflow_id, run_id=run_id, operation=operation,
                      since=datetime.now(UTC).replace(microsecond=0))


def renew_vm_lock(apis: KubeApis, namespace: str, vm: str, held: str | None,
                  holder: LockHolder) -> str:
    """Write `holder` (the same run, a later lease end) in place of its lock, against
    what was read (`held`, the annotation written, makes it one request): LockLost when
    the lock is no longer this run's (its lease ended and another operation took the
    VM, or someone removed the lock). The annotation now held."""
    renewed = holder.to_annotation()
    if held is not None:
        patch = [{"op": "test", "path": _LOCK_POINTER, "value": held},
                 {"op": "replace", "path": _LOCK_POINTER, "value": renewed}]
        try:
            apis.patch_custom(VIRTUAL_MACHINES, namespace, vm, patch, "json")
            return renewed
        except (Invalid, Conflict):
            pass  # read and decide below
    for _ in range(_ATTEMPTS):
        obj = apis.get_custom(VIRTUAL_MACHINES, namespace, vm)
        text = _annotations(obj).get(LOCK_ANNOTATION)
        try:
            current = None if text is None else LockHolder.from_annotation(text)
        except ValueError:
            current = None
        if current is None or not current.same_run(holder):
            who = current.describe() if current is not None else "nobody"
            raise LockLost(f"VirtualMachine {namespace}/{vm} is no longer locked by "
                           f"{holder.operation} workflow {holder.workflow_id}: it is "
                           f"locked by {who}")
        try:
            _write_annotation(apis, namespace, vm, obj, renewed)
        except Conflict:
            continue
        return renewed
    raise Conflict(f"VirtualMachine {namespace}/{vm} kept changing while renewing its lock",
                   status=409, reason="Conflict")


class LockLost(ClusterError):
    """The lock a run held is no longer its own."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, reason="LockLost")

    def __reduce__(self) -> tuple[Any, ...]:
        return (LockLost, (self.message,))


def read_vm_lock(apis: KubeApis, namespace: str, vm: str) -> LockHolder | None:
    """The current holder; NotFound when the VM does not exist; ValueError if malformed."""
    obj = apis.get_custom(VIRTUAL_MACHINES, namespace, vm)
    text = _annotations(obj).get(LOCK_ANNOTATION)
    return None if text is None else LockHolder.from_annotation(text)


def acquire_vm_lock(
    apis: KubeApis,
    namespace: str,
    vm: str,
    holder: LockHolder,
    holder_is_alive: Callable[[LockHolder], bool],
    read: dict[str, Any] | None = None,
) -> LockHolder | None:
    """Take the lock for `holder`; idempotent for the same run.

    `read` is the VM as just read by the caller: the first attempt patches against its
    resourceVersion instead of reading the VM again (a VM changed since is read anew).
    Returns the stale holder that was taken over, if any. Raises VmLocked when
    a live operation holds it (or the annotation is malformed: a human must
    look), NotFound when the VM does not exist, Conflict after repeated races.
    """
    for _ in range(_ATTEMPTS):
        obj = read if read is not None else apis.get_custom(VIRTUAL_MACHINES, namespace, vm)
        read = None
        text = _annotations(obj).get(LOCK_ANNOTATION)
        current: LockHolder | None = None
        if text is not None:
            try:
                current = LockHolder.from_annotation(text)
            except ValueError:
                raise VmLocked.naming(
                    namespace, vm, None,
                    f"an unreadable {LOCK_ANNOTATION} annotation {text!r} (remove it with "
                    f"kubectl annotate vm -n {namespace} {vm} {LOCK_ANNOTATION}-)",
                ) from None
            if current.same_run(holder):
                return None
            if holder_is_alive(current):
                raise VmLocked.naming(namespace, vm, current)
        try:
            _write_annotation(apis, namespace, vm, obj, holder.to_annotation())
        except Conflict:
            continue  # someone wrote the VM meanwhile: read again
        return current
    raise Conflict(f"VirtualMachine {namespace}/{vm} kept changing while taking its lock",
                   status=409, reason="Conflict")


def release_vm_lock(
    apis: KubeApis, namespace: str, vm: str, holder: LockHolder, held: str | None = None
) -> bool:
    """Remove the lock if `holder`'s run holds it; False when it did not (or the VM is gone).

    `held`, the exact annotation the run wrote, makes it one request: a JSON patch that
    tests the annotation and removes it. Refused (the lock changed or is gone), the
    release reads the VM and decides as without it.
    """
    if held is not None:
        patch = [{"op": "test", "path": _LOCK_POINTER, "value": held},
                 {"op": "remove", "path": _LOCK_POINTER}]
        try:
            apis.patch_custom(VIRTUAL_MACHINES, namespace, vm, patch, "json")
            return True
        except NotFound:
            return False
        except (Invalid, Conflict):
            pass
    for _ in range(_ATTEMPTS):
        try:
            obj = apis.get_custom(VIRTUAL_MACHINES, namespace, vm)
        except NotFound:
            return False
        text = _annotations(obj).get(LOCK_ANNOTATION)
        if text is None:
            return False
        try:
            if not LockHolder.from_annotation(text).same_run(holder):
                return False
        except ValueError:
            return False
        try:
            _write_annotation(apis, namespace, vm, obj, None)
        except Conflict:
            continue
        except NotFound:
            return False
        return True
    raise Conflict(f"VirtualMachine {namespace}/{vm} kept changing while releasing its lock",
                   status=409, reason="Conflict")


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _write_annotation(
    apis: KubeApis, namespace: str, vm: str, obj: dict[str, Any], value: str | None
) -> None:
    """Merge patch with the resourceVersion read: the server refuses it if the VM changed."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    patch = {"metadata": {"resourceVersion": version, "annotations": {LOCK_ANNOTATION: value}}}
    apis.patch_custom(VIRTUAL_MACHINES, namespace, vm, patch, "merge")
