"""The snapshot's side effects, one small idempotent activity per step.

Every activity is a plain `def` (the Kubernetes client blocks; the worker
runs them on a thread pool), reaches the cluster only through `cluster/`,
and can run twice: names come from the workflow, AlreadyExists of our own
object is success, deletes of what is gone are success. Errors leave as
ApplicationErrors: retryable for transient API trouble, final (with a type
from `activities.errors`) for what a retry cannot fix.

The one activity that decides the freeze window is `freeze_and_cut`
(activities/cut.py): it freezes, creates every VolumeSnapshot at once, holds a
watch on them, and unfreezes the guest the moment the last one has
`status.creationTime`, without a round trip through the workflow.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.cut import GuestCut
from activities.errors import cluster_errors
from activities.liveness import WorkflowLiveness
from activities.registration import implements
from activities.vm_locking import (
    claim_holds,
    leased_holder,
    log_takeover,
    refused_if_locked,
    run_holder,
    run_is_open,
    take_vm_lock,
)
from cluster import snapshot_content, snapshot_record, snapshot_users
from cluster.client import Cluster
from cluster.errors import AlreadyExists, Conflict, NotFound
from cluster.lock import (
    LOCK_ANNOTATION,
    LockHolder,
    LockLost,
    acquire_vm_lock,
    release_vm_lock,
    renew_vm_lock,
)
from cluster.snapshot_content import VolumeBackup
from cluster.snapshot_record import (
    ExcludedVolumeReason,
    RecordGroup,
    SnapshotRecordStatus,
    SnapshotSpec,
    WorkflowRun,
)
from cluster.vm_revisions import revision_names
from cluster.vms import vm_state_from
from cluster.waiting import WaitTimeout
from contracts import common as error_types
from contracts.common import VOLUME_NOT_POPULATED, ObjectRef
from contracts.delete_snapshot import (
    CLAIMS_NOT_BOUND,
    DELETE_SNAPSHOT_RECORD,
    PREPARE_SNAPSHOT_DELETION,
    ClaimsInput,
    DeletionPlan,
)
from contracts.lock import LOCK_LOST, LOCK_VM, RENEW_VM_LOCK, UNLOCK_VM, VmLockInput
from contracts.snapshot import (
    CHECK_VOLUME_SNAPSHOTS_READY,
    CREATE_SNAPSHOT_RECORD,
    DELETE_SNAPSHOT_CONTENT,
    DELETE_VOLUME_SNAPSHOTS,
    FREEZE_AND_CUT,
    LOCK_AND_INSPECT_VM,
    UNFREEZE_VM,
    WRITE_SNAPSHOT_STATUS,
    ContentPlan,
    CreateSnapshotRecordInput,
    CutInput,
    CutOutcome,
    LockAndInspectInput,
    SnapshotRecordRef,
    SnapshotVirtualMachineResult,
    UnfreezeVmInput,
    VmInspection,
    VolumeSnapshotsInput,
    WriteSnapshotStatusInput,
)
from rules.freeze_budget import DEFAULT_MAX_FREEZE_BUDGET
from rules.group_plan import GroupPlan, plan_groups
from rules.models import IncludedVolume, VolumeSnapshotState
from rules.naming import snapshot_selector, volume_snapshot_name

READY_WATCH_SECONDS = 10.0
GROUPS_GONE_SECONDS = 20.0  # a compensation waits this long, then is retried


def _heartbeat_ready(states: list[VolumeSnapshotState]) -> None:
    activity.heartbeat({"ready": [s.name for s in states if s.ready_to_use]})


def _now() -> datetime:
    return datetime.now(UTC)


def _this_run() -> WorkflowRun:
    """The workflow run this activity works for (activities here run only in workflows)."""
    info = activity.info()
    return WorkflowRun(workflow_id=info.workflow_id or "", run_id=info.workflow_run_id or "")


def _lock_written(vm: dict[str, Any], holder: LockHolder) -> str:
    """The lock annotation this run holds: the one found on `vm` when an earlier attempt of
    this run wrote it, else the one just written."""
    found = ((vm.get("metadata") or {}).get("annotations") or {}).get(LOCK_ANNOTATION)
    if found is not None:
        with contextlib.suppress(ValueError):
            if LockHolder.from_annotation(found).same_run(holder):
                return str(found)
    return holder.to_annotation()


def record_status_from(
    result: SnapshotVirtualMachineResult, messages: dict[str, str]
) -> SnapshotRecordStatus:
    """The record's status as the workflow sees the snapshot."""
    return SnapshotRecordStatus(
        phase=result.phase,
        ready_to_use=result.ready_to_use,
        creation_time=result.creation_time,
        source_uid=result.vm_uid,
        content_name=result.content_name,
        error_message=result.error,
        error_reason=result.error_type,
        indications=result.indications,
        indication_messages=messages,
        included_volumes=[v.volume_name for v in result.included_volumes],
        excluded_volumes=[ExcludedVolumeReason(volume_name=v.volume_name, reason=v.reason)
                          for v in result.excluded_volumes],
        volume_snapshots=result.volume_snapshots,
        freeze_window_ms=result.freeze_window_ms,
        consistency=result.consistency,
        groups=[RecordGroup(name=g.name, group_class=g.group_class, driver=g.driver,
                            volumes=g.volumes, creation_time=g.creation_time)
                for g in result.groups],
        volume_consistency=result.volume_consistency,
        started_at=result.started_at,
        succeeded_at=result.succeeded_at,
        ready_at=result.ready_at,
        finished_at=result.finished_at,
    )


def delete_groups(cluster: Cluster, namespace: str, snapshot: str | None,
                  names: list[str]) -> list[str]:
    """Delete the named VolumeGroupSnapshots and those labelled with `snapshot`, and wait
    (retryable GroupSnapshotsNotGone after a while) until they and their members are gone;
    the members that went with them."""
    groups = list(dict.fromkeys(names))
    if snapshot is not None:
        groups += [n for g in cluster.list_group_snapshots(namespace, snapshot_selector(snapshot))
                   if (n := str(g["metadata"]["name"])) not in groups]
    members = [str(m["metadata"]["name"]) for n in groups
               for m in cluster.group_members(namespace, n)]
    present = [n for n in groups if cluster.delete_group_snapshot(namespace, n)
               or cluster.get_group_snapshot(namespace, n) is not None]
    deadline = time.monotonic() + GROUPS_GONE_SECONDS
    while True:
        left = [n for n in present if cluster.get_group_snapshot(namespace, n) is not None
                or cluster.group_members(namespace, n)]
        if not left:
            return members
        if time.monotonic() >= deadline:
            raise ApplicationError(
                f"VolumeGroupSnapshots {', '.join(left)} in {namespace} (or their members) "
                "are not gone yet", type=error_types.GROUP_SNAPSHOTS_NOT_GONE)
        time.sleep(0.1)


class SnapshotActivities:
    """Activities of SnapshotVirtualMachine and DeleteVirtualMachineSnapshot.

    `liveness` (Temporal) tells whether the run named by a lock or a record
    still runs; without it every holder counts as alive (nothing is taken over).
    """

    def __init__(self, cluster: Cluster, liveness: WorkflowLiveness | None = None,
                 max_freeze_budget: float = DEFAULT_MAX_FREEZE_BUDGET) -> None:
        self.cluster = cluster
        self.liveness = liveness
        self.max_freeze_budget = max_freeze_budget  # the worker's VMSNAP_MAX_FREEZE_BUDGET

    def all(self) -> list[Callable[..., object]]:
        return [
            self.create_snapshot_record, self.lock_vm, self.renew_vm_lock, self.unlock_vm,
            self.lock_and_inspect_vm,
            self.write_snapshot_status, self.unfreeze_vm, self.freeze_and_cut,
            self.check_volume_snapshots_ready, self.delete_volume_snapshots,
            self.delete_snapshot_content, self.prepare_snapshot_deletion,
            self.delete_snapshot_record, self.claims_not_bound,
        ]

    def _is_alive(self, holder: LockHolder) -> bool:
        return run_is_open(self.liveness)(holder)

    # ---- step 1: the record and the lock ------------------------------------------------

    @implements(CREATE_SNAPSHOT_RECORD)
    def create_snapshot_record(self, input: CreateSnapshotRecordInput) -> SnapshotRecordRef:
        """The VirtualMachineSnapshot, phase InProgress; a retry finds its own."""
        spec = SnapshotSpec(
            vm=input.vm, deletion_policy=input.deletion_policy,
            failure_deadline_seconds=input.failure_deadline_seconds,
            ready_deadline_seconds=input.ready_deadline_seconds, quiesce=input.quiesce,
        )
        owner = _this_run()
        try:
            with cluster_errors():
                # Its status (InProgress) is written with the inspection's findings, a
                # moment later: one write instead of two.
                record = snapshot_record.create_snapshot_record(
                    self.cluster, input.namespace, input.name, spec, input.labels, owner)
        except ApplicationError as err:
            if isinstance(err.__cause__, AlreadyExists):
                raise ApplicationError(str(err.message), type=error_types.SNAPSHOT_ALREADY_EXISTS,
                                       non_retryable=True) from err
            raise
        activity.logger.info("recorded snapshot %s/%s", input.namespace, input.name)
        return SnapshotRecordRef(namespace=input.namespace, name=input.name, uid=record.uid)

    def _lock_holder(self, input: VmLockInput) -> LockHolder:
        """This run as a lock holder: its deployment, and a lease of `lease_seconds`."""
        return leased_holder(self.cluster, input.operation, input.lease_seconds)

    @implements(LOCK_VM)
    def lock_vm(self, input: VmLockInput) -> None:
        """Take the VM's operation lock (see cluster.lock); refused while another claim
        holds."""
        take_vm_lock(self.cluster, input.namespace, input.vm, self._lock_holder(input),
                     self._is_alive)

    @implements(RENEW_VM_LOCK)
    def renew_vm_lock(self, input: VmLockInput) -> str:
        """Move the end of this run's lease `lease_seconds` from now; LockLost (final)
        when the lock is no longer this run's."""
        try:
            with cluster_errors(not_found=error_types.VM_NOT_FOUND):
                return renew_vm_lock(self.cluster, input.namespace, input.vm, input.held,
                                     self._lock_holder(input))
        except ApplicationError as err:
            if isinstance(err.__cause__, LockLost):
                raise ApplicationError(str(err.message), type=LOCK_LOST,
                                       non_retryable=True) from err
            raise

    @implements(UNLOCK_VM)
    def unlock_vm(self, input: VmLockInput) -> bool:
        """Release the lock if this run holds it; False when it did not."""
        with cluster_errors():
            return release_vm_lock(self.cluster, input.namespace, input.vm,
                                   run_holder(input.operation), held=input.held)

    @implements(LOCK_AND_INSPECT_VM)
    def lock_and_inspect_vm(self, input: LockAndInspectInput) -> VmInspection:
        """`lock_vm` and `inspect_vm` on one read of the VM: the lock is written against the
        resourceVersion inspected, so the inspection is of the VM as it was locked. With a
        content plan, the content too (a copy of that VM and its PVCs, naming the
        VolumeSnapshots the cut will make), when some volume can be snapshotted."""
        lock = input.lock
        holder = self._lock_holder(lock)
        content = None
        with refused_if_locked(), cluster_errors(not_found=error_types.VM_NOT_FOUND):
            vm = self.cluster.get_vm(lock.namespace, lock.vm)
            stale = acquire_vm_lock(self.cluster, lock.namespace, lock.vm, holder,
                                    claim_holds(holder, self._is_alive), read=vm)
            vmi = self.cluster.get_vmi(lock.namespace, lock.vm)
            state = vm_state_from(vm, vmi)
            volumes, pvcs = self.cluster.select_volumes_and_pvcs(lock.namespace, vm)
            self._refuse_unpopulated(lock.namespace, pvcs, volumes.included)
            groups = GroupPlan()
            if (input.group_snapshot != "never" and input.content is not None
                    and volumes.included):
                groups = plan_groups(input.content.snapshot, lock.namespace, volumes.included,
                                     self.cluster.group_snapshot_classes(),
                                     input.group_snapshot)
            if input.content is not None and volumes.included and groups.refusal is None:
                content = self._create_content(lock.namespace, input.content, vm, vmi, pvcs,
                                               volumes.included)
        log_takeover(lock.namespace, lock.vm, stale)
        return VmInspection(vm=state, volumes=volumes, lock=_lock_written(vm, holder),
                            content_name=content, groups=groups.groups,
                            group_refusal=groups.refusal)

    def _refuse_unpopulated(self, namespace: str, pvcs: dict[str, dict[str, Any]],
                            included: list[IncludedVolume]) -> None:
        """A disk whose DataVolume still imports holds a half-written image: wait (this
        error is retried, within the snapshot's deadline) until CDI has populated it."""
        waiting = self.cluster.unpopulated(
            namespace, {v.pvc_name: pvcs[v.pvc_name] for v in included if v.pvc_name in pvcs})
        if waiting:
            raise ApplicationError(
                f"waiting for DataVolumes to be populated before the snapshot: "
                f"{'; '.join(waiting)}", type=VOLUME_NOT_POPULATED,
                category=ApplicationErrorCategory.BENIGN)

    def _create_content(
        self, namespace: str, plan: ContentPlan, vm: dict[str, Any],
        vmi: dict[str, Any] | None, pvcs: dict[str, dict[str, Any]],
        included: list[IncludedVolume],
    ) -> str:
        """The content, from the VM as it runs (its start revision, when its template has
        changed since), with its instance type and preference revisions copied for the
        snapshot (see `cluster.vm_revisions`)."""
        ran = self.cluster.running_spec(namespace, vm, vmi)
        copied = {**vm, "spec": copy.deepcopy(ran if ran is not None else vm.get("spec") or {})}
        revisions = revision_names(vm)
        if revisions:
            self.cluster.copy_revisions(
                namespace, copied["spec"], revisions,
                str((vm.get("metadata") or {}).get("name")), plan.snapshot,
                snapshot_record.snapshot_owner_reference(plan.snapshot, plan.snapshot_uid))
        body = snapshot_content.content_body(
            namespace, plan.name, plan.snapshot, plan.snapshot_uid, copied, pvcs,
            [VolumeBackup(volume_name=v.volume_name, pvc_name=v.pvc_name,
                          volume_snapshot=volume_snapshot_name(plan.snapshot, v.volume_name))
             for v in included],
            plan.labels)
        snapshot_content.create_snapshot_content(self.cluster, namespace, body)
        return plan.name

    # ---- step 2: inspect ----------------------------------------------------------------

    @implements(WRITE_SNAPSHOT_STATUS)
    def write_snapshot_status(self, input: WriteSnapshotStatusInput) -> bool:
        """Write the record's status (and the content's, when states are given and it
        exists); False when the record does not exist or belongs to another run (nothing
        written). With the record's uid, one request (see snapshot_record.write_snapshot_status)."""
        result = input.result
        status = record_status_from(result, input.indication_messages)
        with cluster_errors():
            try:
                written = snapshot_record.write_snapshot_status(
                    self.cluster, result.namespace, result.name, status, owner=_this_run(),
                    uid=input.record_uid)
            except NotFound:
                return False  # never made (step 1 failed), or deleted by a user
            if written and result.content_name and input.content_volume_snapshots:
                with contextlib.suppress(NotFound):
                    snapshot_content.name_volume_snapshots(
                        self.cluster, result.namespace, result.content_name,
                        input.content_volume_snapshots)
            if written and result.content_name and input.volume_snapshot_states:
                # NotFound: compensation removed it, or it was never made.
                with contextlib.suppress(NotFound):
                    snapshot_content.write_content_status(
                        self.cluster, result.namespace, result.content_name,
                        input.volume_snapshot_states,
                        None if result.ready_to_use else result.error)
        return written

    @implements(UNFREEZE_VM)
    def unfreeze_vm(self, input: UnfreezeVmInput) -> bool:
        """Thaw the guest; False when there was no running instance to thaw."""
        try:
            with cluster_errors():
                self.cluster.unfreeze(input.namespace, input.vmi)
        except ApplicationError as err:
            if isinstance(err.__cause__, Conflict | NotFound):
                return False
            raise
        return True

    # ---- steps 3-5: freeze, cut, thaw ----------------------------------------------------

    @implements(FREEZE_AND_CUT)
    def freeze_and_cut(self, input: CutInput) -> CutOutcome:
        """Freeze (if planned), create every VolumeSnapshot at once, thaw at the last cut;
        one activity so that nothing but the cluster's latency is in the freeze window
        (see activities/cut.py)."""
        return GuestCut(self.cluster, input, self.max_freeze_budget).run()

    # ---- step 6: readiness --------------------------------------------------------------

    @implements(CHECK_VOLUME_SNAPSHOTS_READY)
    def check_volume_snapshots_ready(
        self, input: VolumeSnapshotsInput
    ) -> list[VolumeSnapshotState]:
        """The states once every VolumeSnapshot is readyToUse.

        Each attempt watches for up to READY_WATCH_SECONDS (heartbeating), then
        gives up with a retryable VolumeSnapshotsNotReady; the workflow retries
        it at a fixed interval within its readiness bound. Fast storage is seen
        ready at once, slow storage costs one request every few seconds, and the
        retries add no history events.
        """
        try:
            with cluster_errors(not_found=error_types.VOLUME_SNAPSHOT_MISSING):
                return self.cluster.watch_volume_snapshots(
                    input.namespace, input.names, "ready", READY_WATCH_SECONDS,
                    on_change=_heartbeat_ready, progress_interval_seconds=1.0,
                    label_selector=snapshot_selector(input.snapshot) if input.snapshot else "")
        except WaitTimeout as err:
            # BENIGN: an expected answer of a poll, logged at DEBUG, not as a failure.
            raise ApplicationError(str(err), type=error_types.VOLUME_SNAPSHOTS_NOT_READY,
                                   category=ApplicationErrorCategory.BENIGN) from err

    # ---- compensation and deletion ------------------------------------------------------

    @implements(DELETE_VOLUME_SNAPSHOTS)
    def delete_volume_snapshots(self, input: VolumeSnapshotsInput) -> list[str]:
        """Delete the named VolumeSnapshots (and any labelled with the snapshot);
        the names that were deleted. Groups go first (planned or labelled with the
        snapshot), waited for until gone (their members with them: a member cannot be
        deleted while its group exists); their labels come off their PVCs."""
        names = list(dict.fromkeys(input.names))
        with cluster_errors():
            with_groups = delete_groups(self.cluster, input.namespace, input.snapshot,
                                        [g.name for g in input.groups])
            for group in input.groups:
                for pvc in group.pvcs:
                    self.cluster.label_pvc(input.namespace, pvc, group.label_key, None)
            if input.snapshot is not None:
                labelled = self.cluster.list_volume_snapshots(
                    input.namespace, snapshot_selector(input.snapshot))
                names += [s.name for s in labelled if s.name not in names]
            deleted = [n for n in names if n in with_groups
                       or self.cluster.delete_volume_snapshot(input.namespace, n)]
        activity.logger.info("deleted VolumeSnapshots %s in %s", deleted, input.namespace)
        return deleted

    @implements(DELETE_SNAPSHOT_CONTENT)
    def delete_snapshot_content(self, input: ObjectRef) -> bool:
        with cluster_errors():
            return snapshot_content.delete_snapshot_content(
                self.cluster, input.namespace, input.name)

    @implements(PREPARE_SNAPSHOT_DELETION)
    def prepare_snapshot_deletion(self, input: ObjectRef) -> DeletionPlan:
        """Check that the snapshot may go (found, not being taken, not in use by a running
        restore or clone), mark it Deleting, and say what to remove."""
        with cluster_errors():
            record = snapshot_record.get_snapshot_record(self.cluster, input.namespace, input.name)
            if record is None:
                raise ApplicationError(
                    f"VirtualMachineSnapshot {input.namespace}/{input.name} not found",
                    type=error_types.SNAPSHOT_NOT_FOUND, non_retryable=True)
            owner = record.owner
            if owner is not None and owner.workflow_id != activity.info().workflow_id:
                holder = LockHolder(workflow_id=owner.workflow_id, run_id=owner.run_id,
                                    operation="snapshot", since=_now())
                if self._is_alive(holder):
                    raise ApplicationError(
                        f"VirtualMachineSnapshot {input.namespace}/{input.name} is still "
                        f"being taken by workflow {owner.workflow_id} (phase "
                        f"{record.phase or 'unset'}); wait for it or cancel it first",
                        type=error_types.SNAPSHOT_IN_PROGRESS, non_retryable=True)
            if record.users:
                live = snapshot_users.remove_stale_snapshot_users(
                    self.cluster, input.namespace, input.name, self._is_alive)
                if live:
                    raise ApplicationError(
                        f"VirtualMachineSnapshot {input.namespace}/{input.name} is in use by "
                        + "; ".join(u.describe() for u in live),
                        type=error_types.SNAPSHOT_IN_USE, non_retryable=True)
            if record.phase != "Deleting":
                snapshot_record.mark_snapshot_deleting(self.cluster, input.namespace, input.name)
            labelled = [s.name for s in self.cluster.list_volume_snapshots(
                input.namespace, snapshot_selector(input.name))]
        return DeletionPlan(
            namespace=input.namespace, name=input.name, deletion_policy=record.deletion_policy,
            volume_snapshots=list(dict.fromkeys([*record.volume_snapshots, *labelled])),
            content_name=record.content_name,
        )

    @implements(CLAIMS_NOT_BOUND)
    def claims_not_bound(self, input: ClaimsInput) -> list[str]:
        """The PVCs among `names` that exist and are not Bound: one read of them; a claim
        deleted meanwhile no longer needs its source."""
        with cluster_errors():
            found = self.cluster.get_pvcs(input.namespace, input.names)
        return [name for name in input.names if name in found and (
            (found[name].get("status") or {}).get("phase") != "Bound")]

    @implements(DELETE_SNAPSHOT_RECORD)
    def delete_snapshot_record(self, input: ObjectRef) -> bool:
        with cluster_errors():
            return snapshot_record.delete_snapshot_record(self.cluster, input.namespace, input.name)


