"""The csi-snapshotter sidecar and the storage behind it, for every CSI driver at once.

For a dynamically provisioned VolumeSnapshotContent the simulated storage
takes the point-in-time cut (status: `snapshotHandle`, `creationTime` in
nanoseconds, `readyToUse: false`) `cut-latency` after its VolumeSnapshot was
created, however long the simulated snapshot controller took to make the
content (a real one does that in parallel, in milliseconds); or after the
content was first seen when there is no such instant (a snapshot that waited in
error for its class or PVC, a pre-provisioned or seeded content). It is ready
`ready-latency` after the cut (`readyToUse: true`, `restoreSize` in bytes: the
source volume's size). The latencies and the
`sim.vmsnap.io/fail` mode come from the source PVC, else the content's
VolumeSnapshotClass (see `simulator.annotations`):

- `never-cut`: no `creationTime`, ever (a freeze must be given up);
- `never-ready`: cut, never `readyToUse`;
- `error`: CreateSnapshot fails; the content (and so the snapshot) carries
  `status.error`, retried when the class or PVC changes.

A content whose driver does not own the source volume (the class's driver is
not the PVC's provisioner) fails the way a CSI driver does: NotFound for the
volume. Deleting a content removes its finalizer once its snapshot is being
deleted (or it was never bound), as the sidecar does; a bound content deleted
by hand waits for its snapshot. The content of a VolumeGroupSnapshot's member
(annotated `groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle`) is cut and
made ready with its group, by `group_driver`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from simulator import annotations as ann
from simulator.controllers.csi_snapshotter import (
    BEING_DELETED,
    CONTENT_FINALIZER,
    source_pvc,
)
from simulator.controllers.group_snapshotter import GROUP_HANDLE_ANNOTATION
from simulator.controllers.runtime import CORE, SNAPSHOT, Index, Runtime, rfc3339_seconds
from simulator.controllers.storage import (
    StorageView,
    is_deleting,
    pvc_size_bytes,
    volume_handle,
)
from simulator.documents import copy_document
from simulator.store import WatchEvent

QUEUE = "csi-snapshotter"
_TOLERANCE = 0.001


class CsiDriverSidecar:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        self._cut_due: dict[str, float] = {}
        self._ready_due: dict[str, float] = {}
        self._sizes: dict[str, int] = {}
        # When each VolumeSnapshot (by uid) was created, on the loop's clock: its cut is due
        # `cut-latency` after that, as the sidecar's CreateSnapshot call starts right away.
        self._snapshot_created: dict[str, float] = {}
        # Un-ready contents by volume handle and by class: what a PVC or class change concerns.
        self._by_handle = Index()
        self._by_class = Index()
        runtime.register(QUEUE, self.reconcile)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        if key == (SNAPSHOT, "volumesnapshots"):
            uid = obj["metadata"].get("uid")
            status = obj.get("status") or {}
            if event.type == "ADDED" and uid:
                self._snapshot_created[uid] = self.rt.now()
            elif event.type == "DELETED" or (
                status.get("error") and not status.get("boundVolumeSnapshotContentName")
            ):
                # Gone, or waiting in error for its class or PVC: CreateSnapshot starts
                # only once the content is made, so the cut counts from the content.
                self._snapshot_created.pop(uid, None)
        elif key == (SNAPSHOT, "volumesnapshotcontents"):
            name = obj["metadata"]["name"]
            spec = obj.get("spec") or {}
            unready = (
                event.type != "DELETED" and (obj.get("status") or {}).get("readyToUse") is not True
            )
            handle = (spec.get("source") or {}).get("volumeHandle")
            self._by_handle.update(name, [handle] if handle and unready else [])
            self._by_class.update(name, [spec.get("volumeSnapshotClassName")] if unready else [])
            self.rt.enqueue(QUEUE, name)
        elif key == (SNAPSHOT, "volumesnapshotclasses"):
            for name in self._by_class.referrers(obj["metadata"]["name"]):
                self.rt.enqueue(QUEUE, name)
        elif key == (CORE, "persistentvolumeclaims") and event.type != "DELETED":
            for name in self._by_handle.referrers(volume_handle(obj)):
                self.rt.enqueue(QUEUE, name)

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        content = self.view.content(name)
        if content is None:
            self._forget(name)
            return
        spec = content.get("spec") or {}
        ref = spec.get("volumeSnapshotRef") or {}
        if is_deleting(content):
            self._finalize_deletion(content, bool(ref.get("uid")))
            return
        if ref.get("uid") and CONTENT_FINALIZER not in (
            content["metadata"].get("finalizers") or []
        ):
            content["metadata"]["finalizers"] = [
                *(content["metadata"].get("finalizers") or []),
                CONTENT_FINALIZER,
            ]
            content = self.rt.write(SNAPSHOT, "volumesnapshotcontents", content)
        if GROUP_HANDLE_ANNOTATION in (content["metadata"].get("annotations") or {}):
            self._forget(name)  # a group member: cut and made ready with its group
            return
        source = spec.get("source") or {}
        status = dict(content.get("status") or {})
        if source.get("snapshotHandle"):
            if status.get("readyToUse") is not True:
                content["status"] = {
                    **status,
                    "snapshotHandle": source["snapshotHandle"],
                    "creationTime": status.get("creationTime") or time.time_ns(),
                    "readyToUse": True,
                }
                self.rt.write_status(SNAPSHOT, "volumesnapshotcontents", content, shared=True)
            return
        if not source.get("volumeHandle") or status.get("readyToUse") is True:
            self._forget(name)
            return
        pvc = self._source_pvc(content)
        snapshot_class = self.view.snapshot_class(spec.get("volumeSnapshotClassName"))
        failure = self._failure(content, pvc, snapshot_class)
        if not status.get("snapshotHandle"):
            self._cut(content, pvc, snapshot_class, failure)
        else:
            self._make_ready(content, pvc, snapshot_class, failure)

    def _cut(
        self,
        content: dict[str, Any],
        pvc: dict[str, Any] | None,
        snapshot_class: dict[str, Any] | None,
        failure: ann.SnapshotFailure | None,
    ) -> None:
        name = content["metadata"]["name"]
        handle = content["spec"]["source"]["volumeHandle"]
        if failure is ann.SnapshotFailure.ERROR:
            self._set_error(
                content,
                f'"rpc error: code = Internal desc = simulated storage failure '
                f'({ann.FAIL}: error)"',
            )
            return
        if (
            pvc is None
            or volume_handle(pvc) != handle
            or self.view.driver_of(pvc) != content["spec"].get("driver")
        ):
            self._set_error(
                content, f'"rpc error: code = NotFound desc = source volume {handle} not found"'
            )
            return
        due = self._cut_due.get(name)
        if due is None:
            delay = self._latency(content, ann.CUT_LATENCY, pvc, snapshot_class)
            ref_uid = (content["spec"].get("volumeSnapshotRef") or {}).get("uid")
            started = self._snapshot_created.pop(ref_uid, None) if ref_uid else None
            now = self.rt.now()
            self._cut_due[name] = due = (now if started is None else min(started, now)) + delay
            if now + _TOLERANCE < due:
                self.rt.enqueue_after(QUEUE, name, due - now)
                return
        if self.rt.now() + _TOLERANCE < due or failure is ann.SnapshotFailure.NEVER_CUT:
            return
        self._sizes[name] = pvc_size_bytes(pvc) or 0
        content["status"] = {
            "snapshotHandle": str(uuid.uuid4()),
            "creationTime": time.time_ns(),
            "readyToUse": False,
        }
        self.rt.write_status(SNAPSHOT, "volumesnapshotcontents", content, shared=True)
        delay = self._latency(content, ann.READY_LATENCY, pvc, snapshot_class)
        self._ready_due[name] = self.rt.now() + delay
        self.rt.enqueue_after(QUEUE, name, delay)

    def _make_ready(
        self,
        content: dict[str, Any],
        pvc: dict[str, Any] | None,
        snapshot_class: dict[str, Any] | None,
        failure: ann.SnapshotFailure | None,
    ) -> None:
        name = content["metadata"]["name"]
        due = self._ready_due.get(name)
        if due is None:  # cut before this process saw it (seeded): ready after the latency
            delay = self._latency(content, ann.READY_LATENCY, pvc, snapshot_class)
            self._ready_due[name] = due = self.rt.now() + delay
            self.rt.enqueue_after(QUEUE, name, delay)
        if self.rt.now() + _TOLERANCE < due or failure is ann.SnapshotFailure.NEVER_READY:
            return
        size = self._sizes.get(name)
        if size is None:
            size = (pvc_size_bytes(pvc) if pvc else None) or 0
        status = dict(content.get("status") or {})
        status.update({"readyToUse": True, "restoreSize": size})
        status.pop("error", None)
        content["status"] = status
        self.rt.write_status(SNAPSHOT, "volumesnapshotcontents", content, shared=True)
        self._forget(name)

    def _set_error(self, content: dict[str, Any], detail: str) -> None:
        """The sidecar's error on the content; the snapshot controller copies it over."""
        handle = content["spec"]["source"]["volumeHandle"]
        message = (
            "Failed to check and update snapshot content: failed to take snapshot of the volume "
            f"{handle}: {detail}"
        )
        self._cut_due.pop(content["metadata"]["name"], None)
        status = dict(content.get("status") or {})
        if (status.get("error") or {}).get("message") == message:
            return
        status["error"] = {"time": rfc3339_seconds(), "message": message}
        status["readyToUse"] = False
        content["status"] = status
        updated = self.rt.write_status(SNAPSHOT, "volumesnapshotcontents", content)
        self.rt.record(
            updated,
            "Warning",
            "SnapshotCreationFailed",
            message,
            f"csi-snapshotter {content['spec'].get('driver')}",
        )

    def _finalize_deletion(self, content: dict[str, Any], bound: bool) -> None:
        """Remove the finalizer once the snapshot is being deleted or was never bound; the
        physical snapshot goes with a Delete policy (at once, here)."""
        self._forget(content["metadata"]["name"])
        finalizers = content["metadata"].get("finalizers") or []
        if CONTENT_FINALIZER not in finalizers:
            return
        notes = content["metadata"].get("annotations") or {}
        if bound and notes.get(BEING_DELETED) != "yes":
            return
        content["metadata"]["finalizers"] = [f for f in finalizers if f != CONTENT_FINALIZER]
        self.rt.write(SNAPSHOT, "volumesnapshotcontents", content, shared=True)

    # ---- inputs --------------------------------------------------------------------

    def _source_pvc(self, content: dict[str, Any]) -> dict[str, Any] | None:
        """The volume's PVC: through the snapshot, else (its snapshot gone) by volume handle."""
        spec = content.get("spec") or {}
        ref = spec.get("volumeSnapshotRef") or {}
        handle = (spec.get("source") or {}).get("volumeHandle")
        snapshot = self.view.snapshot(ref.get("namespace", ""), ref.get("name", ""))
        if snapshot is not None and snapshot["metadata"]["uid"] == ref.get("uid"):
            claim = source_pvc(snapshot)
            pvc = self.view.pvc(ref.get("namespace", ""), claim) if claim else None
            if pvc is not None and volume_handle(pvc) == handle:
                return pvc
        for pvc in self.rt.list_view(CORE, "persistentvolumeclaims"):
            if volume_handle(pvc) == handle:
                return copy_document(pvc)  # the caller's own
        return None

    def _failure(
        self,
        content: dict[str, Any],
        pvc: dict[str, Any] | None,
        snapshot_class: dict[str, Any] | None,
    ) -> ann.SnapshotFailure | None:
        for obj in (pvc, snapshot_class):
            try:
                found = ann.snapshot_failure(obj)
            except ann.AnnotationError as exc:
                self.rt.record(
                    obj or content, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator"
                )
                continue
            if found is not None:
                return found
        return None

    def _latency(
        self,
        content: dict[str, Any],
        name: str,
        pvc: dict[str, Any] | None,
        snapshot_class: dict[str, Any] | None,
    ) -> float:
        try:
            return ann.first_latency(name, pvc, snapshot_class)
        except ann.AnnotationError as exc:
            self.rt.record(content, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator")
            return ann.default_latency(name)

    def _forget(self, name: str) -> None:
        self._cut_due.pop(name, None)
        self._ready_due.pop(name, None)
        self._sizes.pop(name, None)
