"""Activities of `RestoreVirtualMachine`: each one idempotent, so every step can be retried.

Objects are named by the workflow (deterministic), labelled with the restore
(`vmsnap.io/restore`), and the undo activities touch only objects carrying
that label: a restore never deletes the VM's old PVCs, nor a VM it did not make.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import cluster_errors
from activities.liveness import WorkflowLiveness
from activities.registration import implements
from cluster import record_kinds, snapshot_content, snapshot_record, snapshot_users
from cluster.client import Cluster
from cluster.errors import AlreadyExists, NotFound
from cluster.lock import LOCK_ANNOTATION, LockHolder
from cluster.pvcs import pvc_from_snapshot
from cluster.record_kinds import VIRTUAL_MACHINE_RESTORES
from cluster.restore_record import (
    RestoreRecordStatus,
    RestoreVolumeStatus,
    create_restore_record,
    restore_record_body,
    write_restore_status,
)
from cluster.waiting import WaitTimeout
from contracts import common as error_types
from contracts.common import SNAPSHOT_NOT_READY
from contracts.restore import (
    ADD_SNAPSHOT_USER,
    APPLY_RESTORED_VM,
    CREATE_RESTORE_RECORD,
    CREATE_RESTORED_PVCS,
    DELETE_RESTORED_PVCS,
    PREPARE_RESTORE,
    PUT_BACK_VM,
    PVC_NOT_BOUND,
    REMOVE_SNAPSHOT_USER,
    START_VM,
    STOP_VM,
    TARGET_EXISTS,
    VM_DID_NOT_STOP,
    WAIT_RESTORED_PVCS_BOUND,
    WRITE_RESTORE_STATUS,
    ApplyRestoredVmInput,
    PrepareRestoreInput,
    PutBackVmInput,
    PvcsInput,
    RestoredVolume,
    RestorePlan,
    RestoreRecordInput,
    SnapshotUserInput,
    VmPowerInput,
)
from rules.clone_spec import repoint_volumes
from rules.models import PvcState, VmState
from rules.naming import MAX_LABEL, MAX_NAME, SNAPSHOT_LABEL, bounded, label_value

RESTORE_LABEL = "vmsnap.io/restore"
RESTORED_FROM_ANNOTATION = "vmsnap.io/restored-from-snapshot"
_KEPT_METADATA = ("name", "namespace", "labels", "annotations")


def restored_pvc_name(restore: str, volume: str) -> str:
    """`{restore}-{volume}`: a new PVC per restore, so two restores never share one."""
    return bounded(f"{restore}-{volume}", MAX_NAME)


def _holder(operation: str) -> LockHolder:
    info = activity.info()
    return LockHolder(workflow_id=info.workflow_id or "", run_id=info.workflow_run_id or "",
                      operation=operation, since=datetime.now(UTC).replace(microsecond=0))


def read_ready_snapshot(
    cluster: Cluster, ns: str, snapshot: str
) -> tuple[snapshot_record.SnapshotRecord, dict[str, Any], list[dict[str, Any]]]:
    """The snapshot's record, VM copy and volume backups, if it is Succeeded and ready."""
    record = snapshot_record.get_snapshot_record(cluster, ns, snapshot)
    if record is None:
        raise _final(f"snapshot {ns}/{snapshot} not found", error_types.SNAPSHOT_NOT_FOUND)
    if record.deleting or record.phase != "Succeeded" or not record.ready_to_use:
        why = "being deleted" if record.deleting else (
            f"phase {record.phase or 'unknown'}, readyToUse {record.ready_to_use}")
        raise _final(f"snapshot {ns}/{snapshot} cannot be used: {why} (restore and clone "
                     "need a Succeeded snapshot that is ready to use)", SNAPSHOT_NOT_READY)
    content = (snapshot_content.get_snapshot_content(cluster, ns, record.content_name)
               if record.content_name else None)
    if content is None:
        raise _final(f"snapshot {ns}/{snapshot} has no content", SNAPSHOT_NOT_READY)
    spec = content.get("spec") or {}
    snapshot_vm = (spec.get("source") or {}).get("virtualMachine") or {}
    return record, dict(snapshot_vm), list(spec.get("volumeBackups") or [])


def plan_volumes(
    cluster: Cluster, ns: str, backups: list[dict[str, Any]], owner: str, owner_label: str,
    snapshot: str,
) -> list[RestoredVolume]:
    """One new PVC per backup, named `{owner}-{volume}`, labelled with its maker and
    annotated with the workflow that makes it (the orphan sweeper asks that workflow, not
    one guessed from the name)."""
    made_by = {record_kinds.WORKFLOW_ID_ANNOTATION: activity.info().workflow_id or ""}
    volumes = []
    for backup in backups:
        vs_name = backup["volumeSnapshotName"]
        vs = cluster.get_volume_snapshot(ns, vs_name)
        if vs is None or not vs.ready_to_use:
            raise _final(f"VolumeSnapshot {ns}/{vs_name} is "
                         f"{'missing' if vs is None else 'not ready to use'}",
                         SNAPSHOT_NOT_READY)
        pvc = backup.get("persistentVolumeClaim") or {}
        name = restored_pvc_name(owner, backup["volumeName"])
        body = pvc_from_snapshot(name, pvc, vs_name, vs.restore_size,
                                 labels={owner_label: label_value(owner),
                                         SNAPSHOT_LABEL: label_value(snapshot)},
                                 annotations=made_by)
        volumes.append(RestoredVolume(
            volume_name=backup["volumeName"],
            old_claim=str((pvc.get("metadata") or {}).get("name") or ""),
            volume_snapshot=vs_name, pvc_name=name, pvc_body=body))
    return volumes


def _final(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


def _stopped(state: VmState) -> bool:
    return not state.vmi_exists


class RestoreActivities:
    """The restore's activities on one Cluster (threads may share it)."""

    def __init__(self, cluster: Cluster, liveness: WorkflowLiveness | None = None) -> None:
        self.cluster = cluster
        self.liveness = liveness

    def all(self) -> list[Callable[..., object]]:
        return [self.prepare_restore, self.create_restore_record, self.write_restore_status,
                self.add_snapshot_user, self.remove_snapshot_user, self.stop_vm_and_wait,
                self.start_vm, self.create_restored_pvcs, self.wait_restored_pvcs_bound,
                self.delete_restored_pvcs, self.apply_restored_vm, self.put_back_vm]

    @implements(PREPARE_RESTORE)
    def prepare_restore(self, input: PrepareRestoreInput) -> RestorePlan:
        """Check the snapshot (Succeeded, ready, content and VolumeSnapshots present) and
        the target; plan one PVC per backed-up volume. Changes nothing."""
        ns = input.namespace
        with cluster_errors():
            record, snapshot_vm, backups = read_ready_snapshot(self.cluster, ns, input.snapshot)
            target = input.target or record.vm
            restore_name = bounded(f"{target}-restore-{input.stamp}", MAX_LABEL)
            state: VmState | None
            try:
                state, exists = self.cluster.vm_state(ns, target), True
            except NotFound:
                state, exists = None, False
            if exists and target != record.vm:
                raise _final(f"target VM {ns}/{target} exists; a restore to another VM makes "
                             "a new one (restore in place by leaving target out)",
                             TARGET_EXISTS)
            if not exists and target == record.vm and input.target is None:
                raise _final(f"VM {ns}/{target} no longer exists; name a target to restore "
                             "into a new VM", error_types.VM_NOT_FOUND)
            volumes = plan_volumes(self.cluster, ns, backups, restore_name, RESTORE_LABEL,
                                   input.snapshot)
        original = self.cluster.get_vm(ns, target) if exists else None
        return RestorePlan(source_vm=record.vm, target=target, restore_name=restore_name,
                           snapshot_vm=snapshot_vm, target_exists=exists,
                           target_vm=original,
                           target_running=bool(state and state.vmi_exists), volumes=volumes)

    @implements(CREATE_RESTORE_RECORD)
    def create_restore_record(self, input: RestoreRecordInput) -> bool:
        result = input.result
        body = restore_record_body(input.namespace, result.name, result.snapshot, result.target,
                                   "stop" if result.stopped_vm else "fail",
                                   {RESTORE_LABEL: label_value(result.name)})
        with cluster_errors():
            create_restore_record(self.cluster, body)
        return True

    @implements(WRITE_RESTORE_STATUS)
    def write_restore_status(self, input: RestoreRecordInput) -> bool:
        result = input.result
        status = RestoreRecordStatus(
            phase=result.phase, stopped_vm=result.stopped_vm,
            restore_time=result.finished_at if result.phase == "Succeeded" else None,
            volumes=[RestoreVolumeStatus(volume_name=v.volume_name, pvc_name=v.pvc_name,
                                         volume_snapshot=v.volume_snapshot, phase=v.phase)
                     for v in result.volumes],
            error_message=result.error, error_type=result.error_type,
            error_time=result.finished_at if result.error else None,
            cleanup_errors=result.cleanup_errors)
        try:
            with cluster_errors():
                write_restore_status(self.cluster, input.namespace, result.name, status)
        except ApplicationError:
            if self.cluster.get_custom_or_none(
                    VIRTUAL_MACHINE_RESTORES, input.namespace, result.name) is None:
                return False  # never made (refused before the record): nothing to write
            raise
        return True

    @implements(ADD_SNAPSHOT_USER)
    def add_snapshot_user(self, input: SnapshotUserInput) -> bool:
        """Register this run as a user of the snapshot: deletion refuses while it runs."""
        with cluster_errors(not_found=error_types.SNAPSHOT_NOT_FOUND):
            snapshot_users.add_snapshot_user(self.cluster, input.namespace, input.snapshot,
                                             _holder(input.operation))
        return True

    @implements(REMOVE_SNAPSHOT_USER)
    def remove_snapshot_user(self, input: SnapshotUserInput) -> bool:
        with cluster_errors():
            return snapshot_users.remove_snapshot_user(
                self.cluster, input.namespace, input.snapshot, _holder(input.operation))

    @implements(STOP_VM)
    def stop_vm_and_wait(self, input: VmPowerInput) -> bool:
        """Stop the VM and wait until its instance is gone (bounded); heartbeats meanwhile."""
        with cluster_errors(not_found=error_types.VM_NOT_FOUND):
            stopped = self.cluster.stop_vm(input.namespace, input.vm)
            try:
                self.cluster.wait_for_vm(
                    input.namespace, input.vm, _stopped, input.timeout_seconds,
                    on_poll=lambda s: activity.heartbeat(s.printable_status))
            except WaitTimeout as exc:
                raise _final(f"VM {input.namespace}/{input.vm} did not stop: {exc}",
                             VM_DID_NOT_STOP) from exc
        return stopped

    @implements(START_VM)
    def start_vm(self, input: VmPowerInput) -> bool:
        with cluster_errors(not_found=error_types.VM_NOT_FOUND):
            return self.cluster.start_vm(input.namespace, input.vm)

    @implements(CREATE_RESTORED_PVCS)
    def create_restored_pvcs(self, input: PvcsInput) -> list[str]:
        """Create each PVC (one from the same VolumeSnapshot already there is success)."""
        made = []
        with cluster_errors():
            for body in input.pvcs:
                made.append(self.cluster.create_pvc(input.namespace, body)["metadata"]["name"])
        return made

    @implements(WAIT_RESTORED_PVCS_BOUND)
    def wait_restored_pvcs_bound(self, input: PvcsInput) -> list[PvcState]:
        """Watch until every PVC is Bound, within `timeout_seconds` (then final)."""
        with cluster_errors():
            try:
                return self.cluster.watch_pvcs(
                    input.namespace, input.names, input.timeout_seconds,
                    on_change=lambda states: activity.heartbeat(
                        {s.name: s.phase for s in states}))
            except WaitTimeout as exc:
                raise _final(f"restored PVCs not Bound within {input.timeout_seconds:g}s: "
                             f"{exc}", PVC_NOT_BOUND) from exc

    @implements(DELETE_RESTORED_PVCS)
    def delete_restored_pvcs(self, input: PvcsInput) -> list[str]:
        """Delete the named PVCs that carry this restore's label (never any other)."""
        deleted = []
        with cluster_errors():
            for name in input.names:
                pvc = self.cluster.get_pvc(input.namespace, name)
                labels = ((pvc or {}).get("metadata") or {}).get("labels") or {}
                if pvc is None or labels.get(input.owner_label) != label_value(
                        input.restore_name or ""):
                    continue
                if self.cluster.delete_pvc(input.namespace, name):
                    deleted.append(name)
        return deleted

    @implements(APPLY_RESTORED_VM)
    def apply_restored_vm(self, input: ApplyRestoredVmInput) -> bool:
        """Write the snapshot's spec, pointed at the restored PVCs, into the target: replace
        the spec in place (metadata and lock kept, runStrategy kept), or create a new VM
        (runStrategy Halted)."""
        ns = input.namespace
        spec_holder: dict[str, Any] = {"spec": copy.deepcopy(input.snapshot_vm.get("spec") or {})}
        repoint_volumes(spec_holder, input.claims)
        spec = spec_holder["spec"]
        spec.pop("running", None)
        restore_label = {RESTORE_LABEL: label_value(input.restore_name)}
        with cluster_errors(not_found=error_types.VM_NOT_FOUND):
            if input.create:
                source_meta = input.snapshot_vm.get("metadata") or {}
                spec["runStrategy"] = "Halted"
                annotations = {k: v for k, v in (source_meta.get("annotations") or {}).items()
                               if k != LOCK_ANNOTATION}
                body = {"metadata": {
                    "name": input.target,
                    "labels": {**(source_meta.get("labels") or {}), **restore_label},
                    "annotations": {**annotations, RESTORED_FROM_ANNOTATION: input.snapshot}},
                    "spec": spec}
                try:
                    self.cluster.create_vm(ns, body)
                except AlreadyExists as exc:
                    existing = self.cluster.get_vm(ns, input.target)
                    labels = (existing.get("metadata") or {}).get("labels") or {}
                    if labels.get(RESTORE_LABEL) != restore_label[RESTORE_LABEL]:
                        raise _final(f"VM {ns}/{input.target} already exists",
                                     TARGET_EXISTS) from exc
                return True
            current = self.cluster.get_vm(ns, input.target)
            run_strategy = _run_strategy(current)
            spec["runStrategy"] = run_strategy
            metadata = {k: v for k, v in (current.get("metadata") or {}).items()
                        if k in (*_KEPT_METADATA, "resourceVersion")}
            metadata["labels"] = {**(metadata.get("labels") or {}), **restore_label}
            metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                       RESTORED_FROM_ANNOTATION: input.snapshot}
            self.cluster.replace_vm(ns, input.target, {
                "apiVersion": current.get("apiVersion"), "kind": current.get("kind"),
                "metadata": metadata, "spec": spec})
        return True

    @implements(PUT_BACK_VM)
    def put_back_vm(self, input: PutBackVmInput) -> bool:
        """Undo `apply_restored_vm` if it happened: the original spec back (in place), or
        the VM deleted (a new VM this restore made). False when there was nothing to undo."""
        ns = input.namespace
        with cluster_errors():
            try:
                current = self.cluster.get_vm(ns, input.target)
            except NotFound:
                return False
            metadata = dict(current.get("metadata") or {})
            labels = dict(metadata.get("labels") or {})
            if labels.get(RESTORE_LABEL) != label_value(input.restore_name):
                return False
            if input.original is None:
                return self.cluster.delete_vm(ns, input.target)
            original_meta = input.original.get("metadata") or {}
            labels = dict(original_meta.get("labels") or {})
            annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                           if k != RESTORED_FROM_ANNOTATION}
            before = (original_meta.get("annotations") or {}).get(RESTORED_FROM_ANNOTATION)
            if before is not None:
                annotations[RESTORED_FROM_ANNOTATION] = before
            kept = {k: v for k, v in metadata.items() if k in (*_KEPT_METADATA,
                                                               "resourceVersion")}
            kept["labels"], kept["annotations"] = labels, annotations
            self.cluster.replace_vm(ns, input.target, {
                "apiVersion": current.get("apiVersion"), "kind": current.get("kind"),
                "metadata": kept, "spec": copy.deepcopy(input.original.get("spec") or {})})
        return True


def _run_strategy(vm: dict[str, Any]) -> str:
    spec = vm.get("spec") or {}
    if spec.get("runStrategy"):
        return str(spec["runStrategy"])
    return "Always" if spec.get("running") else "Halted"


