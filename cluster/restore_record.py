"""The restore record: a `vmsnap.io` VirtualMachineRestore, what a restore did, shown by kubectl.

Created when the restore starts (AlreadyExists of the same restore is success:
a retried step), its status written through the status subresource as the
restore goes, and left in place afterwards, Succeeded or Failed, for the user.

In place, the VM as it was before the restore wrote it (its spec, and the restore
label and annotation it carried) is kept in the record's `status.targetBefore`, so that
a failed restore can put it back without the spec passing through Temporal's history;
it is cleared once the restore has succeeded, or failed and been undone.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from cluster.apis import KubeApis
from cluster.errors import AlreadyExists
from cluster.record_kinds import VIRTUAL_MACHINE_RESTORES, k8s_time, patch_status


class RestoreVolumeStatus(BaseModel):
    volume_name: str
    pvc_name: str
    volume_snapshot: str
    phase: str | None = None


class TargetBefore(BaseModel):
    """What the restore's undo needs of the VM it overwrote."""

    resource_version: str | None = None
    spec: dict[str, Any]
    restore_label: str | None = Field(default=None,
                                      description="the restore label the VM carried")
    restored_from: str | None = Field(
        default=None, description="the restored-from-snapshot annotation it carried")


class RestoreRecordStatus(BaseModel):
    phase: str
    stopped_vm: bool = False
    restore_time: datetime | None = None
    volumes: list[RestoreVolumeStatus] = []
    error_message: str | None = None
    error_type: str | None = None
    error_time: datetime | None = None
    cleanup_errors: list[str] = []


def restore_record_body(
    namespace: str, name: str, snapshot: str, target: str, running_vm_policy: str,
    labels: dict[str, str],
) -> dict[str, Any]:
    return {
        "apiVersion": VIRTUAL_MACHINE_RESTORES.api_version,
        "kind": VIRTUAL_MACHINE_RESTORES.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
            "virtualMachineSnapshotName": snapshot,
            "runningVmPolicy": running_vm_policy,
        },
    }


def create_restore_record(apis: KubeApis, body: dict[str, Any]) -> dict[str, Any]:
    """Create the record; the existing one when this restore already made it."""
    metadata = body["metadata"]
    try:
        return apis.create_custom(VIRTUAL_MACHINE_RESTORES, metadata["namespace"], body)
    except AlreadyExists:
        existing = apis.get_custom(VIRTUAL_MACHINE_RESTORES, metadata["namespace"],
                                   metadata["name"])
        if existing.get("spec") != body["spec"]:
            raise
        return existing


def restore_status_body(status: RestoreRecordStatus) -> dict[str, Any]:
    """The status as the CRD shapes it; absent fields are removed by the merge patch."""
    error: dict[str, Any] | None = None
    if status.error_message:
        error = {"message": status.error_message}
        if status.error_type:
            error["type"] = status.error_type
        if status.error_time:
            error["time"] = k8s_time(status.error_time)
    return {
        "phase": status.phase,
        "complete": status.phase == "Succeeded",
        "restoreTime": k8s_time(status.restore_time) if status.restore_time else None,
        "stoppedVm": status.stopped_vm,
        "restores": _volumes(status.volumes),
        "error": error,
        "cleanupErrors": list(status.cleanup_errors) or None,
        **({"targetBefore": None} if _undone_or_kept(status) else {}),
    }


def _undone_or_kept(status: RestoreRecordStatus) -> bool:
    """The saved VM is no longer needed: the restore succeeded, or failed and its undo ran
    without error (a failed undo keeps it, for a person to put back)."""
    return status.phase == "Succeeded" or (status.phase == "Failed"
                                           and not status.cleanup_errors)


def _volumes(volumes: Sequence[RestoreVolumeStatus]) -> list[dict[str, Any]]:
    out = []
    for v in volumes:
        entry = {"volumeName": v.volume_name, "persistentVolumeClaim": v.pvc_name,
                 "volumeSnapshotName": v.volume_snapshot}
        if v.phase:
            entry["phase"] = v.phase
        out.append(entry)
    return out


def write_restore_status(
    apis: KubeApis, namespace: str, name: str, status: RestoreRecordStatus
) -> dict[str, Any]:
    return patch_status(apis, VIRTUAL_MACHINE_RESTORES, namespace, name,
                        restore_status_body(status))


def save_target_before(apis: KubeApis, namespace: str, name: str, before: TargetBefore) -> None:
    """Keep the VM as it was in the record's status, before the restore writes it."""
    patch_status(apis, VIRTUAL_MACHINE_RESTORES, namespace, name, {"targetBefore": {
        "resourceVersion": before.resource_version, "spec": before.spec,
        "restoreLabel": before.restore_label, "restoredFrom": before.restored_from}})


def read_target_before(apis: KubeApis, namespace: str, name: str) -> TargetBefore | None:
    """The VM as it was before the restore wrote it; None when none was kept."""
    record = apis.get_custom_or_none(VIRTUAL_MACHINE_RESTORES, namespace, name)
    saved = ((record or {}).get("status") or {}).get("targetBefore")
    if not isinstance(saved, dict) or not isinstance(saved.get("spec"), dict):
        return None
    return TargetBefore(resource_version=saved.get("resourceVersion"), spec=saved["spec"],
                        restore_label=saved.get("restoreLabel"),
                        restored_from=saved.get("restoredFrom"))
