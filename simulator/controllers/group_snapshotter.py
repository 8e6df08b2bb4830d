"""The group snapshot part of the CSI snapshot controller (external-snapshotter's common
controller, `pkg/common-controller/groupsnapshot_controller_helper.go`).

A VolumeGroupSnapshot with `spec.source.selector` asks for one point-in-time cut of
the PVCs of its namespace that carry the selector's `matchLabels` (upstream lists
them with `labels.Set(selector.MatchLabels)`: `matchExpressions` are not
consulted, and a selector without `matchLabels` takes every PVC of the
namespace). Behaviour and messages follow upstream:

- Class: `spec.volumeGroupSnapshotClassName`, else the one VolumeGroupSnapshotClass
  marked `groupsnapshot.storage.kubernetes.io/is-default-class: "true"` whose
  driver is the first selected volume's, written into the spec. A missing class,
  no matching PVC, an unbound PVC, a non-CSI volume, or no or several defaults set
  `status.error` (`readyToUse` left as it is).
- Content: `groupsnapcontent-<group uid>` with `volumeGroupSnapshotRef`,
  `source.volumeHandles` (one per selected PVC), the class's driver and
  `deletionPolicy`. A volume of another driver than the class's, an unbound PVC or
  none at all sets `status.error` and `readyToUse: false`; the controller tries
  again when a PVC or class changes.
- Members: once the driver has cut the group (`status.volumeSnapshotInfoList` on
  the content, see `group_driver`), one VolumeSnapshot `snapshot-<sha256(group uid +
  volume handle)>` per volume (owner: the group; finalizer
  `volumesnapshot-in-group-protection`; `source.persistentVolumeClaimName`) bound to
  a VolumeSnapshotContent `snapcontent-<same sha256>` (annotation
  `groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle`, the group content's
  driver and `deletionPolicy`, status from the cut). The snapshot controller
  (`csi_snapshotter`) then shows each member's status, `volumeGroupSnapshotName`
  included.
- Status: `boundVolumeGroupSnapshotContentName`, `creationTime` (of the one cut, RFC
  3339 with microseconds as the members' own, see `csi_snapshotter`), `readyToUse`
  and `error` from the content; Events CreatingGroupSnapshot, GroupSnapshotCreated,
  GroupSnapshotReady.
- Finalizers: `volumegroupsnapshot-bound-protection` once bound;
  `volumegroupsnapshotcontent-bound-protection` on a bound content.
- Deletion: mark the content `volumegroupsnapshot-being-deleted`, delete it when its
  policy is Delete (the group keeps its finalizer until the content is gone), delete
  every member snapshot (a member cannot be deleted while its group exists: the
  snapshot controller refuses it), then drop the finalizer. With Retain the group
  content and the members' contents stay.
- A pre-provisioned group (`source.volumeGroupSnapshotContentName`) binds to that
  content when the content's `groupSnapshotHandles` are set and its
  `volumeGroupSnapshotRef` names the group.
"""

from __future__ import annotations

import hashlib
from typing import Any

from simulator.controllers.runtime import (
    CORE,
    GROUP_SNAPSHOT,
    SNAPSHOT,
    Index,
    Runtime,
    annotations_dict,
    rfc3339_from_nanos,
    rfc3339_seconds,
)
from simulator.controllers.storage import (
    ClaimsByHandle,
    StorageView,
    is_bound,
    is_csi_driver,
    is_default,
    is_deleting,
    volume_handle,
    volume_name,
)
from simulator.store import WatchEvent

QUEUE = "group-snapshot-controller"
UNBOUND = "group-snapshot-controller/unbound"
COMPONENT = "snapshot-controller"

DEFAULT_GROUP_CLASS = "groupsnapshot.storage.kubernetes.io/is-default-class"
GROUP_BOUND_FINALIZER = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-bound-protection"
GROUP_CONTENT_FINALIZER = (
    "groupsnapshot.storage.kubernetes.io/volumegroupsnapshotcontent-bound-protection"
)
GROUP_BEING_DELETED = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-deleted"
IN_GROUP_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-in-group-protection"
GROUP_HANDLE_ANNOTATION = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle"
GROUP_API_VERSION = f"{GROUP_SNAPSHOT}/v1"
_UPDATE_FAILED = "snapshot controller failed to update"

Key = tuple[str, str]


class GroupSnapshotError(Exception):
    """A step that failed the way upstream's does; the message is upstream's."""


def group_content_name(group: dict[str, Any]) -> str:
    return f"groupsnapcontent-{group['metadata']['uid']}"


def member_suffix(group_uid: str, handle: str) -> str:
    """sha256 of the group's uid and the volume handle: the members' names."""
    return hashlib.sha256((group_uid + handle).encode()).hexdigest()


def parent_group(snapshot: dict[str, Any]) -> str | None:
    """The VolumeGroupSnapshot a VolumeSnapshot is a member of (by owner reference)."""
    for ref in (snapshot.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "VolumeGroupSnapshot" and ref.get("apiVersion") == GROUP_API_VERSION:
            return str(ref.get("name") or "") or None
    return None


def format_selector(selector: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: `app=db,tier in (a,b)`, `<none>` when empty."""
    terms: list[tuple[str, str]] = []
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        terms.append((str(key), f"{key}={value}"))
    for expression in (selector or {}).get("matchExpressions") or []:
        key = str(expression.get("key", ""))
        operator = expression.get("operator")
        values = ",".join(sorted(str(v) for v in expression.get("values") or []))
        if operator == "In":
            terms.append((key, f"{key} in ({values})"))
        elif operator == "NotIn":
            terms.append((key, f"{key} notin ({values})"))
        elif operator == "Exists":
            terms.append((key, key))
        elif operator == "DoesNotExist":
            terms.append((key, f"!{key}"))
    if not terms:
        return "<none>"
    return ",".join(text for _, text in sorted(terms))


def _quoted(text: str) -> str:
    """Go's %q of an error message."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _waits_on_claims(event: WatchEvent) -> bool:
    """Whether a PVC change may move this group on: before its content is made (the PVCs
    it selects, bound or not) and while it is deleted (a restore from a member pending).
    A bound group's volumes are its content's handles: PVC changes no longer concern it.
    (Upstream retries a group that failed on its PVCs with backoff; here the PVC's event
    queues it again.)"""
    group = event.object
    if event.type == "DELETED":
        return False
    bound = (group.get("status") or {}).get("boundVolumeGroupSnapshotContentName")
    return not bound or is_deleting(group)


def _key(group: dict[str, Any]) -> str:
    metadata = group["metadata"]
    return f"{metadata.get('namespace', '')}/{metadata['name']}"


class GroupSnapshotController:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        # Groups by the namespace they select PVCs in: a PVC change there concerns them.
        self._by_namespace = Index()
        self._claims_by_handle = ClaimsByHandle(runtime)
        runtime.register(QUEUE, self.reconcile)
        runtime.register(UNBOUND, self._requeue_unbound)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        metadata = obj["metadata"]
        namespace = metadata.get("namespace", "")
        if key == (GROUP_SNAPSHOT, "volumegroupsnapshots"):
            group = (namespace, metadata["name"])
            self._by_namespace.update(group, [namespace] if _waits_on_claims(event) else [])
            self.rt.enqueue(QUEUE, group)
        elif key == (GROUP_SNAPSHOT, "volumegroupsnapshotcontents"):
            ref = (obj.get("spec") or {}).get("volumeGroupSnapshotRef") or {}
            if ref.get("name"):
                self.rt.enqueue(QUEUE, (ref.get("namespace", ""), ref["name"]))
        elif key == (CORE, "persistentvolumeclaims"):
            self._claims_by_handle.observe(event)
            for waiting_group in self._by_namespace.referrers(namespace):
                self.rt.enqueue(QUEUE, waiting_group)
        elif key == (GROUP_SNAPSHOT, "volumegroupsnapshotclasses"):
            self.rt.enqueue(UNBOUND, None)
        elif key == (SNAPSHOT, "volumesnapshots") and event.type == "DELETED":
            parent = parent_group(obj)
            if parent:
                self.rt.enqueue(QUEUE, (namespace, parent))

    def _requeue_unbound(self, _: None) -> None:
        """A class changed: groups that could not be bound may now be."""
        for group in self.rt.list_view(GROUP_SNAPSHOT, "volumegroupsnapshots"):
            if not (group.get("status") or {}).get("boundVolumeGroupSnapshotContentName"):
                metadata = group["metadata"]
                self.rt.enqueue(QUEUE, (metadata.get("namespace", ""), metadata["name"]))

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        group = self.rt.find(GROUP_SNAPSHOT, "volumegroupsnapshots", namespace, name)
        if group is None:
            return
        if is_deleting(group):
            self._process_deletion(group)
            return
        source = (group.get("spec") or {}).get("source") or {}
        if source.get("volumeGroupSnapshotContentName"):
            self._sync_pre_provisioned(group, str(source["volumeGroupSnapshotContentName"]))
            return
        if "selector" not in source:
            return  # the CRD's rules refuse this; nothing to do
        group_class = self._resolve_class(group)
        if group_class is None:
            return
        content = self._content(group_content_name(group))
        if content is not None and not self._points_back(content, group):
            self._error(
                group, True, "GroupSnapshotContentMisbound",
                f"VolumeGroupSnapshotContent [{content['metadata']['name']}] is bound to a "
                "different group snapshot",
            )
            return
        status = group.get("status") or {}
        if content is None and status.get("readyToUse") is True:
            self._error(
                group, True, "GroupSnapshotContentMissing", "VolumeGroupSnapshotContent is missing"
            )
            return
        group = self._ensure_finalizer(group, content)
        if content is None:
            self._create_content(group, group_class)
            return
        if ((content.get("spec") or {}).get("source") or {}).get("groupSnapshotHandles"):
            self._error(
                group, True, "GroupSnapshotHandleSet",
                f"GroupSnapshot handle should not be set in group snapshot content {_key(group)} "
                "for dynamic provisioning",
            )
            return
        self._create_members(group, content)
        self._sync_status(group, content)

    # ---- class ---------------------------------------------------------------------

    def _resolve_class(self, group: dict[str, Any]) -> dict[str, Any] | None:
        class_name = (group.get("spec") or {}).get("volumeGroupSnapshotClassName")
        if class_name:
            found = self.rt.view(GROUP_SNAPSHOT, "volumegroupsnapshotclasses", None, class_name)
            if found is None:
                self._error(
                    group, False, "GetGroupSnapshotClassFailed",
                    "failed to get group snapshot class with error "
                    f'volumegroupsnapshotclass.{GROUP_SNAPSHOT} "{class_name}" not found',
                )
            return found
        try:
            chosen = self._default_class(group)
        except GroupSnapshotError as exc:
            self._error(
                group, False, "SetDefaultGroupSnapshotClassFailed",
                f"Failed to set default group snapshot class with error {exc}",
            )
            return None
        group["spec"]["volumeGroupSnapshotClassName"] = chosen["metadata"]["name"]
        self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshots", group, shared=True)
        return None  # the spec change queues the group again

    def _default_class(self, group: dict[str, Any]) -> dict[str, Any]:
        claims = self._bound_claims(group)
        driver = self.view.driver_of(claims[0])
        if not is_csi_driver(driver):
            raise GroupSnapshotError(
                f"snapshotting non-CSI volumes is not supported, group snapshot:{_key(group)}"
            )
        defaults = [
            found
            for found in self.rt.list_view(GROUP_SNAPSHOT, "volumegroupsnapshotclasses")
            if found.get("driver") == driver and is_default(found, DEFAULT_GROUP_CLASS)
        ]
        if not defaults:
            raise GroupSnapshotError("cannot find default group snapshot class")
        if len(defaults) > 1:
            raise GroupSnapshotError(f"{len(defaults)} default snapshot classes were found")
        return defaults[0]

    # ---- volumes -------------------------------------------------------------------

    def _claims(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        """getClaimsFromVolumeGroupSnapshot: the PVCs carrying the selector's matchLabels."""
        selector = ((group.get("spec") or {}).get("source") or {}).get("selector") or {}
        wanted = selector.get("matchLabels") or {}
        found = [
            pvc
            for pvc in self.rt.list_view(
                CORE, "persistentvolumeclaims", group["metadata"].get("namespace", "")
            )
            if all(
                ((pvc["metadata"].get("labels") or {}).get(k)) == v for k, v in wanted.items()
            )
        ]
        if not found:
            raise GroupSnapshotError(
                f"label selector {format_selector(selector)} for group snapshot not applied to "
                "any PVC"
            )
        return sorted(found, key=lambda pvc: pvc["metadata"]["name"])

    def _bound_claims(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        """getVolumesFromVolumeGroupSnapshot: every selected PVC must be bound."""
        claims = self._claims(group)
        for pvc in claims:
            if not is_bound(pvc):
                raise GroupSnapshotError(
                    f"the PVC {pvc['metadata']['name']} is not yet bound to a PV, will not "
                    "attempt to take a group snapshot"
                )
        return claims

    # ---- content -------------------------------------------------------------------

    def _content(self, name: str) -> dict[str, Any] | None:
        return self.rt.find(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", None, name)

    @staticmethod
    def _points_back(content: dict[str, Any], group: dict[str, Any]) -> bool:
        ref = (content.get("spec") or {}).get("volumeGroupSnapshotRef") or {}
        metadata = group["metadata"]
        return (ref.get("name"), ref.get("namespace"), ref.get("uid")) == (
            metadata["name"], metadata.get("namespace"), metadata["uid"],
        )

    def _create_content(self, group: dict[str, Any], group_class: dict[str, Any]) -> None:
        failed = "failed to create group snapshot content with error "
        try:
            handles = self._volume_handles(group, group_class)
        except GroupSnapshotError as exc:
            self._error(group, True, "GroupSnapshotContentCreationFailed", failed + str(exc))
            return
        metadata = group["metadata"]
        content = {
            "apiVersion": GROUP_API_VERSION,
            "kind": "VolumeGroupSnapshotContent",
            "metadata": {"name": group_content_name(group)},
            "spec": {
                "volumeGroupSnapshotRef": {
                    "kind": "VolumeGroupSnapshot",
                    "namespace": metadata.get("namespace", ""),
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "apiVersion": GROUP_API_VERSION,
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "source": {"volumeHandles": handles},
                "volumeGroupSnapshotClassName": group_class["metadata"]["name"],
                "deletionPolicy": group_class.get("deletionPolicy") or "Delete",
                "driver": group_class.get("driver") or "",
            },
        }
        created = self.rt.create(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content)
        self.rt.record(
            group, "Normal", "CreatingGroupSnapshot",
            f"Waiting for a group snapshot {_key(group)} to be created by the CSI driver.",
            COMPONENT,
        )
        group = self._sync_status(group, created)
        self._ensure_finalizer(group, created)

    def _volume_handles(self, group: dict[str, Any], group_class: dict[str, Any]) -> list[str]:
        """getCreateGroupSnapshotInput and the driver checks of createGroupSnapshotContent."""
        try:
            claims = self._bound_claims(group)
        except GroupSnapshotError as exc:
            raise GroupSnapshotError(
                "failed to get input parameters to create group snapshot "
                f"{group['metadata']['name']}: {_quoted(str(exc))}"
            ) from None
        handles = []
        class_driver = str(group_class.get("driver") or "")
        for pvc in claims:
            driver = self.view.driver_of(pvc)
            if not is_csi_driver(driver):
                message = (
                    f"cannot snapshot a non-CSI volume for group snapshot {_key(group)}: "
                    f"{volume_name(pvc)}"
                )
                self.rt.record(
                    group, "Warning", "CreateGroupSnapshotContentFailed",
                    f"Cannot snapshot a non-CSI volume: {volume_name(pvc)}", COMPONENT,
                )
                raise GroupSnapshotError(message)
            if driver != class_driver:
                message = (
                    f"Volume CSI driver ({driver}) mismatch with VolumeGroupSnapshotClass "
                    f"({class_driver}) {_key(group)}: {volume_name(pvc)}"
                )
                self.rt.record(
                    group, "Warning", "CreateGroupSnapshotContentFailed", message, COMPONENT
                )
                raise GroupSnapshotError(f"{_UPDATE_FAILED} {_key(group)} on API server: {message}")
            handles.append(volume_handle(pvc))
        return handles

    def _sync_pre_provisioned(self, group: dict[str, Any], content_name: str) -> None:
        content = self._content(content_name)
        if content is None:
            self._error(
                group, True, "GroupSnapshotContentMissing", "VolumeGroupSnapshotContent is missing"
            )
            return
        spec = content.get("spec") or {}
        if not (spec.get("source") or {}).get("groupSnapshotHandles"):
            self._error(
                group, True, "GroupSnapshotContentMismatch",
                "VolumeGroupSnapshotContent is dynamically provisioned while expecting a "
                "pre-provisioned one",
            )
            return
        metadata = group["metadata"]
        ref = spec.get("volumeGroupSnapshotRef") or {}
        if (
            ref.get("name") != metadata["name"]
            or ref.get("namespace") != metadata.get("namespace")
            or (ref.get("uid") and ref.get("uid") != metadata["uid"])
        ):
            self._error(
                group, True, "GroupSnapshotContentMisbound",
                f"VolumeGroupSnapshotContent [{content_name}] is bound to a different group "
                "snapshot",
            )
            return
        group = self._ensure_finalizer(group, content)
        if not ref.get("uid"):
            spec["volumeGroupSnapshotRef"] = {**ref, "uid": metadata["uid"]}
            class_name = (group.get("spec") or {}).get("volumeGroupSnapshotClassName")
            if class_name:
                spec["volumeGroupSnapshotClassName"] = class_name
            content = self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content)
        self._sync_status(group, content)

    # ---- members -------------------------------------------------------------------

    def _create_members(self, group: dict[str, Any], content: dict[str, Any]) -> None:
        """createSnapshotsForGroupSnapshotContent: a snapshot and content per cut volume."""
        status = content.get("status") or {}
        group_handle = status.get("volumeGroupSnapshotHandle")
        infos = status.get("volumeSnapshotInfoList") or []
        if not group_handle or not infos:
            return
        for info in infos:
            self._create_member(group, content, str(group_handle), info)

    def _create_member(
        self, group: dict[str, Any], content: dict[str, Any], group_handle: str,
        info: dict[str, Any],
    ) -> None:
        metadata = group["metadata"]
        namespace = (content["spec"].get("volumeGroupSnapshotRef") or {}).get("namespace", "")
        handle = str(info.get("volumeHandle") or "")
        suffix = member_suffix(metadata["uid"], handle)
        snapshot_name, content_name = f"snapshot-{suffix}", f"snapcontent-{suffix}"
        pvc = self._claim_of(namespace, handle)
        member_content = self.view.content(content_name)
        if member_content is None:
            spec: dict[str, Any] = {
                "volumeSnapshotRef": {
                    "kind": "VolumeSnapshot", "name": snapshot_name, "namespace": namespace,
                },
                "deletionPolicy": content["spec"].get("deletionPolicy") or "Delete",
                "driver": content["spec"].get("driver") or "",
                "source": {"volumeHandle": handle},
            }
            if pvc is not None:
                spec["sourceVolumeMode"] = (pvc.get("spec") or {}).get("volumeMode") or (
                    "Filesystem"
                )
            member_content = self.rt.create(SNAPSHOT, "volumesnapshotcontents", {
                "apiVersion": f"{SNAPSHOT}/v1",
                "kind": "VolumeSnapshotContent",
                "metadata": {
                    "name": content_name,
                    "annotations": {GROUP_HANDLE_ANNOTATION: group_handle},
                },
                "spec": spec,
            })
        member = self.view.snapshot(namespace, snapshot_name)
        if member is None:
            member = self.rt.create(SNAPSHOT, "volumesnapshots", {
                "apiVersion": f"{SNAPSHOT}/v1",
                "kind": "VolumeSnapshot",
                "metadata": {
                    "name": snapshot_name,
                    "namespace": namespace,
                    "ownerReferences": [{
                        "apiVersion": GROUP_API_VERSION,
                        "kind": "VolumeGroupSnapshot",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                    }],
                    "finalizers": [IN_GROUP_FINALIZER],
                },
                "spec": {"source": {
                    "persistentVolumeClaimName": pvc["metadata"]["name"] if pvc else "",
                }},
            })
        ref = member_content["spec"].get("volumeSnapshotRef") or {}
        if ref.get("uid") != member["metadata"]["uid"]:
            member_content["spec"]["volumeSnapshotRef"] = {**ref, "uid": member["metadata"]["uid"]}
            member_content = self.rt.write(SNAPSHOT, "volumesnapshotcontents", member_content)
        if not (member.get("status") or {}).get("boundVolumeSnapshotContentName"):
            member["status"] = {"boundVolumeSnapshotContentName": content_name}
            self.rt.write_status(SNAPSHOT, "volumesnapshots", member, shared=True)
        if not (member_content.get("status") or {}).get("snapshotHandle"):
            member_content["status"] = {
                "snapshotHandle": info.get("snapshotHandle"),
                "volumeGroupSnapshotHandle": group_handle,
                "creationTime": info.get("creationTime"),
                "restoreSize": info.get("restoreSize"),
                "readyToUse": info.get("readyToUse") is True,
            }
            self.rt.write_status(SNAPSHOT, "volumesnapshotcontents", member_content, shared=True)

    def _claim_of(self, namespace: str, handle: str) -> dict[str, Any] | None:
        """findPersistentVolumeByCSIDriverHandle: the claim of the volume with this handle."""
        pvc = self._claims_by_handle.claim(handle, namespace)
        return pvc if is_bound(pvc) else None

    # ---- finalizers ----------------------------------------------------------------

    def _ensure_finalizer(
        self, group: dict[str, Any], content: dict[str, Any] | None
    ) -> dict[str, Any]:
        """checkandAddGroupSnapshotFinalizers: the bound finalizer once bound to a content."""
        finalizers = list(group["metadata"].get("finalizers") or [])
        bound = (group.get("status") or {}).get("boundVolumeGroupSnapshotContentName")
        if content is None or not bound or GROUP_BOUND_FINALIZER in finalizers:
            return group
        group["metadata"]["finalizers"] = [*finalizers, GROUP_BOUND_FINALIZER]
        return self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshots", group, owned=True)

    # ---- status --------------------------------------------------------------------

    def _sync_status(self, group: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        """updateGroupSnapshotStatus: the content's status, as the group shows it."""
        content_status = content.get("status") or {}
        previous = dict(group.get("status") or {})
        status = dict(previous)
        status.setdefault("boundVolumeGroupSnapshotContentName", content["metadata"]["name"])
        created = content_status.get("creationTime")
        if not status.get("creationTime") and created:
            status["creationTime"] = (
                rfc3339_from_nanos(created) if isinstance(created, int) else created
            )
        ready = content_status.get("readyToUse") is True
        if status.get("readyToUse") is not ready:
            status["readyToUse"] = ready
            if ready:
                status.pop("error", None)
        if content_status.get("error"):
            status["error"] = dict(content_status["error"])
        else:
            status.pop("error", None)
        if status == previous:
            return group
        group["status"] = status
        updated = self.rt.write_status(GROUP_SNAPSHOT, "volumegroupsnapshots", group)
        where = _key(group)
        if not previous.get("creationTime") and status.get("creationTime"):
            self.rt.record(
                updated, "Normal", "GroupSnapshotCreated",
                f"GroupSnapshot {where} was successfully created by the CSI driver.", COMPONENT,
            )
        if previous.get("readyToUse") is not True and ready:
            self.rt.record(
                updated, "Normal", "GroupSnapshotReady", f"GroupSnapshot {where} is ready to use.",
                COMPONENT,
            )
        return updated

    def _error(
        self, group: dict[str, Any], set_ready_false: bool, reason: str, message: str
    ) -> None:
        """updateGroupSnapshotErrorStatusWithEvent: written only when the message changes."""
        status = dict(group.get("status") or {})
        if (status.get("error") or {}).get("message") == message:
            return
        status["error"] = {"time": rfc3339_seconds(), "message": message}
        if set_ready_false:
            status["readyToUse"] = False
        group["status"] = status
        updated = self.rt.write_status(GROUP_SNAPSHOT, "volumegroupsnapshots", group, shared=True)
        self.rt.record(updated, "Warning", reason, message, COMPONENT)

    # ---- deletion ------------------------------------------------------------------

    def _process_deletion(self, group: dict[str, Any]) -> None:
        """processGroupSnapshotWithDeletionTimestamp."""
        finalizers = list(group["metadata"].get("finalizers") or [])
        if GROUP_BOUND_FINALIZER not in finalizers:
            return
        metadata = group["metadata"]
        namespace = metadata.get("namespace", "")
        content_name = (group.get("status") or {}).get("boundVolumeGroupSnapshotContentName")
        content = self._content(content_name) if content_name else None
        delete_content = False
        if content is not None and self._points_back(content, group):
            delete_content = (content["spec"].get("deletionPolicy") or "Delete") == "Delete"
        else:
            content = None
        members = [
            snapshot
            for snapshot in self.rt.list_view(SNAPSHOT, "volumesnapshots", namespace)
            if parent_group(snapshot) == metadata["name"]
        ]
        for member in members:
            if self._restoring_from(member):
                self.rt.record(
                    group, "Warning", "SnapshotDeletePending",
                    f"Snapshot {namespace}/{member['metadata']['name']} belonging to "
                    f"VolumeGroupSnapshot {_key(group)} is being used to restore a PVC",
                    COMPONENT,
                )
                return
        if content is not None:
            if annotations_dict(content).get(GROUP_BEING_DELETED) != "yes":
                annotations_dict(content)[GROUP_BEING_DELETED] = "yes"
                content = self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshotcontents", content)
            if delete_content and not is_deleting(content):
                self.rt.delete(
                    GROUP_SNAPSHOT, "volumegroupsnapshotcontents", None,
                    content["metadata"]["name"],
                )
        for member in members:
            if not is_deleting(member):
                self.rt.delete(SNAPSHOT, "volumesnapshots", namespace, member["metadata"]["name"])
        if content is not None and delete_content:
            return  # the finalizer stays until the driver has removed the content
        group["metadata"]["finalizers"] = [f for f in finalizers if f != GROUP_BOUND_FINALIZER]
        self.rt.write(GROUP_SNAPSHOT, "volumegroupsnapshots", group, shared=True)

    def _restoring_from(self, snapshot: dict[str, Any]) -> bool:
        """isVolumeBeingCreatedFromSnapshot: a Pending PVC names it as its data source."""
        metadata = snapshot["metadata"]
        for pvc in self.rt.list_view(CORE, "persistentvolumeclaims", metadata.get("namespace")):
            source = (pvc.get("spec") or {}).get("dataSource") or {}
            if (
                source.get("kind") == "VolumeSnapshot"
                and source.get("name") == metadata["name"]
                and (pvc.get("status") or {}).get("phase", "Pending") == "Pending"
            ):
                return True
        return False
