"""Activities of `CloneVirtualMachine` (PVC creation, waiting and deletion are the
restore's, with the clone's label). Each one idempotent; undo touches only objects
labelled `vmsnap.io/clone` with this clone's name."""

from __future__ import annotations

from collections.abc import Callable

from activities.errors import cluster_errors
from activities.registration import implements
from activities.restore import (
    _final,
    plan_volumes,
    read_ready_snapshot,
    read_snapshot_copy,
    refuse_added_credentials,
    refuse_missing_volumes,
    vm_owner,
)
from cluster.client import Cluster
from cluster.clone_record import clone_record_body, write_clone_record
from cluster.errors import AlreadyExists, NotFound
from cluster.vm_revisions import revision_names
from contracts import common as error_types
from contracts.admission import PATCH_NOT_ALLOWED
from contracts.clone import (
    CHECK_CLONE_SOURCE,
    CREATE_CLONE_VM,
    DELETE_CLONE_VM,
    INVALID_CLONE_SPEC,
    PREPARE_CLONE,
    SOURCE_NOT_ELIGIBLE,
    SOURCE_WITH_PERSISTENT_STATE,
    WRITE_CLONE_RECORD,
    CheckCloneSourceInput,
    CloneRecordInput,
    CloneVmRef,
    CreateCloneVmInput,
    PrepareCloneInput,
)
from contracts.restore import TARGET_EXISTS, VOLUMES_NOT_IN_SNAPSHOT, RestorePlan
from rules.clone_spec import CloneSpecError, clone_vm
from rules.naming import label_value
from rules.patch_policy import PatchPolicy, PatchRefused
from rules.restored_volumes import volumes_without_backup
from rules.volumes import needs_backend_storage

CLONE_LABEL = "vmsnap.io/clone"


class CloneActivities:
    def __init__(self, cluster: Cluster, policy: PatchPolicy | None = None) -> None:
        self.cluster = cluster
        self.policy = policy or PatchPolicy()

    def all(self) -> list[Callable[..., object]]:
        return [self.check_clone_source, self.prepare_clone, self.create_clone_vm,
                self.delete_clone_vm, self.write_clone_record]

    def _refuse_existing_target(self, ns: str, target: str) -> None:
        try:
            self.cluster.get_vm(ns, target)
        except NotFound:
            return
        raise _final(f"target VM {ns}/{target} already exists", TARGET_EXISTS)

    @implements(CHECK_CLONE_SOURCE)
    def check_clone_source(self, input: CheckCloneSourceInput) -> bool:
        """The target must not exist, and every PVC or DataVolume disk of the source VM must
        be snapshot-eligible: a clone missing a data disk is not a copy."""
        with cluster_errors(not_found=error_types.VM_NOT_FOUND):
            self._refuse_existing_target(input.namespace, input.target)
            selection = self.cluster.select_volumes(input.namespace, input.vm)
        # Container disks and cloud-init travel in the spec: only disks with a claim count.
        refused = [f"{v.volume_name}: {v.reason}" for v in selection.excluded
                   if v.snapshottable_type]
        if refused:
            raise _final(f"VM {input.namespace}/{input.vm} cannot be cloned, some disks "
                         f"cannot be snapshotted ({'; '.join(refused)})",
                         SOURCE_NOT_ELIGIBLE)
        return True

    @implements(PREPARE_CLONE)
    def prepare_clone(self, input: PrepareCloneInput) -> RestorePlan:
        """The snapshot must be ready, the target absent, and every disk with a PVC in the
        snapshot (or dropped on request: a clone never shares the source's disk); one PVC
        per backed-up volume."""
        ns = input.namespace
        with cluster_errors():
            self._refuse_existing_target(ns, input.target)
            found = read_ready_snapshot(self.cluster, ns, input.snapshot)
            if needs_backend_storage(found.vm) and not input.fresh_persistent_state:
                raise _final(
                    f"the VM of snapshot {ns}/{input.snapshot} keeps persistent TPM/EFI "
                    "state: a clone would share its TPM identity (and BitLocker keys, "
                    "measured boot). KubeVirt refuses such a clone; ask for one with a "
                    "fresh TPM and EFI store (fresh_persistent_state: true)",
                    SOURCE_WITH_PERSISTENT_STATE)
            missing = volumes_without_backup(found.vm,
                                             [b["volumeName"] for b in found.backups])
            refuse_missing_volumes(ns, input.snapshot, missing, input.missing_volumes,
                                   f"the clone {input.target}")
            volumes = [p.volume for p in plan_volumes(
                self.cluster, ns, found.backups, input.clone_name, CLONE_LABEL, input.snapshot,
                found.vm, target=input.target, fresh_state=input.fresh_persistent_state)]
            if missing and not volumes:
                raise _final(f"snapshot {ns}/{input.snapshot} holds none of the VM's disks "
                             f"({', '.join(missing)} left out): nothing to clone",
                             VOLUMES_NOT_IN_SNAPSHOT)
        return RestorePlan(source_vm=found.record.vm, target=input.target,
                           restore_name=input.clone_name, source=found.source,
                           target_exists=False, target_running=False, volumes=volumes,
                           missing_volumes=missing, dropped_volumes=missing,
                           fresh_persistent_state=input.fresh_persistent_state)

    @implements(CREATE_CLONE_VM)
    def create_clone_vm(self, input: CreateCloneVmInput) -> bool:
        """The snapshot's copy of the VM (read again from its content), made a clone by
        `rules.clone_spec` within the worker's patch policy, refused if it would reach what
        the source did not (credential volumes, sidecars), then created."""
        spec = input.options
        with cluster_errors():
            source_vm = read_snapshot_copy(self.cluster, input.source).vm
        try:
            body = clone_vm(
                source_vm, spec.target, input.claims, drop=input.drop,
                new_mac_addresses=spec.new_mac_addresses,
                new_smbios_serial=spec.new_smbios_serial, label_filters=spec.label_filters,
                annotation_filters=spec.annotation_filters, patches=spec.patches,
                run_strategy=spec.run_strategy,
                extra_labels={CLONE_LABEL: label_value(input.clone_name)}, policy=self.policy)
        except PatchRefused as exc:
            raise _final(str(exc), PATCH_NOT_ALLOWED) from exc
        except CloneSpecError as exc:
            raise _final(str(exc), INVALID_CLONE_SPEC) from exc
        refuse_added_credentials(source_vm, body, f"the clone {spec.target}")
        body["metadata"].pop("namespace", None)
        with cluster_errors():
            revisions = revision_names(body)
            if revisions:  # the clone's own copies of the snapshot's, as KubeVirt makes them
                self.cluster.copy_revisions(input.namespace, body["spec"], revisions,
                                            input.source.snapshot, spec.target, None)
            # Before the VM names them: a PVC a VM was given is never the sweeper's.
            self.cluster.give_to_vm(input.namespace, input.claims.values(), spec.target)
            try:
                made = self.cluster.create_vm(input.namespace, body)
            except AlreadyExists as exc:
                made = self.cluster.get_vm(input.namespace, spec.target)
                labels = (made.get("metadata") or {}).get("labels") or {}
                if labels.get(CLONE_LABEL) != label_value(input.clone_name):
                    raise _final(f"VM {input.namespace}/{spec.target} already exists",
                                 TARGET_EXISTS) from exc
            if revisions:
                self.cluster.own_revisions(input.namespace, body["spec"], vm_owner(made))
        return True

    @implements(DELETE_CLONE_VM)
    def delete_clone_vm(self, input: CloneVmRef) -> bool:
        """Delete the target if this clone made it (its label says so); else leave it."""
        with cluster_errors():
            try:
                existing = self.cluster.get_vm(input.namespace, input.target)
            except NotFound:
                return False
            labels = (existing.get("metadata") or {}).get("labels") or {}
            if labels.get(CLONE_LABEL) != label_value(input.clone_name):
                return False
            return self.cluster.delete_vm(input.namespace, input.target)

    @implements(WRITE_CLONE_RECORD)
    def write_clone_record(self, input: CloneRecordInput) -> bool:
        result = input.result
        source_kind, source = (("VirtualMachine", result.source_vm) if result.source_vm
                               else ("VirtualMachineSnapshot", result.source_snapshot or ""))
        body = clone_record_body(input.namespace, result.name, source_kind, source,
                                 result.target, {CLONE_LABEL: label_value(result.name)})
        status = {
            "phase": result.phase, "snapshotName": result.snapshot,
            "restoredPvcs": [v.pvc_name for v in result.volumes] or None,
            "error": {"message": result.error, "type": result.error_type}
            if result.error else None,
            "cleanupErrors": result.cleanup_errors or None,
        }
        with cluster_errors():
            write_clone_record(self.cluster, body, status)
        return True
