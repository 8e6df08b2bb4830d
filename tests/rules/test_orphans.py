"""The orphan classifier: every keep / orphan / too-young rule, with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.creation_marks import CreationMark
from rules.naming import clone_workflow_id as real_clone_workflow_id
from rules.naming import restore_workflow_id as real_restore_workflow_id
from rules.orphans import (
    LabelledObject,
    RecordFacts,
    SweepBounds,
    Verdict,
    WorkflowState,
    classify,
    clone_workflow_id,
    index_records,
    plan_sweep,
    restore_workflow_id,
    workflow_ids_to_ask,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=2)
INSTALLED = NOW - timedelta(days=1)
GRACE = 3600.0
HERE = "here"
BOUNDS = SweepBounds(cluster=HERE, installed_at=INSTALLED)


def mark(workflow_id: str, cluster: str = HERE) -> str:
    return CreationMark(cluster=cluster, workflow_id=workflow_id, run_id="run-1").text()


def vs(name: str = "s1-disk", snapshot: str = "s1", *, owned: bool = True,
       created: datetime | None = OLD, **extra: object) -> LabelledObject:
    extra.setdefault("created_by", mark(f"snapshot/ns/{snapshot}"))
    return LabelledObject(kind="VolumeSnapshot", namespace="ns", name=name, created=created,
                          labels={"vmsnap.io/snapshot": snapshot},
                          owner_uids=["uid-s1"] if owned else [], **extra)  # type: ignore[arg-type]


def content(name: str = "s1-content", snapshot: str = "s1",
            volume_snapshots: list[str] | None = None) -> LabelledObject:
    return LabelledObject(kind="VirtualMachineSnapshotContent", namespace="ns", name=name,
                          created=OLD, labels={"vmsnap.io/snapshot": snapshot},
                          owner_uids=["uid-s1"], volume_snapshots=volume_snapshots or [],
                          created_by=mark(f"snapshot/ns/{snapshot}"))


def pvc(label: str, value: str, name: str = "p1", **extra: object) -> LabelledObject:
    """A restored or cloned PVC, marked by the workflow its name (or annotation) names."""
    operation = label.split("/")[1]
    maker = extra.get("workflow_id") or f"{operation}/ns/{value.split(f'-{operation}-')[0]}"
    extra.setdefault("created_by", mark(str(maker)))
    return LabelledObject(kind="PersistentVolumeClaim", namespace="ns", name=name, created=OLD,
                          labels={label: value, "vmsnap.io/snapshot": "s1"},
                          **extra)  # type: ignore[arg-type]


def snap_record(claims: list[str] | None = None, phase: str = "Succeeded") -> RecordFacts:
    return RecordFacts(operation="snapshot", namespace="ns", name="s1", label="s1",
                       uid="uid-s1", phase=phase, claims=claims or [],
                       workflow_id="snapshot/ns/s1")


def decide(obj: LabelledObject, records: list[RecordFacts] | None = None,
           workflows: dict[str, WorkflowState] | None = None, grace: float = GRACE,
           bounds: SweepBounds = BOUNDS) -> Verdict:
    return classify(obj, index_records(records or []), workflows or {}, NOW, grace, bounds)


CLOSED: dict[str, WorkflowState] = {"snapshot/ns/s1": "closed",
                                    "delete-snapshot/ns/s1": "not_found"}


def test_workflow_id_rules_match_the_workflows() -> None:
    assert restore_workflow_id("c", "a", "b") == real_restore_workflow_id("c", "a", "b")
    assert clone_workflow_id("c", "a", "b") == real_clone_workflow_id("c", "a", "b")


def test_an_object_of_a_named_cluster_asks_for_that_cluster_s_workflows() -> None:
    labelled = vs(created_by=mark("snapshot/east/ns/s1", "east"))
    labelled.labels["vmsnap.io/cluster"] = "east"
    verdict = decide(labelled, workflows={"snapshot/east/ns/s1": "running"})
    assert verdict.action == "keep"
    assert verdict.workflow_ids == ["snapshot/east/ns/s1", "delete-snapshot/east/ns/s1"]


def test_record_gone_and_workflow_closed_is_an_orphan() -> None:
    verdict = decide(vs(), workflows=CLOSED)
    assert verdict.action == "orphan"
    assert "record of snapshot ns/s1 is gone" in verdict.reason
    assert verdict.workflow_ids == ["snapshot/ns/s1", "delete-snapshot/ns/s1"]


def test_running_snapshot_workflow_keeps_even_without_record() -> None:
    verdict = decide(vs(), workflows={"snapshot/ns/s1": "running"})
    assert verdict.action == "keep"
    assert verdict.reason == "live operation: workflow snapshot/ns/s1 is running"


def test_running_deletion_keeps() -> None:
    verdict = decide(vs(), workflows={"snapshot/ns/s1": "closed",
                                      "delete-snapshot/ns/s1": "running"})
    assert verdict.action == "keep" and "delete-snapshot/ns/s1" in verdict.reason


def test_record_that_claims_it_keeps() -> None:
    verdict = decide(vs(), [snap_record(["s1-disk"])], CLOSED)
    assert verdict.action == "keep"
    assert "owned by VirtualMachineSnapshot ns/s1" in verdict.reason


def test_closed_workflow_and_record_not_claiming_is_an_orphan() -> None:
    verdict = decide(vs(), [snap_record(["other"], phase="Failed")], CLOSED)
    assert verdict.action == "orphan"
    assert "is closed" in verdict.reason and "phase Failed" in verdict.reason


def test_unknown_workflow_state_never_deletes() -> None:
    assert decide(vs(), [snap_record()], {}).action == "keep"
    verdict = decide(vs(), [], {"snapshot/ns/s1": "unknown", "delete-snapshot/ns/s1": "closed"})
    assert verdict.action == "keep" and "cannot tell" in verdict.reason


def test_inside_grace_period_is_too_young() -> None:
    young = vs(created=NOW - timedelta(minutes=5))
    verdict = decide(young, workflows=CLOSED)
    assert verdict.action == "too_young"
    assert "300s" in verdict.reason and "3600s" in verdict.reason
    assert decide(young, workflows=CLOSED, grace=60).action == "orphan"


def test_missing_creation_time_counts_as_young() -> None:
    assert decide(vs(created=None), workflows=CLOSED).action == "too_young"


def test_retained_volume_snapshot_without_owner_is_kept() -> None:
    verdict = decide(vs(owned=False), workflows=CLOSED)
    assert verdict.action == "keep" and "Retain" in verdict.reason


def test_object_being_deleted_is_left_alone() -> None:
    assert decide(vs(deleting=True), workflows=CLOSED).reason == "already being deleted"


def test_unlabelled_object_is_kept() -> None:
    obj = LabelledObject(kind="VolumeSnapshot", namespace="ns", name="x", created=OLD)
    assert decide(obj).action == "keep"


def test_content_is_kept_while_its_record_exists() -> None:
    verdict = decide(content(), [snap_record(phase="Failed")], CLOSED)
    assert verdict.action == "keep" and "still exists" in verdict.reason


def test_content_goes_only_after_its_volume_snapshots() -> None:
    kept_vs = vs(name="s1-a", owned=False)  # retained: stays
    orphan_vs = vs(name="s1-b")
    both = content(volume_snapshots=["s1-a", "s1-b"])
    verdicts = plan_sweep([both, orphan_vs, kept_vs], [], CLOSED, NOW, GRACE, BOUNDS)
    assert [(v.kind, v.name, v.action) for v in verdicts] == [
        ("VolumeSnapshot", "s1-a", "keep"), ("VolumeSnapshot", "s1-b", "orphan"),
        ("VirtualMachineSnapshotContent", "s1-content", "keep")]
    assert "VolumeSnapshot ns/s1-a still exists" in verdicts[2].reason
    alone = plan_sweep([content(volume_snapshots=["s1-b"]), orphan_vs], [], CLOSED, NOW, GRACE,
                       BOUNDS)
    assert [v.action for v in alone] == ["orphan", "orphan"]
    assert alone[0].kind == "VolumeSnapshot"


def test_restore_pvc_uses_target_from_record_or_name() -> None:
    obj = pvc("vmsnap.io/restore", "web-restore-20261126-1200-ab12")
    verdict = decide(obj, workflows={"restore/ns/web": "running"})
    assert verdict.action == "keep" and verdict.workflow_ids == ["restore/ns/web"]
    gone = decide(obj, workflows={"restore/ns/web": "closed"})
    assert gone.action == "orphan" and "record of restore" in gone.reason
    record = RecordFacts(operation="restore", namespace="ns", name="r",
                         label="web-restore-20261126-1200-ab12", target="db",
                         claims=["p1"], phase="Succeeded")
    claimed = decide(obj, [record], {"restore/ns/db": "closed"})
    # the mark's workflow first, then the record's target's
    assert claimed.action == "keep" and claimed.workflow_ids == ["restore/ns/web",
                                                                 "restore/ns/db"]


def test_pvc_used_by_a_vm_is_never_an_orphan() -> None:
    obj = pvc("vmsnap.io/clone", "copy-clone-20261126-1200-ab12", used_by_vms=["copy"])
    verdict = decide(obj, workflows={"clone/ns/copy": "closed"})
    assert verdict.action == "keep" and "in use by VirtualMachine ns/copy" in verdict.reason


def test_pvc_whose_maker_cannot_be_named_is_kept() -> None:
    verdict = decide(pvc("vmsnap.io/clone", "hashedname0123", created_by=None))
    assert verdict.action == "keep" and "names no target VM" in verdict.reason


def test_clone_pvc_orphan() -> None:
    obj = pvc("vmsnap.io/clone", "copy-clone-20261126-1200-ab12")
    verdict = decide(obj, workflows={"clone/ns/copy": "not_found"})
    assert verdict.action == "orphan" and verdict.operation == "clone"


def test_workflow_ids_to_ask_are_unique() -> None:
    ids = workflow_ids_to_ask([vs("a"), vs("b"), pvc("vmsnap.io/restore", "x-restore-1")],
                              [snap_record()])
    assert ids == ["snapshot/ns/s1", "delete-snapshot/ns/s1", "restore/ns/x"]


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        plan_sweep([], [], {}, NOW, -1, BOUNDS)


def test_a_pvc_that_names_its_workflow_is_judged_by_that_workflow() -> None:
    # A shortened (hashed) name names no target VM, but the annotation names the maker.
    made = pvc("vmsnap.io/clone", "hashedname0123", workflow_id="clone/ns/long-target")
    assert workflow_ids_to_ask([made], []) == ["clone/ns/long-target"]
    running = decide(made, workflows={"clone/ns/long-target": "running"})
    assert running.action == "keep" and "clone/ns/long-target is running" in running.reason
    gone = decide(made, workflows={"clone/ns/long-target": "not_found"})
    assert gone.action == "orphan" and gone.workflow_ids == ["clone/ns/long-target"]


# ---- ownership by the creation mark ------------------------------------------------------


def test_an_unmarked_object_with_vmsnap_labels_is_kept_and_says_what_its_labels_say() -> None:
    labelled_by_a_user = pvc("vmsnap.io/restore", "web-restore-20261126-1200-ab12",
                             created_by=None)
    verdict = decide(labelled_by_a_user, workflows={"restore/ns/web": "closed"})
    assert verdict.action == "keep"
    assert verdict.reason.startswith("not made by vmsnap in this cluster: it has no creation "
                                     "mark")
    assert "by its labels alone: the record of restore ns/web-restore" in verdict.reason
    include = BOUNDS.model_copy(update={"include_older_than_install": True})
    assert decide(labelled_by_a_user, workflows={"restore/ns/web": "closed"},
                  bounds=include).action == "keep"


def test_an_unreadable_mark_is_no_mark() -> None:
    forged = vs(created_by='{"cluster": "here"}')
    verdict = decide(forged, workflows=CLOSED)
    assert verdict.action == "keep" and "no creation mark" in verdict.reason
    assert decide(vs(created_by="here/snapshot/ns/s1/run"), workflows=CLOSED).action == "keep"


def test_another_cluster_s_mark_is_kept() -> None:
    theirs = vs(created_by=mark("snapshot/ns/s1", cluster="west"))
    verdict = decide(theirs, workflows=CLOSED)
    assert verdict.action == "keep"
    assert verdict.reason.startswith("not made by vmsnap in this cluster: its creation mark "
                                     "names cluster 'west', not 'here'")


def test_a_cluster_label_that_disagrees_with_the_mark_is_kept() -> None:
    odd = vs()
    odd.labels["vmsnap.io/cluster"] = "west"
    verdict = decide(odd, workflows={"snapshot/west/ns/s1": "closed",
                                     "delete-snapshot/west/ns/s1": "not_found",
                                     "snapshot/ns/s1": "closed"})
    assert verdict.action == "keep"
    assert "cluster label ('west') and its creation mark ('here') disagree" in verdict.reason


def test_the_mark_s_workflow_is_asked_and_a_running_one_keeps() -> None:
    made = pvc("vmsnap.io/clone", "copy-clone-20261126-1200-ab12",
               created_by=mark("clone/here/ns/copy"))
    assert workflow_ids_to_ask([made], []) == ["clone/here/ns/copy", "clone/ns/copy"]
    running = decide(made, workflows={"clone/here/ns/copy": "running",
                                      "clone/ns/copy": "not_found"})
    assert running.action == "keep" and "clone/here/ns/copy is running" in running.reason
    unknown = decide(made, workflows={"clone/ns/copy": "not_found"})
    assert unknown.action == "keep" and "cannot tell whether workflow clone/here/ns/copy" \
        in unknown.reason
    closed = decide(made, workflows={"clone/here/ns/copy": "closed",
                                     "clone/ns/copy": "not_found"})
    assert closed.action == "orphan"


def test_a_mark_names_the_maker_of_a_pvc_whose_name_names_none() -> None:
    made = pvc("vmsnap.io/clone", "hashedname0123", created_by=mark("clone/here/ns/long"))
    verdict = decide(made, workflows={"clone/here/ns/long": "not_found"})
    assert verdict.action == "orphan" and verdict.workflow_ids == ["clone/here/ns/long"]


# ---- a PVC in use is never an orphan -------------------------------------------------------

ORPHAN_PVC: dict[str, WorkflowState] = {"restore/ns/web": "closed"}


@pytest.mark.parametrize("use, reason", [
    ({"used_by_pods": ["virt-launcher-web-x"]},
     "in use: Pod ns/virt-launcher-web-x mounts it"),
    ({"used_by_vmis": ["web"]}, "in use by VirtualMachineInstance ns/web"),
    ({"used_by_vms": ["web"]}, "in use by VirtualMachine ns/web"),
    ({"owner_vms": ["web"]}, "in use: owned by VirtualMachine ns/web"),
    ({"given_to_vm": "web"}, "a VM's disk: given to VirtualMachine ns/web by a restore or clone"),
])
def test_a_pvc_in_use_is_kept(use: dict[str, object], reason: str) -> None:
    obj = pvc("vmsnap.io/restore", "web-restore-20261126-1200-ab12")
    assert decide(obj, workflows=ORPHAN_PVC).action == "orphan"
    verdict = decide(obj.model_copy(update=use), workflows=ORPHAN_PVC)
    assert verdict.action == "keep" and verdict.reason == reason


# ---- older than the sweeper's install: reported only ---------------------------------------


def test_an_orphan_older_than_the_install_is_only_reported() -> None:
    installed_later = SweepBounds(cluster=HERE, installed_at=OLD + timedelta(seconds=1))
    verdict = decide(vs(), workflows=CLOSED, bounds=installed_later)
    assert verdict.action == "report"
    assert "record of snapshot ns/s1 is gone" in verdict.reason
    assert "made before the sweeper was installed (2026-11-26T10:00:01+00:00): only " \
           "reported (include_older_than_install removes it)" in verdict.reason
    asked = installed_later.model_copy(update={"include_older_than_install": True})
    assert decide(vs(), workflows=CLOSED, bounds=asked).action == "orphan"


def test_an_unknown_install_time_reports_everything() -> None:
    verdict = decide(vs(), workflows=CLOSED, bounds=SweepBounds(cluster=HERE))
    assert verdict.action == "report" and "(not known)" in verdict.reason


def test_the_grace_period_comes_before_the_install_and_keeps_nothing_of_ours() -> None:
    young = vs(created=NOW - timedelta(minutes=5))
    assert decide(young, workflows=CLOSED, bounds=SweepBounds(cluster=HERE)).action == \
        "too_young"
    kept = decide(vs(), workflows={**CLOSED, "snapshot/ns/s1": "running"},
                  bounds=SweepBounds(cluster=HERE))
    assert kept.action == "keep"


def test_a_reported_volume_snapshot_keeps_its_content() -> None:
    installed = SweepBounds(cluster=HERE, installed_at=OLD + timedelta(seconds=1))
    newer = content(volume_snapshots=["s1-b"]).model_copy(
        update={"created": NOW - timedelta(minutes=90)})
    verdicts = plan_sweep([newer, vs(name="s1-b")], [], CLOSED, NOW, GRACE, installed)
    assert [(v.kind, v.action) for v in verdicts] == [
        ("VolumeSnapshot", "report"), ("VirtualMachineSnapshotContent", "keep")]
    assert "VolumeSnapshot ns/s1-b still exists" in verdicts[1].reason


# ---- VolumeGroupSnapshots and their members -------------------------------------------------


def group(name: str = "s1-hostpath-abc123", snapshot: str = "s1", *, owned: bool = True,
          **extra: object) -> LabelledObject:
    extra.setdefault("created_by", mark(f"snapshot/ns/{snapshot}"))
    extra.setdefault("created", OLD)
    return LabelledObject(kind="VolumeGroupSnapshot", namespace="ns", name=name,
                          labels={"vmsnap.io/snapshot": snapshot},
                          owner_uids=["uid-s1"] if owned else [], **extra)  # type: ignore[arg-type]


def test_a_group_whose_workflow_is_closed_is_an_orphan_like_a_volume_snapshot() -> None:
    verdict = decide(group(), workflows=CLOSED)
    assert verdict.action == "orphan" and verdict.kind == "VolumeGroupSnapshot"
    assert "record of snapshot ns/s1 is gone" in verdict.reason
    assert decide(group(), workflows={"snapshot/ns/s1": "running"}).action == "keep"
    assert decide(group(), workflows={}).action == "keep"  # Temporal did not answer
    assert decide(group(), [snap_record(["s1-hostpath-abc123"])], CLOSED).action == "keep"
    assert "Retain" in decide(group(owned=False), workflows=CLOSED).reason
    assert decide(group(created_by=None), workflows=CLOSED).action == "keep"
    assert decide(group(created_by=mark("snapshot/ns/s1", "east")),
                  workflows=CLOSED).action == "keep"


def test_a_group_older_than_the_install_is_only_reported() -> None:
    installed_later = SweepBounds(cluster=HERE, installed_at=OLD + timedelta(seconds=1))
    assert decide(group(), workflows=CLOSED, bounds=installed_later).action == "report"
    asked = installed_later.model_copy(update={"include_older_than_install": True})
    assert decide(group(), workflows=CLOSED, bounds=asked).action == "orphan"


def test_a_member_goes_with_its_group_and_does_not_hold_the_content() -> None:
    member = vs(name="snapshot-0a1b", created_by=None, group="s1-hostpath-abc123")
    verdicts = plan_sweep([content(volume_snapshots=["snapshot-0a1b"]), member, group()], [],
                          CLOSED, NOW, GRACE, BOUNDS)
    assert [(v.kind, v.action) for v in verdicts] == [
        ("VolumeGroupSnapshot", "orphan"), ("VolumeSnapshot", "keep"),
        ("VirtualMachineSnapshotContent", "orphan")]
    assert "member of VolumeGroupSnapshot ns/s1-hostpath-abc123" in verdicts[1].reason
    kept_group = plan_sweep([content(volume_snapshots=["snapshot-0a1b"]), member,
                             group(owned=False)], [], CLOSED, NOW, GRACE, BOUNDS)
    assert [v.action for v in kept_group] == ["keep", "keep", "keep"]
    assert "VolumeSnapshot ns/snapshot-0a1b still exists" in kept_group[2].reason
