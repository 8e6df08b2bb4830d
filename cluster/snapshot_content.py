"""The snapshot content: a `vmsnap.io` VirtualMachineSnapshotContent, what a snapshot holds.

A clean copy of the VM as it was at the cut and, per volume, the PVC it used and the
VolumeSnapshot that holds its data: all a restore or clone needs, even after the VM or its
PVCs are gone. The content is owned by its snapshot record (deleted with it); its status
follows the VolumeSnapshots (the time of the last cut, ready when all of them are).

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from cluster.apis import KubeApis
from cluster.errors import AlreadyExists, Conflict
from cluster.lock import LOCK_ANNOTATION
from cluster.record_kinds import VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, k8s_time, patch_status
from cluster.snapshot_record import snapshot_owner_reference
from rules.models import VolumeSnapshotState

# Annotations that describe an object's past, not the object: left out of copies.
_NOISE_ANNOTATIONS = (
    LOCK_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
)


class VolumeBackup(BaseModel):
    """One volume of the content: the PVC it used and the VolumeSnapshot that holds it."""

    volume_name: str
    pvc_name: str
    volume_snapshot: str


def content_body(
    namespace: str,
    name: str,
    snapshot: str,
    snapshot_uid: str,
    vm: Mapping[str, Any],
    pvcs: Mapping[str, Mapping[str, Any]],
    backups: Sequence[VolumeBackup],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The content: a clean copy of the VM and, per volume, its PVC and VolumeSnapshot."""
    missing = [b.pvc_name for b in backups if b.pvc_name not in pvcs]
    if missing:
        raise ValueError(f"no PVC object for {', '.join(missing)}")
    return {
        "apiVersion": VIRTUAL_MACHINE_SNAPSHOT_CONTENTS.api_version,
        "kind": VIRTUAL_MACHINE_SNAPSHOT_CONTENTS.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [snapshot_owner_reference(snapshot, snapshot_uid)],
        },
        "spec": {
            "virtualMachineSnapshotName": snapshot,
            "source": {"virtualMachine": {
                "apiVersion": vm.get("apiVersion", "kubevirt.io/v1"),
                "kind": vm.get("kind", "VirtualMachine"),
                "metadata": _clean_metadata(vm.get("metadata") or {}, keep_uid=True),
                "spec": copy.deepcopy(dict(vm.get("spec") or {})),
            }},
            "volumeBackups": [
                {
                    "volumeName": b.volume_name,
                    "volumeSnapshotName": b.volume_snapshot,
                    "persistentVolumeClaim": {
                        "metadata": _clean_metadata(pvcs[b.pvc_name].get("metadata") or {}),
                        "spec": copy.deepcopy(dict(pvcs[b.pvc_name].get("spec") or {})),
                    },
                }
                for b in backups
            ],
        },
    }


def create_snapshot_content(apis: KubeApis, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create the content; the existing one if it belongs to the same snapshot (a retry)."""
    name = body["metadata"]["name"]
    try:
        return apis.create_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, body)
    except AlreadyExists:
        existing = apis.get_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name)
    wanted = body["spec"]["virtualMachineSnapshotName"]
    if (existing.get("spec") or {}).get("virtualMachineSnapshotName") != wanted:
        raise Conflict(
            f"VirtualMachineSnapshotContent {namespace}/{name} exists for another snapshot",
            status=409, reason="AlreadyExists",
        )
    return existing


def write_content_status(
    apis: KubeApis,
    namespace: str,
    name: str,
    volume_snapshots: Sequence[VolumeSnapshotState],
    error_message: str | None = None,
    now: datetime | None = None,
) -> None:
    """Status from the VolumeSnapshots: creationTime (the last cut), readyToUse (all ready)."""
    patch_status(apis, VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name,
                 content_status_body(volume_snapshots, error_message, now or datetime.now(UTC)))


def content_status_body(
    volume_snapshots: Sequence[VolumeSnapshotState], error_message: str | None, now: datetime
) -> dict[str, Any]:
    cut = [s.creation_time for s in volume_snapshots if s.creation_time is not None]
    all_cut = bool(volume_snapshots) and len(cut) == len(volume_snapshots)
    return {
        "creationTime": k8s_time(max(cut)) if all_cut else None,
        "readyToUse": bool(volume_snapshots) and all(s.ready_to_use for s in volume_snapshots),
        "error": {"message": error_message, "time": k8s_time(now)} if error_message else None,
        "volumeSnapshotStatus": [
            {
                "volumeSnapshotName": s.name,
                "creationTime": k8s_time(s.creation_time) if s.creation_time else None,
                "readyToUse": s.ready_to_use,
                **({"restoreSize": s.restore_size} if s.restore_size else {}),
                **({"error": {"message": s.error, "time": k8s_time(now)}} if s.error else {}),
            }
            for s in volume_snapshots
        ],
    }


def name_volume_snapshots(apis: KubeApis, namespace: str, name: str,
                          volume_snapshots: Mapping[str, str]) -> bool:
    """Write which VolumeSnapshot holds each volume (volume name -> VolumeSnapshot) into
    the content's `volumeBackups`: a group's members are named by the group snapshot
    controller, after the content was made. False when nothing changed."""
    content = apis.get_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name)
    backups = copy.deepcopy(list((content.get("spec") or {}).get("volumeBackups") or []))
    changed = False
    for backup in backups:
        wanted = volume_snapshots.get(str(backup.get("volumeName")))
        if wanted and backup.get("volumeSnapshotName") != wanted:
            backup["volumeSnapshotName"] = wanted
            changed = True
    if changed:
        apis.patch_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name,
                          {"spec": {"volumeBackups": backups}})
    return changed


def get_snapshot_content(apis: KubeApis, namespace: str, name: str) -> dict[str, Any] | None:
    return apis.get_custom_or_none(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name)


def delete_snapshot_content(apis: KubeApis, namespace: str, name: str) -> bool:
    return apis.delete_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name)


def _clean_metadata(metadata: Mapping[str, Any], keep_uid: bool = False) -> dict[str, Any]:
    """Name, namespace, labels and meaningful annotations; not the server's bookkeeping."""
    clean: dict[str, Any] = {"name": metadata.get("name", "")}
    if metadata.get("namespace"):
        clean["namespace"] = metadata["namespace"]
    if keep_uid and metadata.get("uid"):
        clean["uid"] = metadata["uid"]
    if metadata.get("labels"):
        clean["labels"] = dict(metadata["labels"])
    annotations = {
        key: value for key, value in (metadata.get("annotations") or {}).items()
        if not any(key == n or (n.endswith("/") and key.startswith(n)) for n in _NOISE_ANNOTATIONS)
    }
    if annotations:
        clean["annotations"] = annotations
    return clean
