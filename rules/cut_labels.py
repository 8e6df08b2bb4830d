"""Which `vmsnap.io/cut-*` labels on PVCs are stale? A pure decision, with its reasons.

A group cut writes one label on the PVCs of each VolumeGroupSnapshot (the group's
selector: key `rules.naming.cut_label_key(namespace, group)`, the group's name as value)
before the freeze, and takes it off after the thaw. A worker that dies between the two,
or a removal that fails, leaves it behind: harmless to the disk, but a later group of
that name would take the PVC too. A label is stale, and removed, when no cut can still
need it:

- its group exists, and every workflow that may work on it (its creation mark's, its
  snapshot's, that snapshot's deletion) is closed or unknown to Temporal;
- its group is gone, and the snapshot that would make it has no running workflow: that
  snapshot is found by the group's name, as a snapshot record of the namespace whose
  group for some driver bears it, or as the name's own head (a snapshot makes its
  records before it writes any label, so a group of no record and no readable name is
  no cut's any more).

Kept: a running workflow, a workflow Temporal cannot tell about (never guess), and a
label whose key is not the one vmsnap derives from its value (not a label vmsnap
writes). Pure: the sweeper activity gathers the facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, Field

from rules.naming import CUT_LABEL_PREFIX, cut_label_key, group_snapshot_name, label_value
from rules.orphans import (
    LabelledObject,
    OperationRef,
    RecordFacts,
    WorkflowState,
    index_records,
    operation_of,
    workflow_ids_for,
)

LabelAction = Literal["keep", "remove"]


class CutLabel(BaseModel):
    """One `vmsnap.io/cut-*` label on one PVC, as listed."""

    namespace: str
    pvc: str
    pvc_uid: str = ""
    key: str
    value: str

    @property
    def ref(self) -> str:
        return f"label {self.key}={self.value} on PersistentVolumeClaim {self.namespace}/{self.pvc}"


class CutLabelVerdict(BaseModel):
    """The decision on one cut label, in words a user can check; `removed` once done."""

    namespace: str
    pvc: str
    key: str
    value: str
    action: LabelAction
    reason: str
    workflow_ids: list[str] = Field(default_factory=list)
    removed: bool = False  # False: kept, a dry run, or the PVC or label gone meanwhile


def cut_labels_of(namespace: str, pvc: str, uid: str,
                  labels: Mapping[str, str]) -> list[CutLabel]:
    """The cut labels among a PVC's labels."""
    return [CutLabel(namespace=namespace, pvc=pvc, pvc_uid=uid, key=k, value=v)
            for k, v in sorted(labels.items()) if k.startswith(CUT_LABEL_PREFIX)]


def snapshots_of_group(group: str, records: Iterable[RecordFacts],
                       drivers: Iterable[str]) -> list[str]:
    """The snapshots whose group for one of `drivers` is named `group`: a snapshot record
    of the namespace, or the name's head when the name was not cut short."""
    found: list[str] = []
    known = sorted(set(drivers))
    for record in records:
        if record.operation == "snapshot" and any(
                group_snapshot_name(record.name, d) == group for d in known):
            found.append(record.name)
    for driver in known:
        tail = group_snapshot_name("", driver)  # `-{head}-{digest}`: short, never cut
        head = group[: -len(tail)] if group.endswith(tail) else ""
        if head and group_snapshot_name(head, driver) == group:
            found.append(head)
    return list(dict.fromkeys(found))


def label_workflow_ids(
    label: CutLabel, groups: Mapping[tuple[str, str], LabelledObject],
    records: Iterable[RecordFacts], drivers: Iterable[str], cluster: str,
) -> list[str]:
    """Every workflow that may still need the label: the group's (its mark, its
    snapshot and that snapshot's deletion), and those of the snapshots its name names."""
    in_namespace = [r for r in records if r.namespace == label.namespace]
    index = index_records(in_namespace)
    ids: list[str] = []
    group = groups.get((label.namespace, label.value))
    if group is not None:
        op = operation_of(group)
        if op is not None:
            ids += workflow_ids_for(op, index.get(("snapshot", op.namespace, op.label)),
                                    None, group.mark)
        elif group.mark is not None:
            ids.append(group.mark.workflow_id)
    for snapshot in snapshots_of_group(label.value, in_namespace, drivers):
        op = OperationRef(operation="snapshot", namespace=label.namespace,
                          label=label_value(snapshot), cluster=cluster)
        ids += workflow_ids_for(op, index.get(("snapshot", label.namespace, op.label)))
    return list(dict.fromkeys(ids))


def classify_cut_label(
    label: CutLabel, groups: Mapping[tuple[str, str], LabelledObject],
    records: Iterable[RecordFacts], drivers: Iterable[str],
    workflows: Mapping[str, WorkflowState], cluster: str,
) -> CutLabelVerdict:
    """keep / remove for one cut label (see the module docstring)."""
    def verdict(action: LabelAction, reason: str, ids: list[str]) -> CutLabelVerdict:
        return CutLabelVerdict(namespace=label.namespace, pvc=label.pvc, key=label.key,
                               value=label.value, action=action, reason=reason,
                               workflow_ids=ids)

    if cut_label_key(label.namespace, label.value) != label.key:
        return verdict("keep", "not a label vmsnap writes: its key is not the one derived "
                               f"from its value ({label.value!r})", [])
    ids = label_workflow_ids(label, groups, records, drivers, cluster)
    running = [i for i in ids if workflows.get(i) == "running"]
    if running:
        return verdict("keep", f"live cut: workflow {running[0]} is running", ids)
    unknown = [i for i in ids if workflows.get(i, "unknown") == "unknown"]
    if unknown:
        return verdict("keep", f"cannot tell whether workflow {unknown[0]} is running", ids)
    group = f"VolumeGroupSnapshot {label.namespace}/{label.value}"
    if (label.namespace, label.value) in groups:
        reason = f"the cut of {group} is over: no workflow of it is running"
    elif ids:
        reason = f"{group} is gone and no workflow of its snapshot is running"
    else:
        reason = f"{group} is gone and no snapshot of the namespace makes a group of that name"
    return verdict("remove", reason, ids)


def plan_cut_labels(
    labels: Iterable[CutLabel], groups: Iterable[LabelledObject],
    records: Iterable[RecordFacts], drivers: Iterable[str],
    workflows: Mapping[str, WorkflowState], cluster: str,
) -> list[CutLabelVerdict]:
    """A verdict per cut label, in the order given."""
    by_name = {(g.namespace, g.name): g for g in groups}
    records = list(records)
    drivers = sorted(set(drivers))
    return [classify_cut_label(label, by_name, records, drivers, workflows, cluster)
            for label in labels]


def cut_label_workflow_ids(
    labels: Iterable[CutLabel], groups: Iterable[LabelledObject],
    records: Iterable[RecordFacts], drivers: Iterable[str], cluster: str,
) -> list[str]:
    """Every workflow ID whose state `plan_cut_labels` needs, each once."""
    by_name = {(g.namespace, g.name): g for g in groups}
    records = list(records)
    drivers = sorted(set(drivers))
    ids: list[str] = []
    for label in labels:
        if cut_label_key(label.namespace, label.value) == label.key:
            ids += label_workflow_ids(label, by_name, records, drivers, cluster)
    return list(dict.fromkeys(ids))
