"""Activities of `RestoreVirtualMachine`: each one idempotent, so every step can be retried.

Objects are named by the workflow (deterministic), labelled with the restore
(`vmsnap.io/restore`), and the undo activities touch only objects carrying
that label: a restore never deletes the VM's old PVCs, nor a VM it did not make.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import cluster_errors
from activities.liveness import WorkflowLiveness
from activities.registration import implements
from activities.vm_locking import leased_holder, run_holder, run_is_open, take_vm_lock
from cluster import record_kinds, snapshot_content, snapshot_record, snapshot_users
from cluster.client import Cluster
from cluster.errors import AlreadyExists, ClusterError, NotFound
from cluster.lock import LOCK_ANNOTATION, LockHolder, release_vm_lock
from cluster.pvcs import pvc_from_snapshot
from cluster.record_kinds import VIRTUAL_MACHINE_RESTORES
from cluster.restore_record import (
    RestoreRecordStatus,
    RestoreVolumeStatus,
    TargetBefore,
    create_restore_record,
    read_target_before,
    restore_record_body,
    save_target_before,
    write_restore_status,
)
from cluster.vm_revisions import revision_names
from cluster.waiting import WaitTimeout
from contracts import common as error_types
from contracts.admission import PATCH_NOT_ALLOWED
from contracts.common import SNAPSHOT_NOT_READY
from contracts.restore import (
    ADD_SNAPSHOT_USER,
    APPLY_RESTORED_VM,
    CREATE_RESTORE_RECORD,
    CREATE_RESTORED_PVCS,
    DELETE_RESTORED_PVCS,
    INVALID_IDENTITY,
    PREPARE_RESTORE,
    PUT_BACK_VM,
    PVC_EXISTS,
    PVC_NOT_BOUND,
    REMOVE_SNAPSHOT_USER,
    START_VM,
    STOP_VM,
    TARGET_EXISTS,
    TARGET_NOT_KEPT,
    VM_DID_NOT_STOP,
    VM_RUNNING,
    VOLUMES_NOT_IN_SNAPSHOT,
    WAIT_RESTORED_PVCS_BOUND,
    WAIT_VM_STOPPED,
    WRITE_RESTORE_STATUS,
    ApplyRestoredVmInput,
    CreatePvcsInput,
    PrepareRestoreInput,
    PutBackVmInput,
    PvcsInput,
    RestoredVolume,
    RestorePlan,
    RestoreRecordInput,
    SnapshotSource,
    SnapshotUserInput,
    VmPowerInput,
)
from rules.clone_spec import CloneSpecError, new_identity
from rules.models import PvcState, VmState
from rules.naming import MAX_LABEL, RESTORE_LABEL, SNAPSHOT_LABEL, bounded, label_value
from rules.patch_policy import added_credentials
from rules.restored_volumes import (
    POPULATED_FOR,
    WAIT_FOR_FIRST_CONSUMER,
    carried_metadata,
    is_template_backed,
    restored_pvc_name,
    restored_spec,
    template_names,
    templates_for,
    volume_named,
    volumes_without_backup,
)
from rules.volumes import BACKEND_STORAGE_LABEL, backend_volume_name

RESTORED_FROM_ANNOTATION = "vmsnap.io/restored-from-snapshot"
# How often a wait for PVCs heartbeats while nothing changes: a cancel reaches the
# activity only through a heartbeat's answer and is raised in its thread only when
# the watch returns, so this bounds how late a cancelled restore or clone stops waiting.
PVC_WAIT_PROGRESS_SECONDS = 1.0


@dataclass(frozen=True)
class SnapshotCopy:
    """A ready snapshot as restore and clone read it: its record, the reference to its
    content, and the content's copy of the VM and its volume backups."""

    record: snapshot_record.SnapshotRecord
    source: SnapshotSource
    vm: dict[str, Any]
    backups: list[dict[str, Any]]


def read_ready_snapshot(cluster: Cluster, ns: str, snapshot: str) -> SnapshotCopy:
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
    if content is None or record.content_name is None:
        raise _final(f"snapshot {ns}/{snapshot} has no content", SNAPSHOT_NOT_READY)
    spec = content.get("spec") or {}
    snapshot_vm = dict((spec.get("source") or {}).get("virtualMachine") or {})
    source = SnapshotSource(
        namespace=ns, snapshot=snapshot, content_name=record.content_name,
        content_uid=str((content.get("metadata") or {}).get("uid") or ""),
        vm_uid=(snapshot_vm.get("metadata") or {}).get("uid"))
    return SnapshotCopy(record, source, snapshot_vm, list(spec.get("volumeBackups") or []))


def read_snapshot_copy(cluster: Cluster, source: SnapshotSource) -> SnapshotCopy:
    """The copy a plan refers to, read again: the same content (uid), still ready."""
    found = read_ready_snapshot(cluster, source.namespace, source.snapshot)
    if (found.source.content_name, found.source.content_uid) != (source.content_name,
                                                                 source.content_uid):
        raise _final(f"snapshot {source.namespace}/{source.snapshot}: its content "
                     f"{source.content_name} was made again since this run planned from it",
                     SNAPSHOT_NOT_READY)
    return found


@dataclass(frozen=True)
class PlannedPvc:
    volume: RestoredVolume
    body: dict[str, Any]


def plan_volumes(
    cluster: Cluster, ns: str, backups: list[dict[str, Any]], owner: str, owner_label: str,
    snapshot: str, snapshot_vm: dict[str, Any], *, target: str,
    policy: str = "RandomizeNames", fresh_state: bool = False,
) -> list[PlannedPvc]:
    """One new PVC per backup (`rules.restored_volumes` names it), labelled with its maker
    and annotated with the workflow that makes it (the orphan sweeper asks that workflow,
    not one guessed from the name). It carries what the source PVC's metadata says about
    its data; a DataVolume template's volume gets CDI's `populatedFor`, so the renamed
    template's DataVolume adopts it. Whether its class binds only for a consumer
    (WaitForFirstConsumer) is noted: such a PVC stays Pending until the VM runs. The
    bodies stay in the worker: the plan is made again when the PVCs are created.

    The VM's persistent TPM/EFI state claim is restored as the target's own (label
    `persistent-state-for: <target>`, as KubeVirt's restore labels it), or left out with
    `fresh_state` (a clone that starts with a fresh one)."""
    made_by = {record_kinds.WORKFLOW_ID_ANNOTATION: activity.info().workflow_id or ""}
    state_volume = backend_volume_name(str((snapshot_vm.get("metadata") or {}).get("name")))
    binding_modes: dict[str, str | None] = {}
    planned = []
    for backup in backups:
        vs_name = backup["volumeSnapshotName"]
        vs = cluster.get_volume_snapshot(ns, vs_name)
        if vs is None or not vs.ready_to_use:
            raise _final(f"VolumeSnapshot {ns}/{vs_name} is "
                         f"{'missing' if vs is None else 'not ready to use'}",
                         SNAPSHOT_NOT_READY)
        pvc = backup.get("persistentVolumeClaim") or {}
        volume = str(backup["volumeName"])
        if volume == state_volume and fresh_state:
            continue
        name = restored_pvc_name(owner, target, volume, policy)
        data_volume = is_template_backed(snapshot_vm, volume)
        labels, annotations = carried_metadata(pvc)
        if volume == state_volume:
            labels[BACKEND_STORAGE_LABEL] = target
        annotations.update(made_by)
        if data_volume:
            annotations[POPULATED_FOR] = name
        body = pvc_from_snapshot(name, pvc, vs_name, vs.restore_size,
                                 labels={**labels, owner_label: label_value(owner),
                                         SNAPSHOT_LABEL: label_value(snapshot)},
                                 annotations=annotations)
        storage_class = str((pvc.get("spec") or {}).get("storageClassName") or "")
        if storage_class and storage_class not in binding_modes:
            found = cluster.get_storage_class(storage_class)
            binding_modes[storage_class] = (found or {}).get("volumeBindingMode")
        planned.append(PlannedPvc(RestoredVolume(
            volume_name=volume,
            old_claim=str((pvc.get("metadata") or {}).get("name") or ""),
            volume_snapshot=vs_name, pvc_name=name, data_volume=data_volume,
            waits_for_consumer=binding_modes.get(storage_class) == WAIT_FOR_FIRST_CONSUMER),
            body))
    return planned


def refuse_missing_volumes(ns: str, snapshot: str, missing: list[str], policy: str,
                           what: str) -> None:
    """A new VM from a snapshot that left a disk out would share the source's PVC: refused,
    unless the caller drops those disks; a VM left with no disk at all is refused too."""
    if missing and policy != "drop":
        raise _final(
            f"snapshot {ns}/{snapshot} left out the disks {', '.join(missing)}; {what} "
            "would use the source VM's PVCs for them. Snapshot them (give their storage a "
            "VolumeSnapshotClass) or ask to leave them out (missing_volumes: drop)",
            VOLUMES_NOT_IN_SNAPSHOT)


def refuse_added_credentials(source: dict[str, Any], body: dict[str, Any], what: str) -> None:
    """The VM about to be created may reach nothing its source did not: no credential or
    host volume, Secret-fed cloud-init, access credential or sidecar annotation of its
    own (the patch policy's second line, on the object itself)."""
    added = added_credentials(source, body)
    if added:
        raise _final(f"{what} would have what its source did not: {'; '.join(added)}; "
                     "refused (docs/security.md)", PATCH_NOT_ALLOWED)


def vm_owner(vm: dict[str, Any]) -> dict[str, Any]:
    """An owner reference to `vm` that makes the garbage collector delete with it."""
    metadata = vm.get("metadata") or {}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "name": metadata.get("name"), "uid": metadata.get("uid"),
            "controller": True, "blockOwnerDeletion": True}


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
                self.delete_restored_pvcs, self.apply_restored_vm, self.put_back_vm,
                self.wait_vm_stopped]

    @implements(PREPARE_RESTORE)
    def prepare_restore(self, input: PrepareRestoreInput) -> RestorePlan:
        """Check the snapshot (Succeeded, ready, content and VolumeSnapshots present), the
        target and the disks the snapshot left out; plan one PVC per backed-up volume.
        Changes nothing."""
        ns = input.namespace
        with cluster_errors():
            found = read_ready_snapshot(self.cluster, ns, input.snapshot)
            target = input.target or found.record.vm
        locked = self._lock_target(ns, target, input.lock_lease_seconds)
        try:
            return self._plan(input, found, target)
        except BaseException:
            if locked is not None:
                with contextlib.suppress(ClusterError):
                    release_vm_lock(self.cluster, ns, target, locked)
            raise

    def _lock_target(self, ns: str, target: str,
                     lease_seconds: float | None) -> LockHolder | None:
        """The target's lock, before the plan reads the VM and its disks, when asked and
        the VM exists: nothing changes the VM between the plan and the restore."""
        if lease_seconds is None:
            return None
        holder = leased_holder(self.cluster, "restore", lease_seconds)
        try:
            take_vm_lock(self.cluster, ns, target, holder, run_is_open(self.liveness))
        except ApplicationError as err:
            if err.type == error_types.VM_NOT_FOUND:
                return None  # a new VM: nothing to lock (the plan says what else it needs)
            raise
        return holder

    def _plan(self, input: PrepareRestoreInput, found: SnapshotCopy,
              target: str) -> RestorePlan:
        ns = input.namespace
        with cluster_errors():
            record, snapshot_vm, backups = found.record, found.vm, found.backups
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
            missing = volumes_without_backup(snapshot_vm, [b["volumeName"] for b in backups])
            if not exists:
                refuse_missing_volumes(ns, input.snapshot, missing, input.missing_volumes,
                                       f"a new VM {target}")
            volumes = [p.volume for p in plan_volumes(
                self.cluster, ns, backups, restore_name, RESTORE_LABEL, input.snapshot,
                snapshot_vm, target=target, policy=input.volume_restore_policy)]
            if not exists and missing and not volumes:
                raise _final(f"snapshot {ns}/{input.snapshot} holds none of the VM's disks "
                             f"({', '.join(missing)} left out): nothing to restore",
                             VOLUMES_NOT_IN_SNAPSHOT)
            self._refuse_taken_names(ns, restore_name, volumes)
            original = self.cluster.get_vm(ns, target) if exists else None
        kept = [v for v in missing if original and volume_named(original, v)]
        return RestorePlan(source_vm=record.vm, target=target, restore_name=restore_name,
                           source=found.source, target_exists=exists,
                           target_running=bool(state and state.vmi_exists), volumes=volumes,
                           missing_volumes=missing, kept_volumes=kept,
                           dropped_volumes=[v for v in missing if v not in kept])

    def _refuse_taken_names(self, ns: str, restore: str, volumes: list[RestoredVolume]) -> None:
        """A planned PVC name that another PVC has (PrefixTargetName meets the VM's own
        disk, say) is refused before anything is made: a restore never takes a PVC over."""
        for volume in volumes:
            existing = self.cluster.get_pvc(ns, volume.pvc_name)
            labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
            if existing is not None and labels.get(RESTORE_LABEL) != label_value(restore):
                raise _final(f"PVC {ns}/{volume.pvc_name} exists and is not this restore's; "
                             "choose volume_restore_policy RandomizeNames", PVC_EXISTS)

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
                                             run_holder(input.operation))
        return True

    @implements(REMOVE_SNAPSHOT_USER)
    def remove_snapshot_user(self, input: SnapshotUserInput) -> bool:
        with cluster_errors():
            return snapshot_users.remove_snapshot_user(
                self.cluster, input.namespace, input.snapshot, run_holder(input.operation))

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
    def create_restored_pvcs(self, input: CreatePvcsInput) -> list[str]:
        """Plan the PVCs again from the snapshot's content (the plan the workflow holds by
        name only) and create each (one from the same VolumeSnapshot already there is
        success)."""
        made = []
        with cluster_errors():
            found = read_snapshot_copy(self.cluster, input.source)
            planned = plan_volumes(self.cluster, input.namespace, found.backups, input.owner,
                                   input.owner_label, input.source.snapshot, found.vm,
                                   target=input.target, policy=input.volume_restore_policy,
                                   fresh_state=input.fresh_persistent_state)
            names = [p.volume.pvc_name for p in planned]
            if sorted(names) != sorted(input.names):
                raise _final(f"snapshot {input.source.namespace}/{input.source.snapshot} now "
                             f"plans the PVCs {', '.join(names)}, not those planned before "
                             f"({', '.join(input.names)})", SNAPSHOT_NOT_READY)
            for pvc in planned:
                made.append(self.cluster.create_pvc(input.namespace, pvc.body)
                            ["metadata"]["name"])
        return made

    @implements(WAIT_RESTORED_PVCS_BOUND)
    def wait_restored_pvcs_bound(self, input: PvcsInput) -> list[PvcState]:
        """Watch until every PVC is Bound, within `timeout_seconds` (then final). With
        `pending_for_consumer_is_ready`, a PVC whose class binds only for a consumer may
        stay Pending: nothing consumes it yet (KubeVirt's restore treats it so too)."""
        with cluster_errors():
            waiting = ([v for v in input.names if self._waits_for_consumer(input.namespace, v)]
                       if input.pending_for_consumer_is_ready else [])
            try:
                return self.cluster.watch_pvcs(
                    input.namespace, input.names, input.timeout_seconds,
                    on_change=lambda states: activity.heartbeat(
                        {s.name: s.phase for s in states}),
                    progress_interval_seconds=PVC_WAIT_PROGRESS_SECONDS,
                    pending_is_ready=waiting)
            except WaitTimeout as exc:
                raise _final(f"restored PVCs not Bound within {input.timeout_seconds:g}s: "
                             f"{exc}", PVC_NOT_BOUND) from exc

    def _waits_for_consumer(self, ns: str, pvc_name: str) -> bool:
        pvc = self.cluster.get_pvc(ns, pvc_name)
        storage_class = str(((pvc or {}).get("spec") or {}).get("storageClassName") or "")
        found = self.cluster.get_storage_class(storage_class) if storage_class else None
        return (found or {}).get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER

    @implements(WAIT_VM_STOPPED)
    def wait_vm_stopped(self, input: VmPowerInput) -> bool:
        """Wait, without touching the VM, until its user has stopped it (KubeVirt's
        WaitGracePeriod and WaitEventually); heartbeats meanwhile, so a cancel gets through."""
        with cluster_errors(not_found=error_types.VM_NOT_FOUND):
            try:
                self.cluster.wait_for_vm(
                    input.namespace, input.vm, _stopped, input.timeout_seconds,
                    on_poll=lambda s: activity.heartbeat(s.printable_status))
            except WaitTimeout as exc:
                raise _final(f"VM {input.namespace}/{input.vm} was not stopped within "
                             f"{input.timeout_seconds:g}s: the restore needs it powered off "
                             f"({exc})", VM_RUNNING) from exc
        return True

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
        """Write the snapshot's spec, pointed at the restored PVCs, into the target: in
        place, everything of the VM's own metadata is kept (owner references, finalizers,
        labels, annotations) and the write is conditional on the resourceVersion read; a
        new VM is created Halted with a new identity unless asked to keep it. Then the VM
        owns the restored PVCs that no DataVolume adopts (volume ownership policy VM)."""
        ns = input.namespace
        restore_label = {RESTORE_LABEL: label_value(input.restore_name)}
        with cluster_errors(not_found=error_types.VM_NOT_FOUND):
            snapshot_vm = read_snapshot_copy(self.cluster, input.source).vm
            current = None if input.create else self.cluster.get_vm(ns, input.target)
            spec = self._restored_spec(input, snapshot_vm, current)
            revisions = revision_names({"spec": spec})
            if revisions:  # the VM's own copies, which it points at from the start
                self.cluster.copy_revisions(ns, spec, revisions, input.snapshot, input.target,
                                            None)
            # Before the VM names them: a PVC a VM was given is never the sweeper's.
            self.cluster.give_to_vm(ns, input.claims.values(), input.target)
            if current is None:
                vm = self._create_restored_vm(input, snapshot_vm, spec, restore_label)
            else:
                self._keep_target_before(input, current)
                spec["runStrategy"] = _run_strategy(current)
                metadata = {k: v for k, v in (current.get("metadata") or {}).items()
                            if k != "managedFields"}
                metadata["labels"] = {**(metadata.get("labels") or {}), **restore_label}
                metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                           RESTORED_FROM_ANNOTATION: input.snapshot}
                vm = self.cluster.replace_vm(ns, input.target, {
                    "apiVersion": current.get("apiVersion"), "kind": current.get("kind"),
                    "metadata": metadata, "spec": spec})
                self._hand_over_state(ns, input)
            if revisions:
                self.cluster.own_revisions(ns, spec, vm_owner(vm))
            if input.own_pvcs:
                self._own_restored_pvcs(ns, vm, input)
        return True

    def _hand_over_state(self, ns: str, input: ApplyRestoredVmInput) -> None:
        """In place, the restored state claim becomes the VM's: the label leaves the claim
        the VM had (marked with this restore, so an undo can put it back), as KubeVirt's
        restore moves it."""
        restored = set(input.claims.values())
        for claim in self.cluster.state_claims(ns, input.target):
            name = str(claim["metadata"]["name"])
            if name not in restored:
                self.cluster.move_state_label(ns, name, None, label_value(input.restore_name))

    def _keep_target_before(self, input: ApplyRestoredVmInput, current: dict[str, Any]) -> None:
        """Before the VM is written, keep it as it is in the restore record, for the undo;
        a retry that finds the VM already written (it carries this restore's label) keeps
        what the first attempt kept."""
        metadata = current.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if labels.get(RESTORE_LABEL) == label_value(input.restore_name):
            return
        save_target_before(self.cluster, input.namespace, input.restore_name, TargetBefore(
            resource_version=metadata.get("resourceVersion"),
            spec=copy.deepcopy(current.get("spec") or {}),
            restore_label=labels.get(RESTORE_LABEL),
            restored_from=(metadata.get("annotations") or {}).get(RESTORED_FROM_ANNOTATION)))

    @staticmethod
    def _restored_spec(input: ApplyRestoredVmInput, snapshot_vm: dict[str, Any],
                       current: dict[str, Any] | None) -> dict[str, Any]:
        kept_volumes = {name: volume for name in input.keep
                        if current is not None
                        and (volume := volume_named(current, name)) is not None}
        spec = restored_spec(
            snapshot_vm, input.claims, drop=input.drop, keep=kept_volumes,
            keep_templates=templates_for(current, list(kept_volumes.values()))
            if current is not None else ())
        spec.pop("running", None)
        return spec

    def _create_restored_vm(self, input: ApplyRestoredVmInput, snapshot_vm: dict[str, Any],
                            spec: dict[str, Any],
                            restore_label: dict[str, str]) -> dict[str, Any]:
        ns = input.namespace
        source_meta = snapshot_vm.get("metadata") or {}
        spec["runStrategy"] = "Halted"
        annotations = {k: v for k, v in (source_meta.get("annotations") or {}).items()
                       if k != LOCK_ANNOTATION}
        body: dict[str, Any] = {"metadata": {
            "name": input.target,
            "labels": {**(source_meta.get("labels") or {}), **restore_label},
            "annotations": {**annotations, RESTORED_FROM_ANNOTATION: input.snapshot}},
            "spec": spec}
        if input.new_identity:
            try:
                new_identity(body, input.new_mac_addresses, input.new_smbios_serial)
            except CloneSpecError as exc:
                raise _final(str(exc), INVALID_IDENTITY) from exc
        refuse_added_credentials(snapshot_vm, body, f"the new VM {input.target}")
        try:
            return self.cluster.create_vm(ns, body)
        except AlreadyExists as exc:
            existing = self.cluster.get_vm(ns, input.target)
            labels = (existing.get("metadata") or {}).get("labels") or {}
            if labels.get(RESTORE_LABEL) != restore_label[RESTORE_LABEL]:
                raise _final(f"VM {ns}/{input.target} already exists", TARGET_EXISTS) from exc
            return existing

    def _own_restored_pvcs(self, ns: str, vm: dict[str, Any],
                           input: ApplyRestoredVmInput) -> None:
        """The VM owns each restored PVC a plain PVC volume uses (a DataVolume owns the
        others), as KubeVirt's volumeOwnershipPolicy VM: deleting the VM deletes them."""
        templates = set(template_names({"spec": vm.get("spec") or {}}))
        for pvc_name in input.claims.values():
            if pvc_name not in templates:
                self.cluster.own_pvc(ns, pvc_name, vm_owner(vm))

    @implements(PUT_BACK_VM)
    def put_back_vm(self, input: PutBackVmInput) -> bool:
        """Undo `apply_restored_vm` if it happened: a new VM this restore made is deleted; in
        place, the spec kept in the restore record goes back (with the VM's metadata as it
        is now, less this restore's marks). False when there was nothing to undo."""
        ns = input.namespace
        with cluster_errors():
            for claim in self.cluster.claims_moved_by(ns, label_value(input.restore_name)):
                self.cluster.move_state_label(ns, claim, input.target,
                                              label_value(input.restore_name))
        with cluster_errors():
            try:
                current = self.cluster.get_vm(ns, input.target)
            except NotFound:
                return False
            metadata = {k: v for k, v in (current.get("metadata") or {}).items()
                        if k != "managedFields"}
            labels = dict(metadata.get("labels") or {})
            if labels.get(RESTORE_LABEL) != label_value(input.restore_name):
                return False
            if input.created:
                return self.cluster.delete_vm(ns, input.target)
            before = read_target_before(self.cluster, ns, input.restore_name)
            if before is None:
                raise _final(f"VM {ns}/{input.target} was written by restore "
                             f"{input.restore_name}, whose record no longer holds the VM as "
                             "it was: put it back by hand", TARGET_NOT_KEPT)
            labels.pop(RESTORE_LABEL, None)
            if before.restore_label is not None:
                labels[RESTORE_LABEL] = before.restore_label
            annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                           if k != RESTORED_FROM_ANNOTATION}
            if before.restored_from is not None:
                annotations[RESTORED_FROM_ANNOTATION] = before.restored_from
            metadata["labels"], metadata["annotations"] = labels, annotations
            self.cluster.replace_vm(ns, input.target, {
                "apiVersion": current.get("apiVersion"), "kind": current.get("kind"),
                "metadata": metadata, "spec": before.spec})
        return True


def _run_strategy(vm: dict[str, Any]) -> str:
    spec = vm.get("spec") or {}
    if spec.get("runStrategy"):
        return str(spec["runStrategy"])
    return "Always" if spec.get("running") else "Halted"


