"""`snapshot.storage.k8s.io/v1` VolumeSnapshots: create (retry-safe), read, delete, follow.

Create is idempotent on a deterministic name: AlreadyExists for the same PVC
and class is success (a retried activity finds its own snapshot), for anything
else it is a Conflict. The wait for the cut is a watch (see `waiting.py`):
the guest stays frozen until it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from cluster.apis import VOLUME_SNAPSHOT_CLASSES, VOLUME_SNAPSHOTS, KubeApis
from cluster.errors import AlreadyExists, Conflict
from cluster.waiting import Objects, ParsedStates
from rules.models import VolumeSnapshotState

WaitTarget = Literal["cut", "ready"]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes it (`2026-01-02T03:04:05Z`), or None."""
    if not value:
        return None
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def volume_snapshot_state(obj: Mapping[str, Any]) -> VolumeSnapshotState:
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    error = status.get("error") or {}
    restore_size = status.get("restoreSize")
    return VolumeSnapshotState(
        name=str(metadata.get("name") or ""),
        creation_time=parse_time(status.get("creationTime")),
        ready_to_use=bool(status.get("readyToUse")),
        restore_size=None if restore_size is None else str(restore_size),
        error=(error.get("message") or None) if isinstance(error, dict) else str(error),
        bound_content=status.get("boundVolumeSnapshotContentName") or None,
        source_pvc=(spec.get("source") or {}).get("persistentVolumeClaimName"),
        snapshot_class=spec.get("volumeSnapshotClassName"),
        deleting=bool(metadata.get("deletionTimestamp")),
        labels=dict(metadata.get("labels") or {}),
    )


def snapshot_metadata(namespace: str, name: str, labels: Mapping[str, str],
                      owner: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata of a VolumeSnapshot or VolumeGroupSnapshot the cut creates: its labels,
    and its owner (the snapshot's record) when it has one."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return metadata


def volume_snapshot_body(
    namespace: str,
    name: str,
    pvc: str,
    snapshot_class: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The VolumeSnapshot for one PVC, with its class named explicitly (never the default)."""
    for field, value in (("name", name), ("pvc", pvc), ("snapshot_class", snapshot_class)):
        if not value:
            raise ValueError(f"a VolumeSnapshot needs a non-empty {field}")
    return {
        "apiVersion": VOLUME_SNAPSHOTS.api_version,
        "kind": VOLUME_SNAPSHOTS.kind,
        "metadata": snapshot_metadata(namespace, name, labels, owner),
        "spec": {
            "volumeSnapshotClassName": snapshot_class,
            "source": {"persistentVolumeClaimName": pvc},
        },
    }


def _pending_description(
    target: WaitTarget, state_of: Callable[[Mapping[str, Any]], VolumeSnapshotState],
) -> Callable[[Objects], list[str]]:
    def pending(objects: Objects) -> list[str]:
        waiting: list[str] = []
        for name, obj in objects.items():
            state = state_of(obj)
            done = state.cut if target == "cut" else state.ready_to_use
            if not done:
                detail = "not cut" if target == "cut" else "not ready"
                if state.error:
                    detail += f"; error: {state.error}"
                waiting.append(f"{name} ({detail})")
        return waiting

    return pending


class SnapshotOperations(KubeApis):
    """Typed operations on VolumeSnapshots and VolumeSnapshotClasses."""

    def create_volume_snapshot(
        self,
        namespace: str,
        name: str,
        pvc: str,
        snapshot_class: str,
        labels: dict[str, str],
        owner: dict[str, Any] | None = None,
    ) -> VolumeSnapshotState:
        """Create, or find the one a previous attempt created (same PVC and class).

        Conflict when a VolumeSnapshot of that name exists for another PVC or
        class, or is being deleted.
        """
        body = volume_snapshot_body(namespace, name, pvc, snapshot_class, labels, owner)
        try:
            return volume_snapshot_state(self.create_custom(VOLUME_SNAPSHOTS, namespace, body))
        except AlreadyExists:
            existing = self.get_custom(VOLUME_SNAPSHOTS, namespace, name)
        state = volume_snapshot_state(existing)
        if state.source_pvc != pvc or state.snapshot_class != snapshot_class:
            raise Conflict(
                f"VolumeSnapshot {namespace}/{name} already exists for PVC "
                f"{state.source_pvc!r} with class {state.snapshot_class!r}, "
                f"not PVC {pvc!r} with class {snapshot_class!r}",
                status=409, reason="AlreadyExists",
            )
        if state.deleting:
            raise Conflict(
                f"VolumeSnapshot {namespace}/{name} is being deleted; create it again once gone",
                status=409, reason="Terminating",
            )
        return state

    def get_volume_snapshot(self, namespace: str, name: str) -> VolumeSnapshotState | None:
        obj = self.get_custom_or_none(VOLUME_SNAPSHOTS, namespace, name)
        return None if obj is None else volume_snapshot_state(obj)

    def delete_volume_snapshot(self, namespace: str, name: str) -> bool:
        """Delete; False when already gone (the content follows its deletionPolicy)."""
        return self.delete_custom(VOLUME_SNAPSHOTS, namespace, name)

    def list_volume_snapshots(
        self, namespace: str, label_selector: str
    ) -> list[VolumeSnapshotState]:
        answer = self.list_custom(VOLUME_SNAPSHOTS, namespace, label_selector)
        return [volume_snapshot_state(item) for item in answer.get("items") or []]

    def list_volume_snapshot_classes(self) -> list[dict[str, Any]]:
        """Every VolumeSnapshotClass (cluster-scoped)."""
        return list(self.list_custom(VOLUME_SNAPSHOT_CLASSES).get("items") or [])

    def watch_volume_snapshots(
        self,
        namespace: str,
        names: list[str],
        until: WaitTarget,
        timeout_seconds: float,
        on_change: Callable[[list[VolumeSnapshotState]], None] | None = None,
        progress_interval_seconds: float = 5.0,
        label_selector: str = "",
    ) -> list[VolumeSnapshotState]:
        """Return the moment every named snapshot is cut (`status.creationTime`) or ready.

        `label_selector` narrows the list and watch to the snapshot's own objects: with
        hundreds of snapshots in a namespace, everyone else's events cost both sides CPU.

        A watch, not a poll: the last cut is seen within milliseconds.
        `on_change` gets the states (in `names` order) on every change and at
        least every `progress_interval_seconds`, so an activity can heartbeat;
        if it raises, the wait ends with that error. WaitTimeout (a
        TimeoutError) on timeout, NotFound if a snapshot is missing or deleted.
        """
        if until not in ("cut", "ready"):
            raise ValueError(f"until must be 'cut' or 'ready', not {until!r}")
        ordered = list(dict.fromkeys(names))
        state_of = ParsedStates(volume_snapshot_state)

        def states(objects: Objects) -> list[VolumeSnapshotState]:
            return [state_of(objects[n]) for n in ordered if n in objects]

        watcher = self.watch_custom(
            VOLUME_SNAPSHOTS, namespace, ordered, _pending_description(until, state_of),
            kind="VolumeSnapshot", what=f"VolumeSnapshots in {namespace} to be {until}",
            progress_interval_seconds=progress_interval_seconds, label_selector=label_selector)
        report = None if on_change is None else (lambda objects: on_change(states(objects)))
        return states(watcher.run(timeout_seconds, report))
