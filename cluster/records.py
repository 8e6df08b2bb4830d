"""The project's records: `vmsnap.io/v1alpha1` VirtualMachineSnapshot and its content.

The CRDs are in `deploy/crds/`; their shapes follow KubeVirt's
`snapshot.kubevirt.io/v1beta1` kinds (same field names and phases).

- The snapshot record is created in the VM's namespace and annotated with
  the workflow run that owns it: a retry of that run finds "its" record
  (AlreadyExists is success), anyone else gets AlreadyExists.
- Status goes through the status subresource, as a merge patch of the whole
  status (lists replace, cleared fields are sent as null). Condition
  transition times move only when a condition's status changes.
- The content and (with deletionPolicy Delete) the VolumeSnapshots carry an
  owner reference to the snapshot record, so `kubectl delete` of the record
  garbage-collects them.
- Restore and clone register as users of a snapshot (an annotation), so a
  deletion can refuse while they run.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from cluster.apis import CustomResource, KubeApis
from cluster.errors import AlreadyExists, Conflict, Invalid, NotFound
from cluster.lock import LOCK_ANNOTATION, LockHolder
from rules.durations import format_go_duration
from rules.models import VolumeSnapshotState

GROUP = "vmsnap.io"
VERSION = "v1alpha1"
VIRTUAL_MACHINE_SNAPSHOTS = CustomResource(
    GROUP, VERSION, "vmsnapsnapshots", "VirtualMachineSnapshot"
)
VIRTUAL_MACHINE_SNAPSHOT_CONTENTS = CustomResource(
    GROUP, VERSION, "vmsnapcontents", "VirtualMachineSnapshotContent"
)

WORKFLOW_ID_ANNOTATION = "vmsnap.io/workflow-id"
RUN_ID_ANNOTATION = "vmsnap.io/run-id"
USERS_ANNOTATION = "vmsnap.io/in-use-by"
# Annotations that describe an object's past, not the object: left out of copies.
_NOISE_ANNOTATIONS = (
    LOCK_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
)

RecordPhase = Literal["InProgress", "Succeeded", "Failed", "Deleting", "Unknown"]
_ATTEMPTS = 5


class WorkflowRun(BaseModel):
    """The workflow run that owns a record."""

    workflow_id: str
    run_id: str


class SnapshotSpec(BaseModel):
    vm: str
    deletion_policy: Literal["Delete", "Retain"] = "Delete"
    failure_deadline_seconds: float = 300.0
    ready_deadline_seconds: float = 3600.0
    quiesce: Literal["auto", "required", "skip"] = "auto"


class ExcludedVolumeReason(BaseModel):
    volume_name: str
    reason: str


class SnapshotRecordStatus(BaseModel):
    """What the record's status says; written whole each time."""

    phase: RecordPhase
    ready_to_use: bool = False
    creation_time: datetime | None = None
    source_uid: str | None = None
    content_name: str | None = None
    error_message: str | None = None
    error_reason: str | None = None
    indications: list[str] = Field(default_factory=list)
    indication_messages: dict[str, str] = Field(default_factory=dict)
    included_volumes: list[str] = Field(default_factory=list)
    excluded_volumes: list[ExcludedVolumeReason] = Field(default_factory=list)
    volume_snapshots: list[str] = Field(default_factory=list)
    freeze_window_ms: int | None = None
    # When the phases began, as the workflow saw them: the conditions' lastTransitionTime
    # when the status is written without reading the previous one first.
    started_at: datetime | None = None
    succeeded_at: datetime | None = None
    ready_at: datetime | None = None
    finished_at: datetime | None = None


class SnapshotRecord(BaseModel):
    """A snapshot record as read back: what deletion, restore and clone need."""

    namespace: str
    name: str
    uid: str
    vm: str
    deletion_policy: Literal["Delete", "Retain"]
    phase: str | None
    ready_to_use: bool
    volume_snapshots: list[str]
    content_name: str | None
    owner: WorkflowRun | None
    users: list[LockHolder]
    deleting: bool
    resource_version: str | None = None


class VolumeBackup(BaseModel):
    """One volume of the content: the PVC it used and the VolumeSnapshot that holds it."""

    volume_name: str
    pvc_name: str
    volume_snapshot: str


def k8s_time(value: datetime) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes metav1.Time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_reference(resource: CustomResource, name: str, uid: str) -> dict[str, Any]:
    """An owner reference that makes the garbage collector delete the dependent with it."""
    return {"apiVersion": resource.api_version, "kind": resource.kind, "name": name,
            "uid": uid, "controller": True, "blockOwnerDeletion": True}


def snapshot_owner_reference(name: str, uid: str) -> dict[str, Any]:
    return owner_reference(VIRTUAL_MACHINE_SNAPSHOTS, name, uid)


# ---- the snapshot record ---------------------------------------------------------------


def snapshot_record_body(
    namespace: str, name: str, spec: SnapshotSpec, labels: Mapping[str, str], owner: WorkflowRun
) -> dict[str, Any]:
    return {
        "apiVersion": VIRTUAL_MACHINE_SNAPSHOTS.api_version,
        "kind": VIRTUAL_MACHINE_SNAPSHOTS.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {WORKFLOW_ID_ANNOTATION: owner.workflow_id,
                            RUN_ID_ANNOTATION: owner.run_id},
        },
        "spec": {
            "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": spec.vm},
            "deletionPolicy": spec.deletion_policy,
            "failureDeadline": format_go_duration(spec.failure_deadline_seconds),
            "readyDeadline": format_go_duration(spec.ready_deadline_seconds),
            "quiesce": spec.quiesce,
        },
    }


def create_snapshot_record(
    apis: KubeApis,
    namespace: str,
    name: str,
    spec: SnapshotSpec,
    labels: Mapping[str, str],
    owner: WorkflowRun,
) -> SnapshotRecord:
    """Create the record (status written separately); the existing one if `owner` made it.

    AlreadyExists when a record of that name belongs to anyone else: an
    existing snapshot is never taken over or overwritten.
    """
    body = snapshot_record_body(namespace, name, spec, labels, owner)
    try:
        return snapshot_record_from(apis.create_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, body))
    except AlreadyExists:
        existing = snapshot_record_from(apis.get_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name))
    if existing.owner != owner:
        made_by = existing.owner.workflow_id if existing.owner else "someone else"
        raise AlreadyExists(
            f"VirtualMachineSnapshot {namespace}/{name} already exists (phase "
            f"{existing.phase or 'unset'}, made by {made_by}); pick another name or delete it",
            status=409, reason="AlreadyExists",
        )
    return existing


def get_snapshot_record(apis: KubeApis, namespace: str, name: str) -> SnapshotRecord | None:
    obj = apis.get_custom_or_none(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)
    return None if obj is None else snapshot_record_from(obj)


def snapshot_record_from(obj: Mapping[str, Any]) -> SnapshotRecord:
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    annotations = metadata.get("annotations") or {}
    owner = None
    if annotations.get(WORKFLOW_ID_ANNOTATION) and annotations.get(RUN_ID_ANNOTATION):
        owner = WorkflowRun(workflow_id=annotations[WORKFLOW_ID_ANNOTATION],
                            run_id=annotations[RUN_ID_ANNOTATION])
    return SnapshotRecord(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        vm=str((spec.get("source") or {}).get("name") or ""),
        deletion_policy="Retain" if spec.get("deletionPolicy") == "Retain" else "Delete",
        phase=status.get("phase"),
        ready_to_use=bool(status.get("readyToUse")),
        volume_snapshots=list(status.get("volumeSnapshots") or []),
        content_name=status.get("virtualMachineSnapshotContentName"),
        owner=owner,
        users=_users(annotations),
        deleting=bool(metadata.get("deletionTimestamp")),
        resource_version=metadata.get("resourceVersion"),
    )


def write_snapshot_status(
    apis: KubeApis,
    namespace: str,
    name: str,
    status: SnapshotRecordStatus,
    *,
    owner: WorkflowRun | None = None,
    uid: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Write the whole status; False (and nothing written) when `owner` is given and the
    record belongs to another run. NotFound when the record does not exist.

    With `uid` (the record's, known to whoever made it) the status is written in one
    request, a JSON patch whose `test` of metadata.uid makes the server refuse it if the
    record is not that one any more; the conditions' times then come from the status's
    own phase times instead of the previous status. A refused test falls back to reading
    the record (another record of that name is not ours: False).
    """
    instant = now or datetime.now(UTC)
    if uid:
        body = _without_nulls(snapshot_status_body(status, {}, instant))
        patch: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid},
                                       {"op": "add", "path": "/status", "value": body}]
        try:
            apis.patch_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name, patch,
                              patch_type="json", subresource="status")
            return True
        except Invalid:
            current_uid = snapshot_record_from(
                apis.get_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)).uid
            if current_uid != uid:
                return False
            raise  # the record is ours: the status itself was refused
    current = apis.get_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)
    if owner is not None and snapshot_record_from(current).owner != owner:
        return False
    previous = current.get("status") or {}
    body = snapshot_status_body(status, previous, instant)
    _patch_status(apis, VIRTUAL_MACHINE_SNAPSHOTS, namespace, name, body)
    return True


def snapshot_status_body(
    status: SnapshotRecordStatus, previous: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The record's `status` as JSON; pure (tested without a server)."""
    error: dict[str, Any] | None = None
    if status.error_message:
        old = previous.get("error") or {}
        same = old.get("message") == status.error_message and old.get("time")
        error = {"message": status.error_message,
                 "time": old.get("time") if same else k8s_time(now)}
    indications = list(dict.fromkeys(status.indications))
    return {
        "phase": status.phase,
        "readyToUse": status.ready_to_use,
        "creationTime": k8s_time(status.creation_time) if status.creation_time else None,
        "sourceUID": status.source_uid,
        "virtualMachineSnapshotContentName": status.content_name,
        "error": error,
        "conditions": snapshot_conditions(
            list(previous.get("conditions") or []), status, now
        ),
        "indications": indications,
        "sourceIndications": [
            {"indication": i, "message": status.indication_messages.get(i, i)}
            for i in indications
        ],
        "snapshotVolumes": {
            "includedVolumes": list(dict.fromkeys(status.included_volumes)),
            "excludedVolumes": list(dict.fromkeys(v.volume_name for v in status.excluded_volumes)),
        },
        "excludedVolumeReasons": [
            {"volumeName": v.volume_name, "reason": v.reason} for v in status.excluded_volumes
        ],
        "volumeSnapshots": list(status.volume_snapshots),
        "freezeWindowMilliseconds": status.freeze_window_ms,
    }


def snapshot_conditions(
    previous: Sequence[Mapping[str, Any]], status: SnapshotRecordStatus, now: datetime
) -> list[dict[str, Any]]:
    """KubeVirt's Progressing / Ready / Failure conditions for a phase."""
    phase, ready = status.phase, status.ready_to_use
    message = status.error_message or ""
    wanted: list[tuple[str, str, str, str]] = []
    if phase == "InProgress":
        wanted.append(("Progressing", "True", "InProgress", "snapshot in progress"))
        wanted.append(("Ready", "False", "NotReady", "the cut is not taken yet"))
    elif phase == "Succeeded":
        wanted.append(("Progressing", "False", "Succeeded", "the cut is taken"))
        if ready:
            wanted.append(("Ready", "True", "Ready", "every VolumeSnapshot is ready to use"))
        else:
            wanted.append(("Ready", "False", "NotReady", message
                           or "waiting for the VolumeSnapshots to be ready to use"))
    elif phase == "Failed":
        wanted.append(("Progressing", "False", "Failed", "the snapshot failed"))
        wanted.append(("Ready", "False", "Failed", "the snapshot failed"))
        wanted.append(("Failure", "True", status.error_reason or "Failed", message))
    elif phase == "Deleting":
        wanted.append(("Progressing", "False", "Deleting", "the snapshot is being deleted"))
        wanted.append(("Ready", "False", "Deleting", "the snapshot is being deleted"))
    else:
        wanted.append(("Ready", "Unknown", "Unknown", message or "state unknown"))
    before = {str(c.get("type")): c for c in previous}
    conditions = []
    for kind, value, reason, text in wanted:
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == value else None
        if since is None:
            began = _transition_time(status, kind, value)
            since = k8s_time(began) if began is not None else None
        conditions.append({
            "type": kind, "status": value, "reason": reason, "message": text,
            "lastTransitionTime": since or k8s_time(now),
        })
    return conditions


def _without_nulls(body: dict[str, Any]) -> dict[str, Any]:
    """The status as a whole object: a null member is an absent one (as a merge patch
    reads it), since a JSON patch would store the null and the schema refuses it."""
    return {k: v for k, v in body.items() if v is not None}


def _transition_time(status: SnapshotRecordStatus, kind: str, value: str) -> datetime | None:
    """When condition `kind` took `value`, from the phase times the status carries."""
    if kind == "Progressing":
        if value == "True":
            return status.started_at
        return status.succeeded_at if status.phase == "Succeeded" else status.finished_at
    if kind == "Ready":
        return status.ready_at if value == "True" else status.started_at
    if kind == "Failure":
        return status.finished_at
    return None


def mark_snapshot_deleting(
    apis: KubeApis, namespace: str, name: str, now: datetime | None = None
) -> None:
    """Phase Deleting (the rest of the status kept): restore and clone stop accepting it."""
    current = apis.get_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)
    previous = current.get("status") or {}
    conditions = snapshot_conditions(
        list(previous.get("conditions") or []),
        SnapshotRecordStatus(phase="Deleting"),
        now or datetime.now(UTC),
    )
    _patch_status(apis, VIRTUAL_MACHINE_SNAPSHOTS, namespace, name,
                  {"phase": "Deleting", "readyToUse": False, "conditions": conditions})


def delete_snapshot_record(apis: KubeApis, namespace: str, name: str) -> bool:
    """Delete the record (its owned content and VolumeSnapshots follow); False if gone."""
    return apis.delete_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)


# ---- users: restore and clone read a snapshot while it must not be deleted ------------


def add_snapshot_user(
    apis: KubeApis, namespace: str, name: str, user: LockHolder
) -> SnapshotRecord:
    """Register `user` (idempotent per run); NotFound if the record does not exist."""
    return _change_users(apis, namespace, name, lambda users: [
        *[u for u in users if not u.same_run(user)], user])


def remove_snapshot_user(apis: KubeApis, namespace: str, name: str, user: LockHolder) -> bool:
    """Unregister `user`; False when the record is gone."""
    try:
        _change_users(apis, namespace, name,
                      lambda users: [u for u in users if not u.same_run(user)])
    except NotFound:
        return False
    return True


def remove_stale_snapshot_users(
    apis: KubeApis, namespace: str, name: str, is_alive: Callable[[LockHolder], bool]
) -> list[LockHolder]:
    """Drop users that no longer run; the live ones are returned."""
    live: list[LockHolder] = []

    def keep_live(users: list[LockHolder]) -> list[LockHolder]:
        live[:] = [u for u in users if is_alive(u)]
        return list(live)

    _change_users(apis, namespace, name, keep_live)
    return live


def _users(annotations: Mapping[str, str]) -> list[LockHolder]:
    text = annotations.get(USERS_ANNOTATION)
    if not text:
        return []
    try:
        return [LockHolder.from_annotation(json.dumps(u)) for u in json.loads(text)]
    except (ValueError, TypeError, ValidationError):
        return []


def _change_users(
    apis: KubeApis,
    namespace: str,
    name: str,
    change: Callable[[list[LockHolder]], list[LockHolder]],
) -> SnapshotRecord:
    for _ in range(_ATTEMPTS):
        obj = apis.get_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)
        record = snapshot_record_from(obj)
        users = change(list(record.users))
        if [u.to_annotation() for u in users] == [u.to_annotation() for u in record.users]:
            return record
        value = ("[" + ",".join(u.to_annotation() for u in users) + "]") if users else None
        patch = {"metadata": {"resourceVersion": record.resource_version,
                              "annotations": {USERS_ANNOTATION: value}}}
        try:
            return snapshot_record_from(
                apis.patch_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name, patch))
        except Conflict:
            continue
    raise Conflict(f"VirtualMachineSnapshot {namespace}/{name} kept changing",
                   status=409, reason="Conflict")


# ---- the content ------------------------------------------------------------------------


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
    _patch_status(apis, VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name,
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


def get_snapshot_content(apis: KubeApis, namespace: str, name: str) -> dict[str, Any] | None:
    return apis.get_custom_or_none(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name)


def delete_snapshot_content(apis: KubeApis, namespace: str, name: str) -> bool:
    return apis.delete_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, namespace, name)


# ---- helpers ----------------------------------------------------------------------------


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


def _patch_status(
    apis: KubeApis, resource: CustomResource, namespace: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    return apis.patch_custom(resource, namespace, name, {"status": status}, subresource="status")
