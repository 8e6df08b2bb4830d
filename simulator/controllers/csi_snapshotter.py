"""The CSI snapshot controller (kubernetes-csi/external-snapshotter's common controller).

It binds each VolumeSnapshot to a VolumeSnapshotContent and mirrors the
content's status onto the snapshot; the driver side (the csi-snapshotter
sidecar and the storage itself) lives in `csi_driver.py`. Behaviour and error
messages follow `pkg/common-controller/snapshot_controller.go`:

- Class: `spec.volumeSnapshotClassName`, else the one default class
  (`snapshot.storage.kubernetes.io/is-default-class: "true"`) whose driver is
  the source volume's driver, written into the spec. A missing class, or no or
  several defaults, sets `status.error` (and leaves `readyToUse` unset).
- Finalizers: `volumesnapshot-as-source-protection` on every snapshot being
  created; `volumesnapshot-bound-protection` once bound to a content whose
  policy is Delete; `pvc-as-source-protection` on the source PVC until no
  snapshot of it is still un-ready.
- Content: `snapcontent-<snapshot uid>` with `volumeSnapshotRef` (uid included),
  `source.volumeHandle`, `driver` and `deletionPolicy` from the class. A missing
  or unbound PVC, or a non-CSI volume, sets `status.error` and
  `readyToUse: false`; the controller retries when the PVC or class changes, and
  the error clears once the content exists (as the real one does).
- Status: `boundVolumeSnapshotContentName`, then `creationTime` (RFC 3339 with
  microseconds, from the content's nanoseconds: the freeze window is measured
  against it; a real cluster prints whole seconds here), `readyToUse`,
  `restoreSize` (a quantity, `1Gi`), `error`; Events CreatingSnapshot,
  SnapshotCreated, SnapshotReady.
- Deletion: wait while a Pending PVC is being restored from the snapshot; mark
  the content `volumesnapshot-being-deleted`; delete it when its policy is
  Delete (the snapshot keeps its bound finalizer until the content is gone);
  with Retain the content stays, still naming the snapshot.
- A pre-provisioned snapshot (`source.volumeSnapshotContentName`) binds to that
  content when the content's `volumeSnapshotRef` names it.
- A member of a VolumeGroupSnapshot (owned by it, made by `group_snapshotter`)
  needs no class and gets no bound finalizer; its status comes from the content
  the group controller bound it to, with `volumeGroupSnapshotName` (found through
  the group content with the same `volumeGroupSnapshotHandle`). Deleting it on its
  own is refused while its group exists (Warning SnapshotDeletePending, the
  snapshot stays with its deletionTimestamp); once the group is gone its
  `volumesnapshot-in-group-protection` finalizer goes with the others.
"""

from __future__ import annotations

from typing import Any, cast

from simulator.controllers.group_snapshotter import IN_GROUP_FINALIZER, parent_group
from simulator.controllers.pvc_binder import snapshot_source
from simulator.controllers.runtime import (
    CORE,
    GROUP_SNAPSHOT,
    SNAPSHOT,
    STORAGE,
    Index,
    Runtime,
    annotations_dict,
    rfc3339_from_nanos,
    rfc3339_seconds,
)
from simulator.controllers.storage import (
    DEFAULT_SNAPSHOT_CLASS,
    StorageView,
    binary_si,
    is_bound,
    is_csi_driver,
    is_default,
    is_deleting,
    volume_handle,
    volume_name,
)
from simulator.store import WatchEvent

QUEUE = "snapshot-controller"
UNBOUND = "snapshot-controller/unbound"
COMPONENT = "snapshot-controller"

AS_SOURCE_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
BOUND_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
CONTENT_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
PVC_FINALIZER = "snapshot.storage.kubernetes.io/pvc-as-source-protection"
BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"

Key = tuple[str, str]


def content_name_for(snapshot: dict[str, Any]) -> str:
    return f"snapcontent-{snapshot['metadata']['uid']}"


def is_ready(snapshot: dict[str, Any]) -> bool:
    return (snapshot.get("status") or {}).get("readyToUse") is True


def source_pvc(snapshot: dict[str, Any]) -> str | None:
    return ((snapshot.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")


def _quoted(text: str) -> str:
    """Go's %q of an error message."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SnapshotController:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        # Snapshots by the (namespace, name) of their source PVC.
        self._by_claim = Index()
        # Member snapshots by the (namespace, name) of their VolumeGroupSnapshot.
        self._by_group = Index()
        runtime.register(QUEUE, self.reconcile)
        runtime.register(UNBOUND, self._requeue_unbound)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        metadata = obj["metadata"]
        namespace = metadata.get("namespace", "")
        if key == (SNAPSHOT, "volumesnapshots"):
            snapshot = (namespace, metadata["name"])
            claim = source_pvc(obj)
            self._by_claim.update(
                snapshot, [(namespace, claim)] if claim and event.type != "DELETED" else []
            )
            group = parent_group(obj)
            self._by_group.update(
                snapshot, [(namespace, group)] if group and event.type != "DELETED" else []
            )
            self.rt.enqueue(QUEUE, snapshot)
        elif key == (SNAPSHOT, "volumesnapshotcontents"):
            ref = (obj.get("spec") or {}).get("volumeSnapshotRef") or {}
            if ref.get("name"):
                self.rt.enqueue(QUEUE, (ref.get("namespace", ""), ref["name"]))
        elif key == (CORE, "persistentvolumeclaims"):
            for referrer in self._by_claim.referrers((namespace, metadata["name"])):
                self.rt.enqueue(QUEUE, referrer)
            restored_from = snapshot_source(obj)
            if restored_from is not None:
                self.rt.enqueue(QUEUE, restored_from)
        elif key == (GROUP_SNAPSHOT, "volumegroupsnapshots") and event.type == "DELETED":
            for member in self._by_group.referrers((namespace, metadata["name"])):
                self.rt.enqueue(QUEUE, member)
        elif key in ((SNAPSHOT, "volumesnapshotclasses"), (STORAGE, "storageclasses")):
            self.rt.enqueue(UNBOUND, None)

    def _requeue_unbound(self, _: None) -> None:
        """A class changed: snapshots that could not be bound may now be."""
        for snapshot in self.rt.list_view(SNAPSHOT, "volumesnapshots"):
            if not (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName"):
                metadata = snapshot["metadata"]
                self.rt.enqueue(QUEUE, (metadata.get("namespace", ""), metadata["name"]))

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        snapshot = self.view.snapshot(namespace, name)
        if snapshot is None:
            return
        if is_deleting(snapshot):
            self._process_deletion(snapshot)
            return
        self._release_pvc(snapshot, skip_current=False)
        source = (snapshot.get("spec") or {}).get("source") or {}
        if source.get("volumeSnapshotContentName"):
            self._sync_pre_provisioned(snapshot, str(source["volumeSnapshotContentName"]))
            return
        if parent_group(snapshot):
            self._sync_member(snapshot)
            return
        if not source.get("persistentVolumeClaimName"):
            return  # the API server's validation refuses this; nothing to do
        snapshot_class = self._resolve_class(snapshot)
        if snapshot_class is None:
            return
        content = self.view.content_view(content_name_for(snapshot))  # read only
        snapshot = self._ensure_finalizers(snapshot, content)
        if content is None:
            self._create_content(snapshot, snapshot_class)
            return
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (
            name,
            namespace,
            snapshot["metadata"]["uid"],
        ):
            self._error(
                snapshot,
                True,
                "SnapshotContentMisbound",
                f"VolumeSnapshotContent [{content['metadata']['name']}] is bound to a "
                "different snapshot",
            )
            return
        self._sync_status(snapshot, content)

    def _sync_member(self, snapshot: dict[str, Any]) -> None:
        """syncUnreadySnapshot for a group member: the status of the content it is bound to."""
        snapshot = self._ensure_finalizers(snapshot, None)
        content_name = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = self.view.content_view(content_name) if content_name else None
        if content is None:
            return  # not bound yet, or its content not made yet: their events queue it again
        self._sync_status(snapshot, content)

    def _group_of(self, content: dict[str, Any]) -> str | None:
        """The VolumeGroupSnapshot whose content has this member content's group handle."""
        handle = (content.get("status") or {}).get("volumeGroupSnapshotHandle")
        if not handle:
            return None
        for group_content in self.rt.list_view(GROUP_SNAPSHOT, "volumegroupsnapshotcontents"):
            if (group_content.get("status") or {}).get("volumeGroupSnapshotHandle") == handle:
                ref = (group_content.get("spec") or {}).get("volumeGroupSnapshotRef") or {}
                return str(ref.get("name") or "") or None
        return None

    # ---- class ---------------------------------------------------------------------

    def _resolve_class(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        class_name = (snapshot.get("spec") or {}).get("volumeSnapshotClassName")
        if class_name:
            found = self.view.snapshot_class_view(class_name)
            if found is None:
                self._error(
                    snapshot,
                    False,
                    "GetSnapshotClassFailed",
                    "Failed to get snapshot class with error "
                    f'volumesnapshotclass.snapshot.storage.k8s.io "{class_name}" not found',
                )
            return found
        chosen, problem = self._default_class(snapshot)
        if chosen is None:
            self._error(
                snapshot,
                False,
                "SetDefaultSnapshotClassFailed",
                f"Failed to set default snapshot class with error {problem}",
            )
            return None
        snapshot["spec"]["volumeSnapshotClassName"] = chosen["metadata"]["name"]
        self.rt.write(SNAPSHOT, "volumesnapshots", snapshot, shared=True)
        return None  # the spec change queues the snapshot again

    def _default_class(self, snapshot: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        metadata = snapshot["metadata"]
        claim = source_pvc(snapshot) or ""
        pvc = self.view.pvc_view(metadata.get("namespace", ""), claim)
        if pvc is None:
            missing = f'persistentvolumeclaim "{claim}" not found'
            return None, f"failed to retrieve PVC {claim} from the lister: {_quoted(missing)}"
        if not is_bound(pvc):
            return None, (
                f"the PVC {claim} is not yet bound to a PV, will not attempt to take a snapshot"
            )
        driver = self.view.driver_of(pvc)
        if not is_csi_driver(driver):
            return None, (
                "snapshotting non-CSI volumes is not supported, "
                f"snapshot:{metadata.get('namespace')}/{metadata['name']}"
            )
        defaults = [
            vsc
            for vsc in self.rt.list_view(SNAPSHOT, "volumesnapshotclasses")
            if vsc.get("driver") == driver and is_default(vsc, DEFAULT_SNAPSHOT_CLASS)
        ]
        if not defaults:
            return None, "cannot find default snapshot class"
        if len(defaults) > 1:
            return None, f"{len(defaults)} default snapshot classes were found"
        return defaults[0], ""

    # ---- finalizers ----------------------------------------------------------------

    def _ensure_finalizers(
        self, snapshot: dict[str, Any], content: dict[str, Any] | None
    ) -> dict[str, Any]:
        finalizers = list(snapshot["metadata"].get("finalizers") or [])
        wanted = [AS_SOURCE_FINALIZER]
        bound_name = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName")
        if content is not None and bound_name and _policy(content) == "Delete":
            wanted.append(BOUND_FINALIZER)
        missing = [f for f in wanted if f not in finalizers]
        if not missing:
            return snapshot
        snapshot["metadata"]["finalizers"] = finalizers + missing
        # `snapshot` is a copy (`StorageView.snapshot` or a write's answer), replaced by the
        # answer in every caller: handed over to the store.
        return self.rt.write(SNAPSHOT, "volumesnapshots", snapshot, owned=True)

    def _release_pvc(self, snapshot: dict[str, Any], *, skip_current: bool) -> None:
        """Drop the PVC's source finalizer once no other un-ready snapshot uses it."""
        claim = source_pvc(snapshot)
        namespace = snapshot["metadata"].get("namespace", "")
        pvc = self.view.pvc_view(namespace, claim or "")  # read only
        if pvc is None or PVC_FINALIZER not in (pvc["metadata"].get("finalizers") or []):
            return
        # The index names the snapshots of this claim: no listing (and copying) of every
        # snapshot in the namespace on each reconcile, which made the cut latency grow with
        # the number of snapshots kept.
        for referrer in self._by_claim.referrers((namespace, claim)):
            other_ns, other_name = cast(Key, referrer)
            if skip_current and other_name == snapshot["metadata"]["name"]:
                continue
            other = self.view.snapshot_view(other_ns, other_name)
            if other is not None and source_pvc(other) == claim and not is_ready(other):
                return
        finalizers = [f for f in pvc["metadata"]["finalizers"] if f != PVC_FINALIZER]
        self.rt.write(CORE, "persistentvolumeclaims",
                      {**pvc, "metadata": {**pvc["metadata"], "finalizers": finalizers}},
                      shared=True)

    # ---- content -------------------------------------------------------------------

    def _create_content(self, snapshot: dict[str, Any], snapshot_class: dict[str, Any]) -> None:
        metadata = snapshot["metadata"]
        namespace, name = metadata.get("namespace", ""), metadata["name"]
        claim = source_pvc(snapshot) or ""
        failed = "Failed to create snapshot content with error "
        pvc = self.view.pvc_view(namespace, claim)  # read only
        if pvc is None:
            self._error(
                snapshot,
                True,
                "SnapshotContentCreationFailed",
                failed + f"snapshot controller failed to update {name} on API server: "
                "cannot get claim from snapshot",
            )
            return
        if PVC_FINALIZER not in (pvc["metadata"].get("finalizers") or []):
            if is_deleting(pvc):
                self._error(
                    snapshot,
                    True,
                    "SnapshotContentCreationFailed",
                    failed + f"snapshot controller failed to update {claim} on API "
                    "server: cannot add finalizer on claim because it is being deleted",
                )
                return
            finalizers = [*(pvc["metadata"].get("finalizers") or []), PVC_FINALIZER]
            pvc = self.rt.write(CORE, "persistentvolumeclaims",
                                {**pvc, "metadata": {**pvc["metadata"], "finalizers": finalizers}})
        if not is_bound(pvc):
            problem = (
                f"the PVC {claim} is not yet bound to a PV, will not attempt to take a snapshot"
            )
            self._error(
                snapshot,
                True,
                "SnapshotContentCreationFailed",
                failed
                + f"failed to get input parameters to create snapshot {name}: "
                + _quoted(problem),
            )
            return
        if not is_csi_driver(self.view.driver_of(pvc)):
            self._error(
                snapshot,
                True,
                "SnapshotContentCreationFailed",
                failed + f"cannot find CSI PersistentVolumeSource for volume {volume_name(pvc)}",
            )
            return
        content = {
            "apiVersion": f"{SNAPSHOT}/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name_for(snapshot), "finalizers": [CONTENT_FINALIZER]},
            "spec": {
                "volumeSnapshotRef": {
                    "apiVersion": f"{SNAPSHOT}/v1",
                    "kind": "VolumeSnapshot",
                    "name": name,
                    "namespace": namespace,
                    "uid": metadata["uid"],
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "source": {"volumeHandle": volume_handle(pvc)},
                "volumeSnapshotClassName": snapshot_class["metadata"]["name"],
                "deletionPolicy": snapshot_class.get("deletionPolicy") or "Delete",
                "driver": snapshot_class.get("driver") or "",
                "sourceVolumeMode": (pvc.get("spec") or {}).get("volumeMode") or "Filesystem",
            },
        }
        created = self.rt.create(SNAPSHOT, "volumesnapshotcontents", content)
        self.rt.record(
            snapshot,
            "Normal",
            "CreatingSnapshot",
            f"Waiting for a snapshot {namespace}/{name} to be created by the CSI driver.",
            COMPONENT,
        )
        snapshot = self._sync_status(snapshot, created)
        self._ensure_finalizers(snapshot, created)

    def _sync_pre_provisioned(self, snapshot: dict[str, Any], content_name: str) -> None:
        content = self.view.content(content_name)
        snapshot = self._ensure_finalizers(snapshot, content)
        if content is None:
            self._error(
                snapshot, True, "SnapshotContentMissing", "VolumeSnapshotContent is missing"
            )
            return
        source = (content.get("spec") or {}).get("source") or {}
        if not source.get("snapshotHandle"):
            self._error(
                snapshot,
                True,
                "SnapshotContentMismatch",
                "VolumeSnapshotContent is dynamically provisioned while expecting a "
                "pre-provisioned one",
            )
            return
        metadata = snapshot["metadata"]
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if (
            ref.get("name") != metadata["name"]
            or ref.get("namespace") != metadata.get("namespace")
            or (ref.get("uid") and ref.get("uid") != metadata["uid"])
        ):
            self._error(
                snapshot,
                True,
                "SnapshotContentMisbound",
                f"VolumeSnapshotContent [{content_name}] is bound to a different snapshot",
            )
            return
        if not ref.get("uid"):
            content["spec"]["volumeSnapshotRef"] = {**ref, "uid": metadata["uid"]}
            class_name = (snapshot.get("spec") or {}).get("volumeSnapshotClassName")
            if class_name:
                content["spec"]["volumeSnapshotClassName"] = class_name
            content = self.rt.write(SNAPSHOT, "volumesnapshotcontents", content)
        self._sync_status(snapshot, content)

    # ---- status --------------------------------------------------------------------

    def _sync_status(self, snapshot: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        """updateSnapshotStatus: the content's status, as the snapshot shows it."""
        content_status = content.get("status") or {}
        previous = dict(snapshot.get("status") or {})
        status = dict(previous)
        status.setdefault("boundVolumeSnapshotContentName", content["metadata"]["name"])
        created = content_status.get("creationTime")
        if not status.get("creationTime") and isinstance(created, int):
            status["creationTime"] = rfc3339_from_nanos(created)
        status["readyToUse"] = content_status.get("readyToUse") is True
        size = content_status.get("restoreSize")
        if isinstance(size, int) and (
            not status.get("restoreSize") or status["restoreSize"] in ("0", 0)
        ):
            status["restoreSize"] = binary_si(size)
        if content_status.get("error"):
            status["error"] = dict(content_status["error"])
        else:
            status.pop("error", None)
        if not status.get("volumeGroupSnapshotName"):
            group = self._group_of(content)
            if group:
                status["volumeGroupSnapshotName"] = group
        if status == previous:
            return snapshot
        snapshot["status"] = status
        updated = self.rt.write_status(SNAPSHOT, "volumesnapshots", snapshot)
        metadata = snapshot["metadata"]
        where = f"{metadata.get('namespace')}/{metadata['name']}"
        if not previous.get("creationTime") and status.get("creationTime"):
            self.rt.record(
                updated,
                "Normal",
                "SnapshotCreated",
                f"Snapshot {where} was successfully created by the CSI driver.",
                COMPONENT,
            )
        if previous.get("readyToUse") is not True and status["readyToUse"]:
            self.rt.record(
                updated, "Normal", "SnapshotReady", f"Snapshot {where} is ready to use.", COMPONENT
            )
        return updated

    def _error(
        self, snapshot: dict[str, Any], set_ready_false: bool, reason: str, message: str
    ) -> None:
        """updateSnapshotErrorStatusWithEvent: written only when the message changes."""
        status = dict(snapshot.get("status") or {})
        if (status.get("error") or {}).get("message") == message:
            return
        status["error"] = {"time": rfc3339_seconds(), "message": message}
        if set_ready_false:
            status["readyToUse"] = False
        snapshot["status"] = status
        updated = self.rt.write_status(SNAPSHOT, "volumesnapshots", snapshot, shared=True)
        self.rt.record(updated, "Warning", reason, message, COMPONENT)

    # ---- deletion ------------------------------------------------------------------

    def _process_deletion(self, snapshot: dict[str, Any]) -> None:
        finalizers = list(snapshot["metadata"].get("finalizers") or [])
        if AS_SOURCE_FINALIZER not in finalizers and BOUND_FINALIZER not in finalizers:
            return
        metadata = snapshot["metadata"]
        content_name = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName")
        if not content_name and source_pvc(snapshot):
            content_name = content_name_for(snapshot)
        content = self.view.content(content_name)
        delete_content = False
        if content is not None:
            ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
            if (ref.get("name"), ref.get("namespace"), ref.get("uid")) == (
                metadata["name"],
                metadata.get("namespace"),
                metadata["uid"],
            ):
                delete_content = _policy(content) == "Delete"
            else:
                content = None
        if content is not None and self._restoring_from(snapshot):
            self.rt.record(
                snapshot,
                "Warning",
                "SnapshotDeletePending",
                "Snapshot is being used to restore a PVC",
                COMPONENT,
            )
            return
        group_name = (snapshot.get("status") or {}).get("volumeGroupSnapshotName")
        namespace = metadata.get("namespace", "")
        if group_name and self.rt.view(
            GROUP_SNAPSHOT, "volumegroupsnapshots", namespace, group_name
        ):
            self.rt.record(
                snapshot,
                "Warning",
                "SnapshotDeletePending",
                f"deletion of the individual volume snapshot {namespace}/{metadata['name']} "
                f"is not allowed as it belongs to group snapshot {namespace}/{group_name}. "
                "Deleting the group snapshot will trigger the deletion of all the "
                "individual volume snapshots that are part of the group.",
                COMPONENT,
            )
            return
        if content is not None:
            if annotations_dict(content).get(BEING_DELETED) != "yes":
                annotations_dict(content)[BEING_DELETED] = "yes"
                content = self.rt.write(SNAPSHOT, "volumesnapshotcontents", content)
            if delete_content and not is_deleting(content):
                self.rt.delete(
                    SNAPSHOT, "volumesnapshotcontents", None, content["metadata"]["name"]
                )
        self._release_pvc(snapshot, skip_current=True)
        keep_bound = content is not None and delete_content
        dropped = {AS_SOURCE_FINALIZER} | ({IN_GROUP_FINALIZER} if group_name else set())

        def kept(finalizer: str) -> bool:
            return finalizer not in dropped and (finalizer != BOUND_FINALIZER or keep_bound)

        remaining = [f for f in finalizers if kept(f)]
        if remaining != finalizers:
            fresh = self.view.snapshot(metadata.get("namespace", ""), metadata["name"])
            if fresh is None:
                return
            fresh["metadata"]["finalizers"] = [
                f for f in fresh["metadata"].get("finalizers") or [] if kept(f)
            ]
            self.rt.write(SNAPSHOT, "volumesnapshots", fresh, shared=True)

    def _restoring_from(self, snapshot: dict[str, Any]) -> bool:
        """isVolumeBeingCreatedFromSnapshot: a Pending PVC names it as its data source."""
        metadata = snapshot["metadata"]
        wanted = (metadata.get("namespace", ""), metadata["name"])
        for pvc in self.rt.list_view(CORE, "persistentvolumeclaims", metadata.get("namespace")):
            if (
                snapshot_source(pvc) == wanted
                and (pvc.get("status") or {}).get("phase", "Pending") == "Pending"
            ):
                return True
        return False


def _policy(content: dict[str, Any]) -> str:
    return str((content.get("spec") or {}).get("deletionPolicy") or "Delete")
