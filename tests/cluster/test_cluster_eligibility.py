"""Which disks a snapshot takes, read from a running (simulated) cluster."""

from __future__ import annotations

import pytest

from cluster.client import Cluster
from cluster.errors import NotFound
from rules.models import ExcludedVolume, IncludedVolume
from tests.cluster.conftest import NS
from tests.support.sim import Sim


def test_every_eligibility_case_of_one_vm(cluster: Cluster) -> None:
    selection = cluster.select_volumes(NS, "mixed")
    assert selection.included == [
        IncludedVolume(volume_name="root", pvc_name="root-disk", storage_class="fast",
                       snapshot_class="fast-snap", driver="fast.csi.vmsnap.io"),
        IncludedVolume(volume_name="data", pvc_name="data-dv", storage_class="multi",
                       snapshot_class="multi-default", driver="multi.csi.vmsnap.io"),
        IncludedVolume(volume_name="hot", pvc_name="hot-disk", storage_class="fast",
                       snapshot_class="fast-snap", driver="fast.csi.vmsnap.io",
                       hotpluggable=True),
    ]
    excluded = {v.volume_name: v for v in selection.excluded}
    assert list(excluded) == ["containerdisk", "cloudinitdisk", "legacy", "ambiguous",
                              "pending", "gone"]
    assert not excluded["containerdisk"].snapshottable_type
    assert not excluded["cloudinitdisk"].snapshottable_type
    assert excluded["legacy"] == ExcludedVolume(
        volume_name="legacy", pvc_name="legacy-disk", snapshottable_type=True,
        reason='storage class "standard" (provisioner nfs.csi.k8s.io) has no '
               "VolumeSnapshotClass; create one with driver nfs.csi.k8s.io")
    assert excluded["ambiguous"].reason.startswith(
        "2 VolumeSnapshotClasses for driver ambiguous.csi.vmsnap.io (ambiguous-one, "
        "ambiguous-two) and none is the default")
    assert excluded["pending"].reason == 'PVC "pending-disk" is not Bound (phase Pending)'
    assert excluded["gone"].reason == 'PVC "missing-disk" not found'
    assert selection.partial


def test_a_volume_hot_plugged_only_into_the_vmi_is_not_included(cluster: Cluster) -> None:
    """KubeVirt adds a non-persistent hot-plug to the VMI spec only; the VM spec decides."""
    state = cluster.wait_for_vm(NS, "hotplug", lambda s: s.running, timeout_seconds=10)
    assert state.running
    cluster.custom.patch_namespaced_custom_object(
        "kubevirt.io", "v1", NS, "virtualmachineinstances", "hotplug",
        [{"op": "add", "path": "/spec/volumes/-",
          "value": {"name": "vmi-only", "persistentVolumeClaim": {
              "claimName": "vmi-only-disk", "hotpluggable": True}}}],
        _content_type="application/json-patch+json", _request_timeout=10,
    )
    live = cluster.get_vmi(NS, "hotplug")
    assert live is not None
    assert "vmi-only" in [v["name"] for v in live["spec"]["volumes"]]
    selection = cluster.select_volumes(NS, "hotplug")
    assert [(v.volume_name, v.pvc_name, v.hotpluggable) for v in selection.included] == [
        ("root", "hotplug-root", False), ("persistent-hotplug", "hotplug-persistent", True)]
    assert selection.excluded == []


def test_container_disk_and_cloud_init_only_select_nothing(cluster: Cluster) -> None:
    selection = cluster.select_volumes(NS, "ephemeral")
    assert selection.included == []
    assert [(v.volume_name, v.snapshottable_type) for v in selection.excluded] == [
        ("containerdisk", False), ("cloudinitdisk", False)]
    assert not selection.partial


def test_a_missing_vm_is_not_found(cluster: Cluster) -> None:
    with pytest.raises(NotFound, match="nope"):
        cluster.select_volumes(NS, "nope")


def test_selection_reads_only_what_it_needs(cluster: Cluster, sim: Sim) -> None:
    """One VM read, one list of the namespace's PVCs (not a read per PVC), one read per
    StorageClass, one list of snapshot classes."""
    before = len(sim.requests_log())
    cluster.select_volumes(NS, "mixed")
    log = sim.requests_log()[before:]
    kinds = [(entry.get("verb"), entry.get("resource")) for entry in log]
    assert kinds.count(("get", "virtualmachines")) == 1
    assert kinds.count(("get", "persistentvolumeclaims")) == 0
    assert kinds.count(("list", "persistentvolumeclaims")) == 1
    assert kinds.count(("list", "volumesnapshotclasses")) == 1
    assert all(verb in ("get", "list") for verb, _ in kinds)
