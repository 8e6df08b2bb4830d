"""The snapshot record: a `vmsnap.io` VirtualMachineSnapshot, what kubectl shows of a snapshot.

- The record is created in the VM's namespace and annotated with the workflow run that
  owns it: a retry of that run finds "its" record (AlreadyExists is success), anyone else
  gets AlreadyExists.
- Status goes through the status subresource, as a merge patch of the whole status
  (lists replace, cleared fields are sent as null). Condition transition times move only
  when a condition's status changes.
- The record owns its content and (with deletionPolicy Delete) its VolumeSnapshots through
  owner references (`snapshot_owner_reference`), so `kubectl delete` of the record
  garbage-collects them.
- Reading a record gives its owner and its users (the restores and clones registered on
  it, see `cluster.snapshot_users`), which decide whether it may be deleted.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from cluster.apis import KubeApis
from cluster.errors import AlreadyExists, Invalid
from cluster.lock import LockHolder
from cluster.record_kinds import (
    RUN_ID_ANNOTATION,
    USERS_ANNOTATION,
    VIRTUAL_MACHINE_SNAPSHOTS,
    WORKFLOW_ID_ANNOTATION,
    k8s_time,
    owner_reference,
    patch_status,
)
from rules.durations import format_go_duration

RecordPhase = Literal["InProgress", "Succeeded", "Failed", "Deleting", "Unknown"]


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


class RecordGroup(BaseModel):
    """A VolumeGroupSnapshot that cut some of the snapshot's disks at one point in time."""

    name: str
    group_class: str
    driver: str
    volumes: list[str]
    creation_time: datetime | None = None


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
    consistency: Literal["application", "filesystem", "crash"] | None = None
    groups: list[RecordGroup] = Field(default_factory=list)
    volume_consistency: Literal["group", "per-disk"] | None = None
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
    groups: list[str] = Field(default_factory=list)
    content_name: str | None
    owner: WorkflowRun | None
    users: list[LockHolder]
    deleting: bool
    resource_version: str | None = None


def snapshot_owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The owner reference to a snapshot record, for its content and VolumeSnapshots."""
    return owner_reference(VIRTUAL_MACHINE_SNAPSHOTS, name, uid)


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
        groups=[str(g["name"]) for g in status.get("volumeGroupSnapshots") or []
                if isinstance(g, dict) and g.get("name")],
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
    patch_status(apis, VIRTUAL_MACHINE_SNAPSHOTS, namespace, name, body)
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
        "consistency": status.consistency,
        "volumeGroupSnapshots": [
            {"name": g.name, "volumeGroupSnapshotClassName": g.group_class,
             "driver": g.driver, "volumes": list(g.volumes),
             "creationTime": k8s_time(g.creation_time) if g.creation_time else None}
            for g in status.groups
        ],
        "volumeConsistency": status.volume_consistency,
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
    patch_status(apis, VIRTUAL_MACHINE_SNAPSHOTS, namespace, name,
                 {"phase": "Deleting", "readyToUse": False, "conditions": conditions})


def delete_snapshot_record(apis: KubeApis, namespace: str, name: str) -> bool:
    """Delete the record (its owned content and VolumeSnapshots follow); False if gone."""
    return apis.delete_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)


def _users(annotations: Mapping[str, str]) -> list[LockHolder]:
    """The users `cluster.snapshot_users` registered; an unreadable annotation names none."""
    text = annotations.get(USERS_ANNOTATION)
    if not text:
        return []
    try:
        return [LockHolder.from_annotation(json.dumps(u)) for u in json.loads(text)]
    except (ValueError, TypeError, ValidationError):
        return []
