"""The eligibility rules of `rules.volumes.select_volumes`, one rule per test."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rules.models import ExcludedVolume, IncludedVolume
from rules.volumes import DEFAULT_CLASS_ANNOTATION, choose_snapshot_class, select_volumes
from simulator.reference import VENDORED_REFERENCE

REFERENCE_EXAMPLES = VENDORED_REFERENCE / "examples"


def vm(*volumes: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm1", "namespace": "ns"},
        "spec": {"template": {"spec": {"volumes": list(volumes)}}},
    }


def pvc_volume(name: str, claim: str, hotpluggable: bool | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if hotpluggable is not None:
        source["hotpluggable"] = hotpluggable
    return {"name": name, "persistentVolumeClaim": source}


def dv_volume(name: str, dv: str) -> dict[str, Any]:
    return {"name": name, "dataVolume": {"name": dv}}


def pvc(name: str, storage_class: str | None = "fast", phase: str = "Bound",
        deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ns"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        metadata["finalizers"] = ["kubernetes.io/pvc-protection"]
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": metadata, "spec": spec, "status": {"phase": phase}}


def sc(name: str, provisioner: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "provisioner": provisioner}


def vsc(name: str, driver: str, default: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if default is not None:
        metadata["annotations"] = {DEFAULT_CLASS_ANNOTATION: default}
    return {"metadata": metadata, "driver": driver, "deletionPolicy": "Delete"}


STORAGE = {"fast": sc("fast", "fast.csi.example.com"),
           "local": sc("local", "kubernetes.io/no-provisioner")}
SNAPSHOT_CLASSES = [vsc("fast-snap", "fast.csi.example.com")]


def by_name(pvcs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in pvcs}


def only_excluded(selection_vm: dict[str, Any], pvcs: list[dict[str, Any]],
                  storage: dict[str, Any] | None = None,
                  classes: list[dict[str, Any]] | None = None) -> ExcludedVolume:
    selection = select_volumes(selection_vm, by_name(pvcs), storage or STORAGE,
                               SNAPSHOT_CLASSES if classes is None else classes)
    assert selection.included == []
    assert len(selection.excluded) == 1
    return selection.excluded[0]


def test_a_bound_pvc_with_one_matching_class_is_included() -> None:
    selection = select_volumes(vm(pvc_volume("root", "disk-a")), by_name([pvc("disk-a")]),
                               STORAGE, SNAPSHOT_CLASSES)
    assert selection.included == [IncludedVolume(
        volume_name="root", pvc_name="disk-a", storage_class="fast",
        snapshot_class="fast-snap", driver="fast.csi.example.com", hotpluggable=False)]
    assert selection.excluded == []
    assert not selection.partial


def test_a_datavolume_is_snapshotted_through_the_pvc_of_the_same_name() -> None:
    selection = select_volumes(vm(dv_volume("root", "alpine-dv")), by_name([pvc("alpine-dv")]),
                               STORAGE, SNAPSHOT_CLASSES)
    assert [(v.volume_name, v.pvc_name) for v in selection.included] == [("root", "alpine-dv")]


def test_container_disk_and_cloud_init_are_never_snapshotted_and_do_not_make_it_partial() -> None:
    selection = select_volumes(
        vm({"name": "containerdisk", "containerDisk": {"image": "quay.io/x/y"}},
           {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": "#cloud-config"}},
           {"name": "config", "cloudInitConfigDrive": {"userData": "x"}},
           {"name": "scratch", "emptyDisk": {"capacity": "1Gi"}},
           pvc_volume("root", "disk-a")),
        by_name([pvc("disk-a")]), STORAGE, SNAPSHOT_CLASSES)
    assert [v.volume_name for v in selection.included] == ["root"]
    assert [(v.volume_name, v.snapshottable_type) for v in selection.excluded] == [
        ("containerdisk", False), ("cloudinitdisk", False), ("config", False),
        ("scratch", False)]
    assert "containerDisk volume" in selection.excluded[0].reason
    assert "cloudInitNoCloud volume" in selection.excluded[1].reason
    assert "emptyDisk volume" in selection.excluded[3].reason
    assert not selection.partial


def test_persistent_hotplug_volume_is_included_and_flagged() -> None:
    selection = select_volumes(
        vm(pvc_volume("root", "disk-a"), pvc_volume("hot", "disk-hot", hotpluggable=True)),
        by_name([pvc("disk-a"), pvc("disk-hot")]), STORAGE, SNAPSHOT_CLASSES)
    assert [(v.volume_name, v.hotpluggable) for v in selection.included] == [
        ("root", False), ("hot", True)]


def test_a_volume_only_in_the_vmi_is_not_a_candidate() -> None:
    # The VMI (not passed in) may carry a hot-plugged volume; only the VM spec counts.
    machine = vm(pvc_volume("root", "disk-a"))
    machine["status"] = {"volumeRequests": [{"addVolume": {"name": "vmi-only"}}]}
    selection = select_volumes(machine, by_name([pvc("disk-a"), pvc("vmi-only-pvc")]),
                               STORAGE, SNAPSHOT_CLASSES)
    assert [v.pvc_name for v in selection.included] == ["disk-a"]
    assert selection.excluded == []


def test_missing_pvc_is_excluded_and_makes_it_partial() -> None:
    selection = select_volumes(vm(pvc_volume("root", "disk-a"), pvc_volume("data", "gone")),
                               by_name([pvc("disk-a")]), STORAGE, SNAPSHOT_CLASSES)
    assert selection.excluded == [ExcludedVolume(
        volume_name="data", reason='PVC "gone" not found', snapshottable_type=True,
        pvc_name="gone")]
    assert selection.partial


def test_missing_datavolume_pvc_names_the_datavolume() -> None:
    excluded = only_excluded(vm(dv_volume("root", "dv1")), [])
    assert excluded.reason == 'PVC "dv1" (of DataVolume "dv1") not found'


@pytest.mark.parametrize("phase", ["Pending", "Lost"])
def test_unbound_pvc_is_excluded_with_its_phase(phase: str) -> None:
    excluded = only_excluded(vm(pvc_volume("root", "disk-a")), [pvc("disk-a", phase=phase)])
    assert excluded.reason == f'PVC "disk-a" is not Bound (phase {phase})'
    assert excluded.snapshottable_type


def test_pvc_without_status_is_reported_as_unknown_phase() -> None:
    claim = pvc("disk-a")
    del claim["status"]
    excluded = only_excluded(vm(pvc_volume("root", "disk-a")), [claim])
    assert "phase unknown" in excluded.reason


def test_terminating_pvc_is_excluded() -> None:
    excluded = only_excluded(vm(pvc_volume("root", "disk-a")), [pvc("disk-a", deleting=True)])
    assert excluded.reason == 'PVC "disk-a" is being deleted'


def test_storage_class_without_snapshot_class_gives_an_actionable_reason() -> None:
    excluded = only_excluded(vm(pvc_volume("root", "disk-a")), [pvc("disk-a", "local")])
    assert excluded.reason.startswith(
        'storage class "local" (provisioner kubernetes.io/no-provisioner) has no '
        "VolumeSnapshotClass")
    assert "driver kubernetes.io/no-provisioner" in excluded.reason


def test_no_snapshot_classes_at_all() -> None:
    excluded = only_excluded(vm(pvc_volume("root", "disk-a")), [pvc("disk-a")], classes=[])
    assert "has no VolumeSnapshotClass" in excluded.reason


def test_missing_storage_class_and_pvc_without_class() -> None:
    assert only_excluded(vm(pvc_volume("root", "disk-a")), [pvc("disk-a", "nope")]).reason == (
        'storage class "nope" of PVC "disk-a" not found')
    assert "has no storage class" in only_excluded(
        vm(pvc_volume("root", "disk-a")), [pvc("disk-a", None)]).reason
    assert "has no storage class" in only_excluded(
        vm(pvc_volume("root", "disk-a")), [pvc("disk-a", "")]).reason


def test_several_classes_use_the_default_one() -> None:
    classes = [vsc("a", "fast.csi.example.com"),
               vsc("b", "fast.csi.example.com", default="true"),
               vsc("c", "fast.csi.example.com", default="false"),
               vsc("other-driver", "other.csi.example.com", default="true")]
    selection = select_volumes(vm(pvc_volume("root", "disk-a")), by_name([pvc("disk-a")]),
                               STORAGE, classes)
    assert [v.snapshot_class for v in selection.included] == ["b"]


def test_several_classes_without_default_is_an_error_for_that_volume() -> None:
    classes = [vsc("b", "fast.csi.example.com"), vsc("a", "fast.csi.example.com", "false")]
    selection = select_volumes(
        vm(pvc_volume("root", "disk-a"), pvc_volume("data", "disk-b")),
        by_name([pvc("disk-a"), pvc("disk-b", "local")]),
        STORAGE, [*classes, vsc("local-snap", "kubernetes.io/no-provisioner")])
    assert [v.volume_name for v in selection.included] == ["data"]
    (excluded,) = selection.excluded
    assert excluded.volume_name == "root"
    assert excluded.reason == (
        "2 VolumeSnapshotClasses for driver fast.csi.example.com (a, b) and none is the "
        f'default; annotate one with {DEFAULT_CLASS_ANNOTATION}: "true"')


def test_default_annotation_must_be_exactly_true() -> None:
    classes = [vsc("a", "fast.csi.example.com", "True"), vsc("b", "fast.csi.example.com", "yes")]
    result = choose_snapshot_class("fast", "fast.csi.example.com", classes)
    assert isinstance(result, str) and "none is the default" in result


def test_several_defaults_are_refused_rather_than_guessed() -> None:
    classes = [vsc("a", "fast.csi.example.com", "true"), vsc("b", "fast.csi.example.com", "true")]
    result = choose_snapshot_class("fast", "fast.csi.example.com", classes)
    assert isinstance(result, str)
    assert "are marked default (a, b)" in result


def test_order_of_volumes_is_kept_and_each_gets_its_own_reason() -> None:
    selection = select_volumes(
        vm(pvc_volume("v1", "p1"), {"name": "v2", "containerDisk": {"image": "x"}},
           pvc_volume("v3", "p3"), dv_volume("v4", "p4"), pvc_volume("v5", "p5")),
        by_name([pvc("p1"), pvc("p3", phase="Pending"), pvc("p4"), pvc("p5", "local")]),
        STORAGE, SNAPSHOT_CLASSES)
    assert [v.volume_name for v in selection.included] == ["v1", "v4"]
    assert [v.volume_name for v in selection.excluded] == ["v2", "v3", "v5"]
    assert selection.partial


def test_a_vm_without_volumes_selects_nothing() -> None:
    machine = vm()
    del machine["spec"]["template"]["spec"]["volumes"]
    selection = select_volumes(machine, {}, STORAGE, SNAPSHOT_CLASSES)
    assert selection.included == [] and selection.excluded == []


def test_volume_naming_no_claim_is_excluded() -> None:
    excluded = only_excluded(vm({"name": "root", "persistentVolumeClaim": {"claimName": ""}}), [])
    assert excluded.reason == "persistentVolumeClaim volume names no PVC"
    assert excluded.snapshottable_type


def test_malformed_volume_list_is_refused() -> None:
    machine = vm()
    machine["spec"]["template"]["spec"]["volumes"] = {"name": "x"}
    with pytest.raises(ValueError, match="must be a list"):
        select_volumes(machine, {}, STORAGE, SNAPSHOT_CLASSES)


def test_kubevirt_examples() -> None:
    """KubeVirt's own example VMs: container disk + cloud-init only, DataVolume, two PVCs."""
    def load(name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((REFERENCE_EXAMPLES / name).read_text())
        return loaded

    storage = {"local": sc("local", "hostpath.csi.k8s.io")}
    classes = [vsc("snap", "hostpath.csi.k8s.io")]
    cirros = select_volumes(load("vm-cirros.yaml"), {}, storage, classes)
    assert cirros.included == [] and not cirros.partial
    assert [v.volume_name for v in cirros.excluded] == ["containerdisk", "cloudinitdisk"]

    dv = select_volumes(load("vm-alpine-datavolume.yaml"),
                        by_name([pvc("alpine-dv", "local")]), storage, classes)
    assert [(v.volume_name, v.pvc_name) for v in dv.included] == [("datavolumedisk1", "alpine-dv")]

    multi = select_volumes(load("vm-alpine-multipvc.yaml"),
                           by_name([pvc("disk-alpine", "local")]), storage, classes)
    assert [v.pvc_name for v in multi.included] == ["disk-alpine"]
    assert [(v.pvc_name, v.reason) for v in multi.excluded] == [
        ("disk-custom", 'PVC "disk-custom" not found')]


def test_persistent_tpm_state_is_a_volume_of_the_snapshot() -> None:
    """KubeVirt's backend-storage claim, labelled for the VM, joins the disks."""
    from rules.volumes import backend_volume_name, needs_backend_storage, newest_backend_claim

    machine = vm({"name": "root", "persistentVolumeClaim": {"claimName": "root"}})
    machine["metadata"] = {"name": "win"}
    machine["spec"]["template"]["spec"]["domain"] = {"devices": {"tpm": {"persistent": True}}}
    assert needs_backend_storage(machine)
    state = pvc("persistent-state-for-win-x7k2p", "fast")
    state["metadata"]["labels"] = {"persistent-state-for": "win"}
    older = pvc("persistent-state-for-win-aaaaa", "fast")
    older["metadata"].update(labels={"persistent-state-for": "win"},
                             deletionTimestamp="2030-01-01T00:00:00Z")
    assert newest_backend_claim("win", [older, state]) == "persistent-state-for-win-x7k2p"
    chosen = select_volumes(machine, by_name([pvc("root", "fast"), state]), STORAGE,
                            SNAPSHOT_CLASSES, "persistent-state-for-win-x7k2p")
    assert [v.volume_name for v in chosen.included] == ["root", backend_volume_name("win")]
    never_started = select_volumes(machine, by_name([pvc("root", "fast")]), STORAGE,
                                   SNAPSHOT_CLASSES, None)
    [left_out] = never_started.excluded
    assert left_out.volume_name == "persistent-state-for-win" and not never_started.partial


def test_a_memory_dump_is_not_a_disk() -> None:
    machine = vm({"name": "root", "persistentVolumeClaim": {"claimName": "root"}},
                 {"name": "dump", "memoryDump": {"claimName": "dump-pvc"}})
    chosen = select_volumes(machine, by_name([pvc("root", "fast"), pvc("dump-pvc", "fast")]),
                            STORAGE, SNAPSHOT_CLASSES)
    assert [v.volume_name for v in chosen.included] == ["root"]
    assert [v.reason for v in chosen.excluded] == [
        "memory dump: a diagnostic copy of the guest's memory, not a disk"]
    assert not chosen.partial
