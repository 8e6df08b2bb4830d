"""`groupsnapshot.storage.k8s.io/v1` VolumeGroupSnapshots: create (retry-safe), follow to
the cut, find the members, delete; and the label that a group's selector matches.

A group selects the PVCs of its namespace by `spec.source.selector.matchLabels` (the
group snapshot controller reads nothing else): vmsnap writes one label per group on the
group's PVCs (`rules.naming.cut_label_key`) for the time of the cut. Once the driver has
cut the group, the controller makes one member VolumeSnapshot per PVC, named
`snapshot-<sha256>`, owned by the group, with `status.volumeGroupSnapshotName`; a member
cannot be deleted while its group exists: deleting the group deletes them.

Create is idempotent on the deterministic name: AlreadyExists of a group with the same
class and selector is success (a retried cut finds its own group).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cluster.apis import (
    VOLUME_GROUP_SNAPSHOT_CLASSES,
    VOLUME_GROUP_SNAPSHOT_CONTENTS,
    VOLUME_GROUP_SNAPSHOTS,
    VOLUME_SNAPSHOTS,
    KubeApis,
    core_path,
    custom_path,
)
from cluster.errors import AlreadyExists, Conflict, NotFound, translated_errors
from cluster.snapshots import parse_time, snapshot_metadata
from cluster.waiting import Objects, ParsedStates


@dataclass(frozen=True)
class GroupSnapshotState:
    """What a VolumeGroupSnapshot says about its cut."""

    name: str
    group_class: str | None = None
    selector: dict[str, str] = field(default_factory=dict)
    creation_time: datetime | None = None
    ready_to_use: bool = False
    error: str | None = None
    bound_content: str | None = None
    deleting: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    uid: str | None = None

    @property
    def cut(self) -> bool:
        return self.creation_time is not None

    @property
    def settled(self) -> bool:
        """Cut, or failed: nothing more to wait for in a freeze window."""
        return self.cut or self.error is not None


def group_snapshot_state(obj: Mapping[str, Any]) -> GroupSnapshotState:
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    error = status.get("error") or {}
    selector = ((spec.get("source") or {}).get("selector") or {}).get("matchLabels") or {}
    return GroupSnapshotState(
        name=str(metadata.get("name") or ""),
        group_class=spec.get("volumeGroupSnapshotClassName"),
        selector={str(k): str(v) for k, v in selector.items()},
        creation_time=parse_time(status.get("creationTime")),
        ready_to_use=bool(status.get("readyToUse")),
        error=((error.get("message") or "driver error") if isinstance(error, dict)
               else str(error)) if error else None,
        bound_content=status.get("boundVolumeGroupSnapshotContentName") or None,
        deleting=bool(metadata.get("deletionTimestamp")),
        labels=dict(metadata.get("labels") or {}),
        uid=metadata.get("uid") or None,
    )


def group_snapshot_body(
    namespace: str, name: str, group_class: str, selector: Mapping[str, str],
    labels: Mapping[str, str], owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The VolumeGroupSnapshot of the PVCs that carry `selector`, its class named."""
    if not name or not group_class or not selector:
        raise ValueError("a VolumeGroupSnapshot needs a name, a class and a selector")
    return {
        "apiVersion": VOLUME_GROUP_SNAPSHOTS.api_version,
        "kind": VOLUME_GROUP_SNAPSHOTS.kind,
        "metadata": snapshot_metadata(namespace, name, labels, owner),
        "spec": {
            "volumeGroupSnapshotClassName": group_class,
            "source": {"selector": {"matchLabels": dict(selector)}},
        },
    }


def member_of(snapshot: Mapping[str, Any]) -> str | None:
    """The VolumeGroupSnapshot a VolumeSnapshot is a member of: its status says, or (before
    the snapshot controller wrote it) its owner reference."""
    named = (snapshot.get("status") or {}).get("volumeGroupSnapshotName")
    if named:
        return str(named)
    for ref in (snapshot.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == VOLUME_GROUP_SNAPSHOTS.kind and str(
                ref.get("apiVersion", "")).startswith(f"{VOLUME_GROUP_SNAPSHOTS.group}/"):
            return str(ref.get("name") or "") or None
    return None


class GroupSnapshotOperations(KubeApis):
    """Typed operations on VolumeGroupSnapshots, their classes and contents, and the cut
    labels on PVCs."""

    def list_group_snapshot_classes(self) -> list[dict[str, Any]]:
        """Every VolumeGroupSnapshotClass; none when the group snapshot API is not there."""
        try:
            return list(self.list_custom(VOLUME_GROUP_SNAPSHOT_CLASSES).get("items") or [])
        except NotFound:
            return []

    def create_group_snapshot(
        self, namespace: str, name: str, group_class: str, selector: dict[str, str],
        labels: dict[str, str], owner: dict[str, Any] | None = None,
    ) -> GroupSnapshotState:
        """Create, or find the one a previous attempt created (same class and selector);
        Conflict for another group of that name, or one being deleted."""
        body = group_snapshot_body(namespace, name, group_class, selector, labels, owner)
        try:
            return group_snapshot_state(
                self.create_custom(VOLUME_GROUP_SNAPSHOTS, namespace, body))
        except AlreadyExists:
            existing = group_snapshot_state(
                self.get_custom(VOLUME_GROUP_SNAPSHOTS, namespace, name))
        if existing.group_class != group_class or existing.selector != selector:
            raise Conflict(
                f"VolumeGroupSnapshot {namespace}/{name} already exists with class "
                f"{existing.group_class!r} and selector {existing.selector}, not "
                f"{group_class!r} and {selector}", status=409, reason="AlreadyExists")
        if existing.deleting:
            raise Conflict(f"VolumeGroupSnapshot {namespace}/{name} is being deleted",
                           status=409, reason="Terminating")
        return existing

    def get_group_snapshot(self, namespace: str, name: str) -> GroupSnapshotState | None:
        obj = self.get_custom_or_none(VOLUME_GROUP_SNAPSHOTS, namespace, name)
        return None if obj is None else group_snapshot_state(obj)

    def list_group_snapshots(self, namespace: str | None,
                             label_selector: str = "") -> list[dict[str, Any]]:
        """The VolumeGroupSnapshots of a namespace (None: of every namespace)."""
        try:
            answer = self.list_custom(VOLUME_GROUP_SNAPSHOTS, namespace, label_selector)
        except NotFound:
            return []
        return [dict(item) for item in answer.get("items") or []]

    def delete_group_snapshot(self, namespace: str, name: str) -> bool:
        """Delete (the group snapshot controller deletes its members); False when gone."""
        return self.delete_custom(VOLUME_GROUP_SNAPSHOTS, namespace, name)

    def group_volume_handles(self, content: str) -> list[str] | None:
        """The volumes a group's content cut (`spec.source.volumeHandles`); None when the
        content is not there."""
        obj = self.get_custom_or_none(VOLUME_GROUP_SNAPSHOT_CONTENTS, "", content)
        if obj is None:
            return None
        handles = ((obj.get("spec") or {}).get("source") or {}).get("volumeHandles") or []
        return [str(h) for h in handles]

    def group_members_by_name(self, namespace: str, group: str, uid: str,
                              handles: list[str]) -> list[dict[str, Any]] | None:
        """The members of a group, one GET each by the name the group snapshot controller
        gives them (`snapshot-<sha256(group uid + volume handle)>`); None when one is not
        (yet) there or is not this group's: then only a list of the namespace finds them."""
        members = []
        for handle in handles:
            name = f"snapshot-{hashlib.sha256((uid + handle).encode()).hexdigest()}"
            obj = self.get_custom_or_none(VOLUME_SNAPSHOTS, namespace, name)
            if obj is None or member_of(obj) != group:
                return None
            members.append(dict(obj))
        return members

    def group_content_cut(self, content: str) -> bool:
        """Whether a group's content says the driver has cut it: `status.creationTime`
        and no `status.error` (the CSI snapshotter writes both as the driver answers,
        before the controller makes the members and shows the cut on the group)."""
        obj = self.get_custom_or_none(VOLUME_GROUP_SNAPSHOT_CONTENTS, "", content)
        status = (obj or {}).get("status") or {}
        return bool(status.get("creationTime")) and not status.get("error")

    def group_members(self, namespace: str, group: str) -> list[dict[str, Any]]:
        """The member VolumeSnapshots of a group, as the server has them now."""
        with translated_errors(f"list VolumeSnapshot {namespace}/"):
            listed = self.request_json("GET", custom_path(VOLUME_SNAPSHOTS, namespace))
        return [dict(item) for item in (listed or {}).get("items") or []
                if member_of(item) == group]

    def label_volume_snapshot(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        """Add labels to a VolumeSnapshot (a group's member: the controller named it)."""
        self.patch_custom(VOLUME_SNAPSHOTS, namespace, name, {"metadata": {"labels": labels}})

    def label_pvc(self, namespace: str, name: str, key: str, value: str | None) -> bool:
        """Set (or with None remove) one label of a PVC; False when the PVC is gone."""
        try:
            with translated_errors(f"label PersistentVolumeClaim {namespace}/{name}"):
                self.request_json("PATCH", core_path("persistentvolumeclaims", namespace, name),
                                  body={"metadata": {"labels": {key: value}}},
                                  content_type="application/merge-patch+json")
        except NotFound:
            return False
        return True

    def remove_pvc_label(self, namespace: str, name: str, key: str, *, uid: str,
                         value: str) -> bool:
        """Remove one label of a PVC and nothing else, from the PVC of `uid` only and only
        while the label still has `value`: a JSON patch that tests both before it removes.
        False when the PVC is gone; Invalid (422) when a test fails (the PVC made again
        under its name, or the label changed or gone meanwhile)."""
        pointer = "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1")
        operations = [{"op": "test", "path": "/metadata/uid", "value": uid},
                      {"op": "test", "path": pointer, "value": value},
                      {"op": "remove", "path": pointer}]
        try:
            with translated_errors(f"remove label {key} of PersistentVolumeClaim "
                                   f"{namespace}/{name}"):
                self.request_json("PATCH", core_path("persistentvolumeclaims", namespace, name),
                                  body=operations, content_type="application/json-patch+json")
        except NotFound:
            return False
        return True

    def pvcs_labelled(self, namespace: str | None, key: str) -> list[dict[str, Any]]:
        """The PVCs that carry label `key` (any value), in one namespace or all."""
        path = core_path("persistentvolumeclaims", namespace or None)
        with translated_errors(f"list PersistentVolumeClaim {namespace or ''}/ {key}"):
            listed = self.request_json("GET", path, query={"labelSelector": key})
        return [dict(item) for item in (listed or {}).get("items") or []]

    def watch_group_snapshots(
        self, namespace: str, names: list[str], timeout_seconds: float,
        on_change: Callable[[list[GroupSnapshotState]], None] | None = None,
        progress_interval_seconds: float = 1.0, label_selector: str = "",
    ) -> list[GroupSnapshotState]:
        """Return the moment every named group is cut (`status.creationTime`) or failed
        (`status.error`): a watch, so the last cut is seen within milliseconds. `on_change`
        as for `watch_volume_snapshots`; WaitTimeout on timeout, NotFound for a group
        that is missing or deleted."""
        ordered = list(dict.fromkeys(names))
        state_of = ParsedStates(group_snapshot_state)

        def states(objects: Objects) -> list[GroupSnapshotState]:
            return [state_of(objects[n]) for n in ordered if n in objects]

        def pending(objects: Objects) -> list[str]:
            return [f"{s.name} (not cut)" for s in states(objects) if not s.settled]

        watcher = self.watch_custom(
            VOLUME_GROUP_SNAPSHOTS, namespace, ordered, pending, kind="VolumeGroupSnapshot",
            what=f"VolumeGroupSnapshots in {namespace} to be cut",
            progress_interval_seconds=progress_interval_seconds, label_selector=label_selector)
        report = None if on_change is None else (lambda objects: on_change(states(objects)))
        return states(watcher.run(timeout_seconds, report))
