"""How a restored or cloned VM's volumes point at their new PVCs (KubeVirt's rules)."""

from __future__ import annotations

import copy
from typing import Any

from rules.restored_volumes import (
    POPULATED_FOR,
    carried_metadata,
    is_template_backed,
    restored_pvc_name,
    restored_spec,
    volumes_without_backup,
)


def vm() -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1"},
        "spec": {
            "dataVolumeTemplates": [
                {"metadata": {"name": "web-1-root"},
                 "spec": {"source": {"http": {"url": "http://x/disk.img"}},
                          "storage": {"resources": {"requests": {"storage": "1Gi"}}}}},
                {"metadata": {"name": "web-1-scratch"}, "spec": {"source": {"blank": {}}}},
            ],
            "template": {"spec": {
                "domain": {"devices": {"disks": [
                    {"name": "root"}, {"name": "data"}, {"name": "scratch"},
                    {"name": "imported"}, {"name": "cloudinit"}]}},
                "volumes": [
                    {"name": "root", "dataVolume": {"name": "web-1-root"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "web-1-data"}},
                    {"name": "scratch", "dataVolume": {"name": "web-1-scratch"}},
                    {"name": "imported", "dataVolume": {"name": "shared-image"}},
                    {"name": "cloudinit", "cloudInitNoCloud": {"userData": "x"}},
                    {"name": "dump", "memoryDump": {"claimName": "web-1-dump"}},
                ]}},
        },
    }


def volumes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in spec["template"]["spec"]["volumes"]}


def test_templates_are_renamed_and_plain_volumes_repointed() -> None:
    source = vm()
    before = copy.deepcopy(source)
    spec = restored_spec(source, {"root": "r-root", "data": "r-data", "scratch": "r-scratch",
                                  "imported": "r-imported"})
    assert source == before, "the snapshot's copy is not changed"
    got = volumes(spec)
    assert got["root"] == {"name": "root", "dataVolume": {"name": "r-root"}}
    assert got["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "r-data"}}
    assert got["imported"] == {"name": "imported",
                               "persistentVolumeClaim": {"claimName": "r-imported"}}
    assert "dump" not in got and "cloudinit" in got
    names = [t["metadata"]["name"] for t in spec["dataVolumeTemplates"]]
    assert names == ["r-root", "r-scratch"]
    assert spec["dataVolumeTemplates"][0]["spec"] == vm()["spec"]["dataVolumeTemplates"][0]["spec"]


def test_a_dropped_volume_leaves_with_its_disk_and_template() -> None:
    spec = restored_spec(vm(), {"root": "r-root", "data": "r-data"}, drop=["scratch"])
    assert "scratch" not in volumes(spec)
    disks = [d["name"] for d in spec["template"]["spec"]["domain"]["devices"]["disks"]]
    assert "scratch" not in disks and "root" in disks
    assert [t["metadata"]["name"] for t in spec["dataVolumeTemplates"]] == ["r-root"]


def test_in_place_a_left_out_volume_keeps_what_the_vm_has_now() -> None:
    now = {"name": "scratch", "dataVolume": {"name": "web-1-scratch-v2"}}
    template = {"metadata": {"name": "web-1-scratch-v2"}, "spec": {"source": {"blank": {}}}}
    spec = restored_spec(vm(), {"root": "r-root", "data": "r-data"}, keep={"scratch": now},
                         keep_templates=[template])
    assert volumes(spec)["scratch"] == now
    assert [t["metadata"]["name"] for t in spec["dataVolumeTemplates"]] == [
        "r-root", "web-1-scratch-v2"]


def test_which_volumes_a_snapshot_left_out() -> None:
    assert volumes_without_backup(vm(), ["root", "data"]) == ["scratch", "imported"]
    assert volumes_without_backup(vm(), ["root", "data", "scratch", "imported"]) == []
    assert is_template_backed(vm(), "root") and not is_template_backed(vm(), "imported")
    assert not is_template_backed(vm(), "data")


def test_names_by_policy() -> None:
    assert restored_pvc_name("web-1-restore-x", "web-1", "root", "RandomizeNames") == \
        "web-1-restore-x-root"
    assert restored_pvc_name("web-1-restore-x", "web-1", "root", "PrefixTargetName") == \
        "web-1-root"
    long = restored_pvc_name("r" * 60, "t", "volume", "RandomizeNames")
    assert len(long) <= 63


def test_what_travels_from_the_source_pvc() -> None:
    labels, annotations = carried_metadata({"metadata": {
        "labels": {"app": "web", "persistent-state-for": "web-1"},
        "annotations": {"cdi.kubevirt.io/storage.contentType": "kubevirt",
                        "cdi.kubevirt.io/storage.import.endpoint": "http://x",
                        POPULATED_FOR: "old", "pv.kubernetes.io/bind-completed": "yes",
                        "volume.kubernetes.io/selected-node": "n1", "team/owner": "a"}}})
    assert labels == {"app": "web"}
    assert annotations == {"cdi.kubevirt.io/storage.contentType": "kubevirt", "team/owner": "a"}
