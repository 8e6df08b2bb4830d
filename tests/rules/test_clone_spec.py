"""The clone's VM spec: hardware identity, filters, patches, volumes, run strategy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.clone_spec import (
    CloneSpecError,
    clone_vm,
    filter_keys,
    key_kept,
    parse_patches,
)
from rules.patch_policy import PatchRefused

DEMO = Path(__file__).resolve().parents[2] / "simulator" / "seeds" / "demo.yaml"
CLAIMS = {"rootdisk": "c-root", "datadisk1": "c-data-1", "datadisk2": "c-data-2"}


@pytest.fixture
def web1() -> dict[str, Any]:
    for doc in yaml.safe_load_all(DEMO.read_text()):
        if doc and doc.get("kind") == "VirtualMachine" and doc["metadata"]["name"] == "web-1":
            doc["metadata"]["uid"] = "abc"
            doc["metadata"]["resourceVersion"] = "7"
            doc["metadata"]["annotations"]["note/keep"] = "yes"
            doc["spec"]["template"]["spec"]["domain"]["firmware"]["uuid"] = "u-1"
            doc["status"] = {"printableStatus": "Running"}
            return dict(doc)
    raise AssertionError("web-1 not in the demo seed")


def domain(vm: dict[str, Any]) -> dict[str, Any]:
    return vm["spec"]["template"]["spec"]["domain"]


def test_identity_cleared_and_hardware_kept(web1: dict[str, Any]) -> None:
    before = copy.deepcopy(web1)
    clone = clone_vm(web1, "web-2", CLAIMS)
    assert web1 == before, "the source must not be mutated"
    assert clone["metadata"] == {
        "name": "web-2", "namespace": "demo",
        "labels": {"app": "web", "kubevirt.io/vm": "web-1"},
        "annotations": {"sim.vmsnap.io/guest-agent": "connected", "note/keep": "yes"}}
    assert "status" not in clone
    assert "macAddress" not in domain(clone)["devices"]["interfaces"][0]
    assert domain(clone)["firmware"] == {}
    assert domain(clone)["cpu"] == domain(web1)["cpu"]
    assert domain(clone)["memory"] == domain(web1)["memory"]
    assert domain(clone)["devices"]["disks"] == domain(web1)["devices"]["disks"]
    assert clone["spec"]["runStrategy"] == "Halted"


def test_new_mac_and_serial(web1: dict[str, Any]) -> None:
    clone = clone_vm(web1, "web-2", CLAIMS, new_mac_addresses={"default": "02:00:00:00:00:99"},
                     new_smbios_serial="serial-2", run_strategy="Always")
    assert domain(clone)["devices"]["interfaces"][0]["macAddress"] == "02:00:00:00:00:99"
    assert domain(clone)["firmware"] == {"serial": "serial-2"}
    assert clone["spec"]["runStrategy"] == "Always"


def test_unknown_interface_refused(web1: dict[str, Any]) -> None:
    with pytest.raises(CloneSpecError, match=r"eth9.*it has default"):
        clone_vm(web1, "web-2", CLAIMS, new_mac_addresses={"eth9": "02:00:00:00:00:01"})


def test_volumes_repointed_and_datavolume_templates_renamed(web1: dict[str, Any]) -> None:
    clone = clone_vm(web1, "web-2", CLAIMS)
    volumes = {v["name"]: v for v in clone["spec"]["template"]["spec"]["volumes"]}
    assert volumes["rootdisk"]["persistentVolumeClaim"] == {"claimName": "c-root"}
    assert volumes["datadisk1"]["persistentVolumeClaim"] == {"claimName": "c-data-1"}
    assert volumes["datadisk2"] == {"name": "datadisk2", "dataVolume": {"name": "c-data-2"}}
    [template] = clone["spec"]["dataVolumeTemplates"]
    source = next(t for t in web1["spec"]["dataVolumeTemplates"]
                  if t["metadata"]["name"] == "web-1-data-2")
    assert template["metadata"]["name"] == "c-data-2"
    assert template["spec"] == source["spec"]
    assert volumes["tools"] == next(v for v in web1["spec"]["template"]["spec"]["volumes"]
                                    if v["name"] == "tools")
    assert "cloudInitNoCloud" in volumes["cloudinitdisk"]


def test_a_dropped_volume_goes_with_its_disk_and_template(web1: dict[str, Any]) -> None:
    clone = clone_vm(web1, "web-2", {"rootdisk": "c-root", "datadisk1": "c-data-1"},
                     drop=["datadisk2"])
    spec = clone["spec"]["template"]["spec"]
    assert "datadisk2" not in {v["name"] for v in spec["volumes"]}
    assert "datadisk2" not in {d["name"] for d in spec["domain"]["devices"]["disks"]}
    assert "dataVolumeTemplates" not in clone["spec"]


def test_running_replaced_by_run_strategy(web1: dict[str, Any]) -> None:
    web1["spec"].pop("runStrategy")
    web1["spec"]["running"] = True
    clone = clone_vm(web1, "web-2", CLAIMS, run_strategy="Manual")
    assert "running" not in clone["spec"] and clone["spec"]["runStrategy"] == "Manual"
    with pytest.raises(CloneSpecError, match="run_strategy 'Sometimes'"):
        clone_vm(web1, "web-2", CLAIMS, run_strategy="Sometimes")


@pytest.mark.parametrize(("filters", "kept"), [
    (None, {"app", "kubevirt.io/vm", "team", "kubevirt.io/x"}),
    ([], {"app", "kubevirt.io/vm", "team", "kubevirt.io/x"}),
    (["*"], {"app", "kubevirt.io/vm", "team", "kubevirt.io/x"}),
    (["app"], {"app"}),
    (["kubevirt.io/*"], {"kubevirt.io/vm", "kubevirt.io/x"}),
    (["!kubevirt.io/*"], {"app", "team"}),
    (["*", "!kubevirt.io/vm"], {"app", "team", "kubevirt.io/x"}),
    (["kubevirt.io/*", "!kubevirt.io/*"], set()),  # negation wins
    (["app", "!app"], set()),
])
def test_filters(filters: list[str] | None, kept: set[str]) -> None:
    labels = {"app": "a", "kubevirt.io/vm": "b", "team": "c", "kubevirt.io/x": "d"}
    assert set(filter_keys(labels, filters)) == kept


def test_filter_applied_to_clone(web1: dict[str, Any]) -> None:
    clone = clone_vm(web1, "web-2", CLAIMS, label_filters=["!kubevirt.io/*"],
                     annotation_filters=["note/*"], extra_labels={"vmsnap.io/clone": "c"})
    assert clone["metadata"]["labels"] == {"app": "web", "vmsnap.io/clone": "c"}
    assert clone["metadata"]["annotations"] == {"note/keep": "yes"}


@pytest.mark.parametrize("bad", ["", "!", "a*b", "!!x", "a!b"])
def test_bad_filters_refused(web1: dict[str, Any], bad: str) -> None:
    with pytest.raises(CloneSpecError):
        clone_vm(web1, "web-2", CLAIMS, label_filters=[bad])


def test_key_kept_only_negations() -> None:
    assert key_kept("x", ["!y"]) and not key_kept("y", ["!y"])


def test_patches_applied_last(web1: dict[str, Any]) -> None:
    patches = [
        json.dumps({"op": "replace", "path": "/spec/template/spec/domain/cpu/cores", "value": 8}),
        json.dumps([{"op": "add", "path": "/metadata/labels/tier", "value": "gold"},
                    {"op": "remove", "path": "/metadata/annotations/note~1keep"}]),
    ]
    clone = clone_vm(web1, "web-2", CLAIMS, patches=patches)
    assert domain(clone)["cpu"] == {"cores": 8}
    assert clone["metadata"]["labels"]["tier"] == "gold"
    assert "note/keep" not in clone["metadata"]["annotations"]


@pytest.mark.parametrize("patch", [
    {"op": "replace", "path": "/metadata/name", "value": "evil"},
    {"op": "add", "path": "/metadata/namespace", "value": "other"},
    {"op": "add", "path": "/status/x", "value": 1},
    {"op": "replace", "path": "/spec", "value": {}},
    {"op": "copy", "from": "/metadata/name", "path": "/spec/x"},
    {"op": "frobnicate", "path": "/spec/x"},
    {"path": "/spec/x", "value": 1},
])
def test_patch_outside_allowed_paths_refused(web1: dict[str, Any], patch: dict[str, Any]) -> None:
    with pytest.raises((CloneSpecError, PatchRefused)):
        clone_vm(web1, "web-2", CLAIMS, patches=[json.dumps(patch)])


def test_no_patch_removes_the_label_naming_the_clone(web1: dict[str, Any]) -> None:
    """A whole label map replaced by a patch still carries the clone's own label: the
    saga finds (and deletes) the VM by it."""
    patch = {"op": "replace", "path": "/metadata/labels", "value": {"tier": "gold"}}
    clone = clone_vm(web1, "web-2", CLAIMS, patches=[json.dumps(patch)],
                     extra_labels={"vmsnap.io/clone": "c"})
    assert clone["metadata"]["labels"] == {"tier": "gold", "vmsnap.io/clone": "c"}


def test_patch_not_json_or_not_applying(web1: dict[str, Any]) -> None:
    with pytest.raises(CloneSpecError, match="not JSON"):
        parse_patches(["{nope"])
    remove_a_label = json.dumps({"op": "remove", "path": "/metadata/labels/nothing"})
    with pytest.raises(CloneSpecError, match="does not apply"):
        clone_vm(web1, "web-2", CLAIMS, patches=[remove_a_label])


def test_target_required(web1: dict[str, Any]) -> None:
    with pytest.raises(CloneSpecError, match="target"):
        clone_vm(web1, "", CLAIMS)


def test_clone_of_a_clone(web1: dict[str, Any]) -> None:
    first = clone_vm(web1, "web-2", CLAIMS, new_smbios_serial="s2")
    second = clone_vm(first, "web-3", {"rootdisk": "d-root"})
    assert second["metadata"]["name"] == "web-3"
    assert domain(second)["firmware"] == {}
    vols = {v["name"]: v for v in second["spec"]["template"]["spec"]["volumes"]}
    assert vols["rootdisk"]["persistentVolumeClaim"]["claimName"] == "d-root"
    assert vols["datadisk1"]["persistentVolumeClaim"]["claimName"] == "c-data-1"


def test_our_marks_on_the_source_do_not_travel(web1: dict[str, Any]) -> None:
    """A restored (or itself cloned) source carries vmsnap.io/ labels naming those
    operations; the copy names only the clone that made it, whatever the filters."""
    source = copy.deepcopy(web1)
    source["metadata"].setdefault("labels", {})["vmsnap.io/restore"] = "web-1-restore-x"
    source["metadata"].setdefault("annotations", {})["vmsnap.io/lock"] = "{}"
    clone = clone_vm(source, "web-2", CLAIMS, label_filters=["*"], annotation_filters=["*"],
                     extra_labels={"vmsnap.io/clone": "c"})
    assert {k for k in clone["metadata"]["labels"] if k.startswith("vmsnap.io/")} == {
        "vmsnap.io/clone"}
    assert not any(k.startswith("vmsnap.io/") for k in clone["metadata"].get("annotations", {}))
    assert clone["metadata"]["labels"]["app"] == "web"


def test_a_bad_mac_is_refused_with_the_input_not_at_the_vm_step() -> None:
    from pydantic import ValidationError

    from contracts.clone import CloneVirtualMachineInput

    with pytest.raises(ValidationError, match="not a MAC address"):
        CloneVirtualMachineInput(namespace="ns", source_vm="web-1", target="web-2",
                                 new_mac_addresses={"default": "02:00:00:00:00"})
    ok = CloneVirtualMachineInput(namespace="ns", source_vm="web-1", target="web-2",
                                  new_mac_addresses={"default": "02:00:00:00:00:01"})
    assert ok.new_mac_addresses == {"default": "02:00:00:00:00:01"}
