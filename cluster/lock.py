"""The per-VM operation lock: one snapshot, restore or clone-from-VM at a time per VM.

The lock is an annotation on the VirtualMachine (`vmsnap.io/lock`, a JSON
document naming the holder: workflow ID, run ID, operation, since). It is
written with the VM's resourceVersion as a precondition, so two workers
racing for it cannot both win: the loser re-reads and sees the winner.

Policy: a second operation is refused (`VmLocked`, naming the holder), it does
not wait; the caller decides whether to retry. A lock is never left behind: a
holder that is no longer running (asked through `holder_is_alive`, which the
caller answers, e.g. from Temporal) is taken over. Release removes the
annotation only if it still names the releasing holder.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from cluster.apis import VIRTUAL_MACHINES, KubeApis
from cluster.errors import ClusterError, Conflict, Invalid, NotFound

LOCK_ANNOTATION = "vmsnap.io/lock"
_ATTEMPTS = 5
_LOCK_POINTER = "/metadata/annotations/" + LOCK_ANNOTATION.replace("~", "~0").replace("/", "~1")


class LockHolder(BaseModel):
    """Who holds (or wants) a lock: one run of one workflow, doing one operation."""

    workflow_id: str
    run_id: str
    operation: str
    since: datetime

    def same_run(self, other: LockHolder) -> bool:
        return self.workflow_id == other.workflow_id and self.run_id == other.run_id

    def describe(self) -> str:
        return (f"{self.operation} workflow {self.workflow_id} (run {self.run_id}), "
                f"since {self.since.isoformat()}")

    def to_annotation(self) -> str:
        return json.dumps(
            {"workflowId": self.workflow_id, "runId": self.run_id,
             "operation": self.operation, "since": self.since.isoformat()},
            separators=(",", ":"),
        )

    @classmethod
    def from_annotation(cls, text: str) -> LockHolder:
        """ValueError when the annotation is not one this module wrote."""
        try:
            raw = json.loads(text)
            return cls(workflow_id=raw["workflowId"], run_id=raw["runId"],
                       operation=raw["operation"], since=raw["since"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise ValueError(f"malformed {LOCK_ANNOTATION} annotation {text!r}") from exc


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
