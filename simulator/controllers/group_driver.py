"""The csi-snapshotter sidecar's group snapshot side and the storage behind it
(`pkg/sidecar-controller/groupsnapshot_helper.go`), for every CSI driver at once.

For a dynamically provisioned VolumeGroupSnapshotContent the simulated storage
takes one point-in-time cut of all its volumes `cut-latency` after the
VolumeGroupSnapshot was created (or after the content was first seen, when the
group waited in error first). The cut sets the content's status:
`volumeGroupSnapshotHandle`, `creationTime` (RFC 3339 with microseconds, like the
members' own), `readyToUse: false` and a `volumeSnapshotInfoList` entry per
volume with the same `creationTime` in nanoseconds, a `snapshotHandle` and
`restoreSize` (the volume's size in bytes). The group controller
(`group_snapshotter`) then makes the member snapshots. `ready-latency` after the
cut every member's content, then the group content, is `readyToUse: true`.

Latencies and the `sim.vmsnap.io/fail` mode come from the content's
VolumeGroupSnapshotClass (one cut for the whole group: the member PVCs'
annotations do not steer it), with the annotations and parser of
VolumeSnapshotClasses (`simulator.annotations`):

- `never-cut`: no cut, ever: no `creationTime`, no members;
- `never-ready`: cut, members made, never `readyToUse`;
- `error`: CreateVolumeGroupSnapshot fails; the content (and so the group)
  carries `status.error`, retried when the class or a member PVC changes.

A volume that is not the driver's (its PVC's provisioner is another) or whose PVC
is gone fails as a CSI driver does: NotFound for the volume. Deleting a group
content removes its finalizer once its group is being deleted (or it was never
bound); with a Delete policy the storage's group snapshot goes first (its
status loses handle, `creationTime` and readiness).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from simulator import annotations as ann
from simulator.controllers.group_snapshotter import (
    GROUP_BEING_DELETED,
    GROUP_CONTENT_FINALIZER,
    member_suffix,
)
from simulator.controllers.runtime import (
    CORE,
    GROUP_SNAPSHOT,
    SNAPSHOT,
    Index,
    Runtime,
    rfc3339_from_nanos,
    rfc3339_seconds,
)
from simulator.controllers.storage import (
    ClaimsByHandle,
    StorageView,
    is_deleting,
    pvc_size_bytes,
    volume_handle,
)
from simulator.store import WatchEvent

QUEUE = "csi-group-snapshotter"
_TOLERANCE = 0.001


class GroupDriverSidecar:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        self._cut_due: dict[str, float] = {}
        self._ready_due: dict[str, float] = {}
        # When each VolumeGroupSnapshot (by uid) was created, on the loop's clock: its cut is
        # due `cut-latency` after that, as the sidecar's CreateVolumeGroupSnapshot starts then.
        self._group_created: dict[str, float] = {}
        # Un-ready contents by volume handle and by class: what a PVC or class change concerns.
        self._by_handle = Index()
        self._by_class = Index()
        self._claims_by_handle = ClaimsByHandle(runtime)
        runtime.register(QUEUE, self.reconcile)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        if key == (GROUP_SNAPSHOT, "volumegroupsnapshots"):
            uid = obj["metadata"].get("uid")
            status = obj.get("status") or {}
            if event.type == "ADDED" and uid:
                self._group_created[uid] = self.rt.now()
            elif event.type == "DELETED" or (
                status.get("error") and not status.get("boundVolumeGroupSnapshotContentName")
            ):
                # Gone, or waiting in error for its class or PVCs: the cut counts from the
                # content, which is made only once those are right.
                self._group_created.pop(uid, None)
        elif key == (GROUP_SNAPSHOT, "volumegroupsnapshotcontents"):
            name = obj["metadata"]["name"]
            spec = obj.get("spec") or {}
            unready = (
                event.type != "DELETED" and (obj.get("status") or {}).get("readyToUse") is not True
            )
            handles = (spec.get("source") or {}).get("volumeHandles") or []
            self._by_handle.update(name, handles if unready else [])
            self._by_class.update(
                name, [spec.get("volumeGroupSnapshotClassName")] if unready else []
            )
            self.rt.enqueue(QUEUE, name)
        elif key == (GROUP_SNAPSHOT, "volumegroupsnapshotclasses"):
            for name in self._by_class.referrers(obj["metadata"]["name"]):
                self.rt.enqueue(QUEUE, name)
        elif key == (CORE, "persistentvolumeclaims"):
            self._claims_by_handle.observe(event)
            if event.type == "DELETED":
                return
            for name in self._by_handle.referrers(volume_handle(obj)):
                self.rt.enqueue(QUEUE, name)

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        content = self.rt.find(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", None, name)
        if content is None:
            self._forget(name)
            return
        spec = content.get("spec") or {}
        ref = spec.get("volumeGroupSnapshotRef") or {}
        source = spec.get("source") or {}
        if is_deleting(content):
            self._finalize_deletion(content, bool(ref.get("uid")))
            return
        finalizers = content["metadata"].get("finalizers") or []
        if ref.get("uid") and GROUP_CONTENT_FINALIZER not in finalizers:
            content["metadata"]["finalizers"] = [*finalizers, GROUP_CONTENT_FINALIZER]
            content = self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content)
        status = content.get("status") or {}
        if source.get("groupSnapshotHandles"):
            self._adopt(content, source["groupSnapshotHandles"])
            return
        if not source.get("volumeHandles") or status.get("readyToUse") is True:
            self._forget(name)
            return
        group_class = self.rt.view(
            GROUP_SNAPSHOT, "volumegroupsnapshotclasses", None,
            str(spec.get("volumeGroupSnapshotClassName") or ""),
        )
        failure = self._failure(content, group_class)
        if not status.get("volumeGroupSnapshotHandle"):
            self._cut(content, group_class, failure)
        else:
            self._make_ready(content, group_class, failure)

    def _cut(
        self,
        content: dict[str, Any],
        group_class: dict[str, Any] | None,
        failure: ann.SnapshotFailure | None,
    ) -> None:
        name = content["metadata"]["name"]
        spec = content["spec"]
        handles = [str(handle) for handle in spec["source"]["volumeHandles"]]
        if failure is ann.SnapshotFailure.ERROR:
            self._set_error(
                content, handles,
                '"rpc error: code = Internal desc = simulated storage failure '
                f'({ann.FAIL}: error)"',
            )
            return
        claims = self._claims(spec.get("driver"), handles)
        missing = [handle for handle in handles if handle not in claims]
        if missing:
            self._set_error(
                content, handles,
                f'"rpc error: code = NotFound desc = source volume {missing[0]} not found"',
            )
            return
        due = self._cut_due.get(name)
        if due is None:
            delay = self._latency(content, ann.CUT_LATENCY, group_class)
            ref_uid = (spec.get("volumeGroupSnapshotRef") or {}).get("uid")
            started = self._group_created.pop(ref_uid, None) if ref_uid else None
            now = self.rt.now()
            self._cut_due[name] = due = (now if started is None else min(started, now)) + delay
            if now + _TOLERANCE < due:
                self.rt.enqueue_after(QUEUE, name, due - now)
                return
        if self.rt.now() + _TOLERANCE < due or failure is ann.SnapshotFailure.NEVER_CUT:
            return
        cut_at = time.time_ns()
        content["status"] = {
            "volumeGroupSnapshotHandle": str(uuid.uuid4()),
            "creationTime": rfc3339_from_nanos(cut_at),
            "readyToUse": False,
            "volumeSnapshotInfoList": [
                {
                    "volumeHandle": handle,
                    "snapshotHandle": str(uuid.uuid4()),
                    "creationTime": cut_at,
                    "readyToUse": False,
                    "restoreSize": pvc_size_bytes(claims[handle]) or 0,
                }
                for handle in handles
            ],
        }
        self.rt.write_status(
            GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content, shared=True
        )
        delay = self._latency(content, ann.READY_LATENCY, group_class)
        self._ready_due[name] = self.rt.now() + delay
        self.rt.enqueue_after(QUEUE, name, delay)

    def _make_ready(
        self,
        content: dict[str, Any],
        group_class: dict[str, Any] | None,
        failure: ann.SnapshotFailure | None,
    ) -> None:
        name = content["metadata"]["name"]
        due = self._ready_due.get(name)
        if due is None:  # cut before this process saw it (seeded): ready after the latency
            delay = self._latency(content, ann.READY_LATENCY, group_class)
            self._ready_due[name] = due = self.rt.now() + delay
            self.rt.enqueue_after(QUEUE, name, delay)
        if self.rt.now() + _TOLERANCE < due or failure is ann.SnapshotFailure.NEVER_READY:
            return
        status = dict(content.get("status") or {})
        infos = [
            {**info, "readyToUse": True} for info in status.get("volumeSnapshotInfoList") or []
        ]
        group_uid = str((content["spec"].get("volumeGroupSnapshotRef") or {}).get("uid") or "")
        for info in infos:  # the members first: a ready group has ready members
            self._member_ready(group_uid, info)
        status.update({"readyToUse": True, "volumeSnapshotInfoList": infos})
        status.pop("error", None)
        content["status"] = status
        self.rt.write_status(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content, shared=True)
        self._forget(name)

    def _member_ready(self, group_uid: str, info: dict[str, Any]) -> None:
        """The sidecar's check of a member's content: ready with its group."""
        name = f"snapcontent-{member_suffix(group_uid, str(info.get('volumeHandle') or ''))}"
        member = self.view.content(name)
        if member is None or not (member.get("status") or {}).get("snapshotHandle"):
            return  # not made yet: the group controller makes it from the ready info
        status = dict(member["status"])
        if status.get("readyToUse") is True:
            return
        status["readyToUse"] = True
        if info.get("restoreSize") is not None:
            status["restoreSize"] = info["restoreSize"]
        member["status"] = status
        self.rt.write_status(SNAPSHOT, "volumesnapshotcontents", member, shared=True)

    def _adopt(self, content: dict[str, Any], handles: dict[str, Any]) -> None:
        """A pre-provisioned group: the storage knows it, ready (GetVolumeGroupSnapshot)."""
        status = dict(content.get("status") or {})
        if status.get("readyToUse") is True:
            return
        now = time.time_ns()
        content["status"] = {
            **status,
            "volumeGroupSnapshotHandle": handles.get("volumeGroupSnapshotHandle"),
            "creationTime": status.get("creationTime") or rfc3339_from_nanos(now),
            "readyToUse": True,
            "volumeSnapshotInfoList": [
                {"snapshotHandle": handle, "creationTime": now, "readyToUse": True}
                for handle in handles.get("volumeSnapshotHandles") or []
            ],
        }
        self.rt.write_status(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content, shared=True)

    def _set_error(self, content: dict[str, Any], handles: list[str], detail: str) -> None:
        """updateGroupSnapshotContentErrorStatusWithEvent; the group controller copies it."""
        message = (
            "Failed to create group snapshot: failed to take group snapshot of the volumes "
            f"[{' '.join(handles)}]: {detail}"
        )
        self._cut_due.pop(content["metadata"]["name"], None)
        status = dict(content.get("status") or {})
        if (status.get("error") or {}).get("message") == message:
            return
        status["error"] = {"time": rfc3339_seconds(), "message": message}
        status["readyToUse"] = False
        content["status"] = status
        updated = self.rt.write_status(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content)
        self.rt.record(
            updated, "Warning", "GroupSnapshotCreationFailed", message,
            f"csi-snapshotter {content['spec'].get('driver')}",
        )

    def _finalize_deletion(self, content: dict[str, Any], bound: bool) -> None:
        """shouldDeleteGroupSnapshotContent, then DeleteVolumeGroupSnapshot with a Delete
        policy (at once, here) and the finalizer's removal."""
        name = content["metadata"]["name"]
        self._forget(name)
        finalizers = content["metadata"].get("finalizers") or []
        if GROUP_CONTENT_FINALIZER not in finalizers:
            return
        notes = content["metadata"].get("annotations") or {}
        if bound and notes.get(GROUP_BEING_DELETED) != "yes":
            return
        status = content.get("status") or {}
        if content["spec"].get("deletionPolicy") == "Delete" and status.get(
            "volumeGroupSnapshotHandle"
        ):
            content["status"] = {
                k: v for k, v in status.items()
                if k not in ("volumeGroupSnapshotHandle", "readyToUse", "creationTime", "error")
            }
            content = self.rt.write_status(
                GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content
            )
        content["metadata"]["finalizers"] = [
            f for f in content["metadata"].get("finalizers") or [] if f != GROUP_CONTENT_FINALIZER
        ]
        self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content, shared=True)

    # ---- inputs --------------------------------------------------------------------

    def _claims(self, driver: Any, handles: list[str]) -> dict[str, dict[str, Any]]:
        """The PVC of each volume handle the driver owns (a volume of another driver is
        not found by this one)."""
        found: dict[str, dict[str, Any]] = {}
        for handle in set(handles):
            pvc = self._claims_by_handle.claim(handle)
            if pvc is not None and self.view.driver_of(pvc) == driver:
                found[handle] = pvc
        return found

    def _failure(
        self, content: dict[str, Any], group_class: dict[str, Any] | None
    ) -> ann.SnapshotFailure | None:
        try:
            return ann.snapshot_failure(group_class)
        except ann.AnnotationError as exc:
            self.rt.record(
                group_class or content, "Warning", "InvalidSimAnnotation", str(exc),
                "vmsnap-simulator",
            )
            return None

    def _latency(
        self, content: dict[str, Any], name: str, group_class: dict[str, Any] | None
    ) -> float:
        try:
            return ann.first_latency(name, group_class)
        except ann.AnnotationError as exc:
            self.rt.record(content, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator")
            return ann.default_latency(name)

    def _forget(self, name: str) -> None:
        self._cut_due.pop(name, None)
        self._ready_due.pop(name, None)
