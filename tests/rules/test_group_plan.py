"""Which disks a snapshot cuts together (rules.group_plan) and the names it gives them."""

from __future__ import annotations

from typing import Any

import pytest

from rules.group_plan import default_group_classes, plan_groups
from rules.models import IncludedVolume
from rules.naming import MAX_LABEL, cut_label_key, group_snapshot_name


def disk(name: str, driver: str) -> IncludedVolume:
    return IncludedVolume(volume_name=name, pvc_name=f"pvc-{name}", storage_class="sc",
                          snapshot_class=f"{driver}-snapclass", driver=driver)


def group_class(name: str, driver: str, default: bool = True, **metadata: Any) -> dict[str, Any]:
    annotations = {"groupsnapshot.storage.kubernetes.io/is-default-class": "true"} if default \
        else {}
    return {"metadata": {"name": name, "annotations": annotations, **metadata},
            "driver": driver, "deletionPolicy": "Delete"}


CLASSES = [group_class("fast-group", "fast.csi"), group_class("slow-group", "slow.csi",
                                                               default=False)]


def test_auto_groups_two_or_more_disks_of_a_driver_with_a_default_class() -> None:
    disks = [disk("root", "fast.csi"), disk("data", "fast.csi"), disk("log", "slow.csi"),
             disk("lone", "other.csi")]
    plan = plan_groups("snap", "ns", disks, CLASSES, "auto")
    assert plan.refusal is None
    assert [(g.group_class, g.driver, g.volumes, g.pvcs) for g in plan.groups] == [
        ("fast-group", "fast.csi", ["root", "data"], ["pvc-root", "pvc-data"])]
    group = plan.groups[0]
    assert group.name == group_snapshot_name("snap", "fast.csi")
    assert group.label_key == cut_label_key("ns", group.name)


def test_auto_leaves_a_lone_disk_to_a_volume_snapshot_and_never_groups_nothing() -> None:
    assert plan_groups("snap", "ns", [disk("root", "fast.csi")], CLASSES, "auto").groups == []
    disks = [disk("root", "fast.csi"), disk("data", "fast.csi")]
    assert plan_groups("snap", "ns", disks, CLASSES, "never").groups == []


def test_required_groups_a_lone_disk_and_refuses_disks_without_a_default_class() -> None:
    plan = plan_groups("snap", "ns", [disk("root", "fast.csi")], CLASSES, "required")
    assert [g.volumes for g in plan.groups] == [["root"]] and plan.refusal is None
    refused = plan_groups("snap", "ns", [disk("root", "fast.csi"), disk("log", "slow.csi")],
                          CLASSES, "required")
    assert refused.refusal is not None
    assert "log (driver slow.csi)" in refused.refusal and "root" not in refused.refusal


def test_several_defaults_or_a_class_being_deleted_make_no_default() -> None:
    classes = [group_class("a", "fast.csi"), group_class("b", "fast.csi"),
               group_class("c", "slow.csi", deletionTimestamp="2026-01-01T00:00:00Z"),
               group_class("d", "ok.csi")]
    assert default_group_classes(classes) == {"ok.csi": "d"}


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, required or never"):
        plan_groups("snap", "ns", [], CLASSES, "sometimes")  # type: ignore[arg-type]


def test_names_are_deterministic_bounded_and_distinct_per_driver() -> None:
    long = "s" * 80
    name = group_snapshot_name(long, "hostpath.csi.k8s.io")
    assert len(name) <= MAX_LABEL and name == group_snapshot_name(long, "hostpath.csi.k8s.io")
    assert group_snapshot_name("snap", "a.one") != group_snapshot_name("snap", "a.two")
    assert group_snapshot_name("snap", "hostpath.csi.k8s.io").startswith("snap-hostpath-")
    key = cut_label_key("ns", "g")
    assert key.startswith("vmsnap.io/cut-") and len(key.split("cut-")[1]) == 16
    assert key != cut_label_key("other", "g")
