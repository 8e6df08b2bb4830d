"""Stale `vmsnap.io/cut-*` labels: which the sweeper removes, which it keeps, and why."""

from __future__ import annotations

from rules.creation_marks import CreationMark
from rules.cut_labels import (
    CutLabel,
    cut_label_workflow_ids,
    cut_labels_of,
    plan_cut_labels,
    snapshots_of_group,
)
from rules.naming import cut_label_key, group_snapshot_name
from rules.orphans import LabelledObject, RecordFacts, WorkflowState

DRIVER = "hostpath.csi.k8s.io"
HERE = "here"
GROUP = group_snapshot_name("s1", DRIVER)
OWN = "snapshot/here/ns/s1"
DELETION = "delete-snapshot/here/ns/s1"
CLOSED: dict[str, WorkflowState] = {OWN: "closed", DELETION: "not_found"}


def label(value: str = GROUP, key: str | None = None, namespace: str = "ns") -> CutLabel:
    return CutLabel(namespace=namespace, pvc="p1", pvc_uid="uid-p1",
                    key=key or cut_label_key(namespace, value), value=value)


def group(name: str = GROUP) -> LabelledObject:
    return LabelledObject(
        kind="VolumeGroupSnapshot", namespace="ns", name=name,
        labels={"vmsnap.io/snapshot": "s1", "vmsnap.io/cluster": HERE},
        created_by=CreationMark(cluster=HERE, workflow_id=OWN).text())


def record(name: str = "s1") -> RecordFacts:
    return RecordFacts(operation="snapshot", namespace="ns", name=name, label=name,
                       workflow_id=f"snapshot/here/ns/{name}")


def decide(found: CutLabel, groups: list[LabelledObject] | None = None,
           records: list[RecordFacts] | None = None,
           workflows: dict[str, WorkflowState] | None = None) -> tuple[str, str, list[str]]:
    [verdict] = plan_cut_labels([found], groups or [], records or [], [DRIVER],
                                workflows or {}, HERE)
    assert (verdict.pvc, verdict.key, verdict.value) == ("p1", found.key, found.value)
    return verdict.action, verdict.reason, verdict.workflow_ids


def test_only_cut_labels_are_read_off_a_pvc() -> None:
    found = cut_labels_of("ns", "p1", "u", {"app": "web", "vmsnap.io/snapshot": "s1",
                                            "vmsnap.io/cut-0123": "g"})
    assert [(x.key, x.value, x.pvc_uid) for x in found] == [("vmsnap.io/cut-0123", "g", "u")]


def test_a_group_name_leads_to_its_snapshot_by_record_or_by_its_head() -> None:
    assert snapshots_of_group(GROUP, [], [DRIVER]) == ["s1"]
    assert snapshots_of_group(GROUP, [record()], [DRIVER, "other.csi"]) == ["s1"]
    assert snapshots_of_group(GROUP, [], ["other.csi"]) == []
    long_name = "a-snapshot-with-a-name-so-long-that-its-group-name-is-cut-short"
    cut_short = group_snapshot_name(long_name, DRIVER)
    assert snapshots_of_group(cut_short, [], [DRIVER]) == []
    assert snapshots_of_group(cut_short, [record(long_name)], [DRIVER]) == [long_name]


def test_a_label_of_a_running_cut_is_kept() -> None:
    action, reason, ids = decide(label(), [], [record()], {OWN: "running"})
    assert action == "keep" and reason == f"live cut: workflow {OWN} is running"
    assert ids == [OWN, DELETION]
    assert decide(label(), [group()], [], {OWN: "running"})[0] == "keep"


def test_a_label_is_kept_while_temporal_cannot_tell() -> None:
    action, reason, _ = decide(label(), [group()], [], {OWN: "closed"})
    assert action == "keep" and f"cannot tell whether workflow {DELETION}" in reason


def test_a_label_whose_group_exists_and_whose_workflow_is_closed_is_stale() -> None:
    action, reason, ids = decide(label(), [group()], [record()], CLOSED)
    assert action == "remove" and reason.startswith(f"the cut of VolumeGroupSnapshot ns/{GROUP}")
    assert ids == [OWN, DELETION]


def test_a_label_whose_group_is_gone_is_stale_once_its_snapshot_is_done() -> None:
    action, reason, _ = decide(label(), [], [], CLOSED)
    assert action == "remove" and "is gone and no workflow of its snapshot" in reason
    unattributed = group_snapshot_name("x" * 60, DRIVER)
    action, reason, ids = decide(label(unattributed))
    assert action == "remove" and ids == []
    assert "no snapshot of the namespace makes a group of that name" in reason


def test_a_label_vmsnap_would_not_write_is_kept() -> None:
    action, reason, ids = decide(label(key="vmsnap.io/cut-0000000000000000"), [], [], CLOSED)
    assert action == "keep" and "not a label vmsnap writes" in reason and ids == []
    moved = label(key=cut_label_key("other", GROUP))
    assert decide(moved, [], [], CLOSED)[0] == "keep"


def test_the_workflows_to_ask_are_those_of_vmsnap_s_labels_each_once() -> None:
    labels = [label(), label(), label(key="vmsnap.io/cut-0000000000000000")]
    assert cut_label_workflow_ids(labels, [group()], [record()], [DRIVER], HERE) == [
        OWN, DELETION]
