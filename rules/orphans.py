"""Which objects labelled by vmsnap are orphans? A pure decision, with its reasons.

vmsnap labels what it creates with the operation that made it:
`vmsnap.io/snapshot` on VolumeGroupSnapshots, VolumeSnapshots and
VirtualMachineSnapshotContents,
`vmsnap.io/restore` / `vmsnap.io/clone` on restored and cloned PVCs. A failed
compensation, a terminated workflow or a hand-made object can leave such
objects behind with nobody to remove them. This module decides, for each one:

- keep: a live operation (its workflow is running), a record that exists and
  claims it, a PVC in use (a Pod mounts it, a VM or VMI names it, a VM owns it,
  or a restore or clone once gave it to a VM), a VolumeSnapshot or
  VolumeGroupSnapshot kept by deletionPolicy Retain, a member VolumeSnapshot of a
  group (it goes with its group: the group snapshot controller deletes it), or we
  cannot tell (Temporal did not answer): never guess towards deletion;
- keep, whatever else holds: an object that would be an orphan by its labels
  but whose creation mark (`rules.creation_marks`) does not say this cluster's
  vmsnap made it: no mark (made by hand, or by vmsnap before it marked what it
  makes: reported with what its labels say, never removed), or another
  cluster's mark;
- orphan: its record is gone, or its workflow is closed and the record does
  not claim it, and its mark's workflow is closed or unknown to Temporal;
- too young: it would be an orphan, but it is inside the grace period (an
  operation may be between creating it and recording it);
- report: it would be an orphan, but it was made before the sweeper was
  installed: only reported, unless the sweep is asked to include such objects.

Groups go first, then VolumeSnapshots, then contents (`plan_sweep`): a content is
kept while its snapshot record or any of its VolumeSnapshots still exists (a member
of a group removed in the same sweep does not count: it goes with its group).
Pure (pydantic, rules.naming and rules.creation_marks only): the sweeper
activity gathers the facts, the unit tests feed them by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from rules.creation_marks import CreationMark, read_mark
from rules.naming import (
    CLONE_LABEL,
    CLUSTER_LABEL,
    RESTORE_LABEL,
    SNAPSHOT_LABEL,
    clone_workflow_id,
    delete_snapshot_workflow_id,
    label_value,
    restore_workflow_id,
    snapshot_workflow_id,
)

ObjectKind = Literal["VolumeGroupSnapshot", "VolumeSnapshot", "VirtualMachineSnapshotContent",
                     "PersistentVolumeClaim"]
Operation = Literal["snapshot", "restore", "clone"]
WorkflowState = Literal["running", "closed", "not_found", "unknown"]
Action = Literal["keep", "orphan", "too_young", "report"]

# Which label names the operation of each kind (PVCs also carry the snapshot label:
# the restore or clone that made them is their owner, not the snapshot).
OPERATION_LABELS: dict[ObjectKind, tuple[tuple[Operation, str], ...]] = {
    "VolumeGroupSnapshot": (("snapshot", SNAPSHOT_LABEL),),
    "VolumeSnapshot": (("snapshot", SNAPSHOT_LABEL),),
    "VirtualMachineSnapshotContent": (("snapshot", SNAPSHOT_LABEL),),
    "PersistentVolumeClaim": (("restore", RESTORE_LABEL), ("clone", CLONE_LABEL)),
}
# How restore and clone name themselves: `{target}-restore-{stamp}`, `{target}-clone-{stamp}`.
_NAME_INFIX: dict[Operation, str] = {"restore": "-restore-", "clone": "-clone-"}


class LabelledObject(BaseModel):
    """An object that carries one of vmsnap's operation labels, as listed."""

    kind: ObjectKind
    namespace: str
    name: str
    uid: str = ""
    created: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    owner_uids: list[str] = Field(default_factory=list)  # owner refs to snapshot records
    deleting: bool = False
    used_by_vms: list[str] = Field(default_factory=list)  # PVCs: VMs whose spec names it
    used_by_vmis: list[str] = Field(default_factory=list)  # PVCs: VMIs whose spec names it
    used_by_pods: list[str] = Field(default_factory=list)  # PVCs: Pods that mount it
    owner_vms: list[str] = Field(default_factory=list)  # PVCs: VMs among its owners
    given_to_vm: str | None = None  # PVCs: the VM a restore or clone pointed at it
    volume_snapshots: list[str] = Field(default_factory=list)  # contents: their backups
    workflow_id: str | None = None  # restored / cloned PVCs: the workflow that made it
    created_by: str | None = None  # its creation mark, as written (`rules.creation_marks`)
    group: str | None = None  # VolumeSnapshots: the VolumeGroupSnapshot it is a member of

    @property
    def mark(self) -> CreationMark | None:
        return read_mark(self.created_by)

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class RecordFacts(BaseModel):
    """A record of an operation (VirtualMachineSnapshot / Restore / Clone) as listed."""

    operation: Operation
    namespace: str
    name: str
    label: str  # its own operation label value (the key objects point at)
    uid: str = ""
    phase: str | None = None
    claims: list[str] = Field(default_factory=list)  # names of objects it says are its own
    workflow_id: str | None = None  # the run that owns it, when the record says
    target: str | None = None  # restore / clone: the VM


class OperationRef(BaseModel):
    operation: Operation
    namespace: str
    label: str
    cluster: str = ""  # the cluster label of the object ("": made before clusters were named)


class Verdict(BaseModel):
    """The decision on one object, in words a user can check."""

    kind: ObjectKind
    namespace: str
    name: str
    action: Action
    reason: str
    operation: Operation | None = None
    operation_name: str | None = None
    workflow_ids: list[str] = Field(default_factory=list)
    age_seconds: float | None = None


RecordIndex = Mapping[tuple[Operation, str, str], RecordFacts]


def index_records(records: Iterable[RecordFacts]) -> dict[tuple[Operation, str, str], RecordFacts]:
    """Records keyed by (operation, namespace, label value): how objects find their record."""
    return {(r.operation, r.namespace, r.label): r for r in records}


def operation_of(obj: LabelledObject) -> OperationRef | None:
    """The operation an object's labels name, or None (not one of ours)."""
    for operation, key in OPERATION_LABELS[obj.kind]:
        value = obj.labels.get(key)
        if value:
            return OperationRef(operation=operation, namespace=obj.namespace, label=value,
                                cluster=obj.labels.get(CLUSTER_LABEL, ""))
    return None


def _target_from_name(op: OperationRef) -> str | None:
    infix = _NAME_INFIX.get(op.operation)
    if infix is None or infix not in op.label:
        return None
    target = op.label.rsplit(infix, 1)[0]
    return target or None


def workflow_ids_for(
    op: OperationRef, record: RecordFacts | None, made_by: str | None = None,
    mark: CreationMark | None = None,
) -> list[str]:
    """The workflows that may be working on the operation's objects right now.

    A snapshot: its own workflow (the record's, else the deterministic id) and
    its deletion. A restore or clone: the workflow the object names as its maker
    (`vmsnap.io/workflow-id`), else the one per target VM, the target taken from
    the record or, without one, from the operation's name. And, first, the
    workflow its creation mark names.
    """
    ids = _operation_workflow_ids(op, record, made_by)
    if mark is not None:
        return list(dict.fromkeys([mark.workflow_id, *ids]))
    return ids


def _operation_workflow_ids(
    op: OperationRef, record: RecordFacts | None, made_by: str | None
) -> list[str]:
    if op.operation == "snapshot":
        name = record.name if record is not None else op.label
        own = (record.workflow_id if record is not None and record.workflow_id
               else snapshot_workflow_id(op.cluster, op.namespace, name))
        return list(dict.fromkeys(
            [own, delete_snapshot_workflow_id(op.cluster, op.namespace, name)]))
    if made_by:
        return [made_by]
    target = (record.target if record is not None and record.target
              else _target_from_name(op))
    if target is None:
        return []
    make = restore_workflow_id if op.operation == "restore" else clone_workflow_id
    return [make(op.cluster, op.namespace, target)]


class SweepBounds(BaseModel):
    """What a sweep may remove at all: only what this cluster's vmsnap made (its creation
    mark says so), and only what was made after the sweeper was installed unless the
    operator includes older objects."""

    cluster: str  # the sweeping worker's cluster id
    installed_at: datetime | None = None  # None: not known, every object counts as older
    include_older_than_install: bool = False


def classify(
    obj: LabelledObject,
    records: RecordIndex,
    workflows: Mapping[str, WorkflowState],
    now: datetime,
    grace_seconds: float,
    bounds: SweepBounds,
) -> Verdict:
    """keep / orphan / too_young / report for one object (contents: see `plan_sweep` too)."""
    op = operation_of(obj)
    age = (now - obj.created).total_seconds() if obj.created is not None else None
    base: dict[str, Any] = {"kind": obj.kind, "namespace": obj.namespace, "name": obj.name,
            "age_seconds": age}
    if op is None:
        return Verdict(**base, action="keep", reason="carries no vmsnap operation label")
    record = records.get((op.operation, op.namespace, op.label))
    mark = obj.mark
    ids = workflow_ids_for(op, record, obj.workflow_id, mark)
    common: dict[str, Any] = {**base, "operation": op.operation, "operation_name": op.label,
                              "workflow_ids": ids}

    def keep(reason: str) -> Verdict:
        return Verdict(**common, action="keep", reason=reason)

    if obj.deleting:
        return keep("already being deleted")
    running = [i for i in ids if workflows.get(i) == "running"]
    if running:
        return keep(f"live operation: workflow {running[0]} is running")
    in_use = _in_use(obj)
    if in_use:
        return keep(in_use)
    if obj.kind == "VolumeSnapshot" and obj.group:
        return keep(f"a member of VolumeGroupSnapshot {obj.namespace}/{obj.group}: it goes "
                    "with its group (the group snapshot controller deletes it)")
    what = f"{op.operation} {op.namespace}/{op.label}"
    if not ids:
        return keep(f"cannot tell which workflow made it ({what} names no target VM)")
    unknown = [i for i in ids if workflows.get(i, "unknown") == "unknown"]
    if record is not None:
        if obj.name in record.claims:
            return keep(f"owned by {_record_ref(record)}, which lists it")
        if obj.kind == "VirtualMachineSnapshotContent":
            return keep(f"its snapshot {_record_ref(record)} still exists")
        if unknown:
            return keep(f"cannot tell whether workflow {unknown[0]} is running")
        reason = (f"workflow {ids[0]} is closed and {_record_ref(record)} "
                  f"(phase {record.phase or 'unset'}) does not claim it")
    else:
        if obj.kind in ("VolumeSnapshot", "VolumeGroupSnapshot") and not obj.owner_uids:
            return keep(f"retained: no owner reference to a snapshot record "
                        f"(deletionPolicy Retain); the record of {what} is gone by design")
        if unknown:
            return keep(f"cannot tell whether workflow {unknown[0]} is running")
        reason = f"the record of {what} is gone and no workflow of it is running"
    not_ours = _not_made_here(op, mark, bounds.cluster)
    if not_ours:
        return keep(f"{not_ours}; by its labels alone: {reason}")
    if age is None or age < grace_seconds:
        shown = "unknown" if age is None else f"{age:.0f}s"
        return Verdict(**common, action="too_young",
                       reason=f"{reason}; but its age ({shown}) is inside the grace period "
                              f"({grace_seconds:.0f}s)")
    if not bounds.include_older_than_install and _older_than_install(obj, bounds):
        installed = (bounds.installed_at.isoformat() if bounds.installed_at is not None
                     else "not known")
        return Verdict(**common, action="report",
                       reason=f"{reason}; but it was made before the sweeper was installed "
                              f"({installed}): only reported (include_older_than_install "
                              "removes it)")
    return Verdict(**common, action="orphan", reason=reason)


def _in_use(obj: LabelledObject) -> str | None:
    """Why a PVC is in use, if it is: a disk is never the sweeper's while anything holds
    it, nor once a restore or clone gave it to a VM."""
    where = obj.namespace
    if obj.used_by_pods:
        return f"in use: Pod {where}/{obj.used_by_pods[0]} mounts it"
    if obj.used_by_vmis:
        return f"in use by VirtualMachineInstance {where}/{obj.used_by_vmis[0]}"
    if obj.used_by_vms:
        return f"in use by VirtualMachine {where}/{obj.used_by_vms[0]}"
    if obj.owner_vms:
        return f"in use: owned by VirtualMachine {where}/{obj.owner_vms[0]}"
    if obj.given_to_vm:
        return (f"a VM's disk: given to VirtualMachine {where}/{obj.given_to_vm} by a "
                "restore or clone")
    return None


def _not_made_here(op: OperationRef, mark: CreationMark | None, cluster: str) -> str | None:
    """Why vmsnap in this cluster did not make an object, by its creation mark."""
    if mark is None:
        return ("not made by vmsnap in this cluster: it has no creation mark (made by hand, "
                "or by vmsnap before it marked what it makes), so it is never removed")
    if mark.cluster != cluster:
        return (f"not made by vmsnap in this cluster: its creation mark names cluster "
                f"{mark.cluster!r}, not {cluster!r}")
    if op.cluster and op.cluster != mark.cluster:
        return (f"its cluster label ({op.cluster!r}) and its creation mark "
                f"({mark.cluster!r}) disagree")
    return None


def _older_than_install(obj: LabelledObject, bounds: SweepBounds) -> bool:
    return bounds.installed_at is None or obj.created is None or obj.created < bounds.installed_at


def plan_sweep(
    objects: Iterable[LabelledObject],
    records: Iterable[RecordFacts],
    workflows: Mapping[str, WorkflowState],
    now: datetime,
    grace_seconds: float,
    bounds: SweepBounds,
) -> list[Verdict]:
    """A verdict per object, in removal order: VolumeGroupSnapshots, VolumeSnapshots,
    contents, PVCs.

    A content that would be an orphan is kept while any of its VolumeSnapshots
    stays (exists and is not removed in this sweep, itself or with its group): a
    VolumeSnapshot goes before its content, never after.
    """
    if grace_seconds < 0:
        raise ValueError(f"the grace period cannot be negative ({grace_seconds}s)")
    index = index_records(records)
    ordered = sorted(objects, key=lambda o: (_ORDER[o.kind], o.namespace, o.name))
    verdicts: list[Verdict] = []
    staying: set[tuple[str, str]] = set()
    removed_groups: set[tuple[str, str]] = set()
    for obj in ordered:
        verdict = classify(obj, index, workflows, now, grace_seconds, bounds)
        if obj.kind == "VolumeGroupSnapshot" and verdict.action == "orphan":
            removed_groups.add((obj.namespace, obj.name))
        if (obj.kind == "VolumeSnapshot" and verdict.action != "orphan"
                and (obj.namespace, obj.group) not in removed_groups):
            staying.add((obj.namespace, obj.name))
        if obj.kind == "VirtualMachineSnapshotContent" and verdict.action == "orphan":
            kept = [n for n in obj.volume_snapshots if (obj.namespace, n) in staying]
            if kept:
                verdict = verdict.model_copy(update={
                    "action": "keep",
                    "reason": f"its VolumeSnapshot {obj.namespace}/{kept[0]} still exists "
                              f"(contents go after their VolumeSnapshots); {verdict.reason}"})
        verdicts.append(verdict)
    return verdicts


def workflow_ids_to_ask(
    objects: Iterable[LabelledObject], records: Iterable[RecordFacts]
) -> list[str]:
    """Every workflow ID whose state `plan_sweep` needs, each once."""
    index = index_records(records)
    ids: list[str] = []
    for obj in objects:
        op = operation_of(obj)
        if op is not None:
            ids += workflow_ids_for(op, index.get((op.operation, op.namespace, op.label)),
                                    obj.workflow_id, obj.mark)
    return list(dict.fromkeys(ids))


def record_label(operation: Operation, name: str, labels: Mapping[str, str]) -> str:
    """The label value objects carry for a record: its own label, else its name."""
    key = {"snapshot": SNAPSHOT_LABEL, "restore": RESTORE_LABEL, "clone": CLONE_LABEL}[operation]
    return labels.get(key) or label_value(name)


def _record_ref(record: RecordFacts) -> str:
    kind = {"snapshot": "VirtualMachineSnapshot", "restore": "VirtualMachineRestore",
            "clone": "VirtualMachineClone"}[record.operation]
    return f"{kind} {record.namespace}/{record.name}"


_ORDER: dict[ObjectKind, int] = {
    "VolumeGroupSnapshot": 0, "VolumeSnapshot": 1, "VirtualMachineSnapshotContent": 2,
    "PersistentVolumeClaim": 3}
