"""Pure storage pieces of the simulator: sizes, drivers, restores, DataVolumes, freeze bodies."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.controllers.datavolumes import pvc_for_template
from simulator.controllers.guest_agent import unfreeze_timeout_seconds
from simulator.controllers.pvc_binder import snapshot_source
from simulator.controllers.runtime import Index
from simulator.controllers.storage import binary_si, is_csi_driver, pvc_size_bytes, to_bytes
from simulator.errors import ApiError


def test_quantities() -> None:
    assert to_bytes("1Gi") == 1024**3
    assert to_bytes("1G") == 10**9
    assert to_bytes("1.5Gi") == 1536 * 1024**2
    assert to_bytes(None) is None
    with pytest.raises(ValueError):
        to_bytes("lots")
    assert binary_si(10 * 1024**3) == "10Gi"
    assert binary_si(1536 * 1024**2) == "1536Mi"
    assert binary_si(1000) == "1000"
    assert binary_si(0) == "0"
    bound = {
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"capacity": {"storage": "2Gi"}},
    }
    assert pvc_size_bytes(bound) == 2 * 1024**3
    assert pvc_size_bytes({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}) == 1024**3


def test_csi_driver_names_carry_no_path() -> None:
    assert is_csi_driver("hostpath.csi.k8s.io")
    assert not is_csi_driver("rancher.io/local-path")
    assert not is_csi_driver("kubernetes.io/aws-ebs")
    assert not is_csi_driver("")


def test_snapshot_source_reads_data_source_ref_then_data_source() -> None:
    def pvc(**spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}

    ref = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s"}
    assert snapshot_source(pvc(dataSource=ref)) == ("ns", "s")
    assert snapshot_source(pvc(dataSourceRef={**ref, "namespace": "other"})) == ("other", "s")
    assert snapshot_source(pvc(dataSource={**ref, "apiGroup": None})) is None
    assert snapshot_source(pvc(dataSource={"kind": "PersistentVolumeClaim", "name": "x"})) is None
    assert snapshot_source(pvc()) is None


def test_a_data_volume_template_becomes_the_pvc_cdi_makes() -> None:
    vm = {"metadata": {"name": "vm", "namespace": "ns", "uid": "u-1"}}
    storage = {
        "metadata": {"name": "vm-root", "labels": {"tier": "db"}},
        "spec": {
            "storage": {"resources": {"requests": {"storage": "2Gi"}}, "storageClassName": "csi"},
            "source": {"snapshot": {"namespace": "ns", "name": "snap"}},
        },
    }
    pvc = pvc_for_template(vm, storage)
    assert pvc["metadata"]["name"] == "vm-root" and pvc["metadata"]["namespace"] == "ns"
    assert pvc["metadata"]["labels"]["tier"] == "db"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pvc["spec"] == {
        "resources": {"requests": {"storage": "2Gi"}},
        "storageClassName": "csi",
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "dataSource": {
            "apiGroup": "snapshot.storage.k8s.io",
            "kind": "VolumeSnapshot",
            "name": "snap",
        },
    }
    legacy = {
        "metadata": {"name": "vm-data"},
        "spec": {
            "pvc": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}
        },
    }
    assert pvc_for_template(vm, legacy)["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "1Gi"}},
    }


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"unfreezeTimeout": "5m0s"}, 300),
        ('{"unfreezeTimeout": "1h"}', 3600),
        (b'{"unfreezeTimeout": "1.9s"}', 1),
        ({"unfreezeTimeout": "500ms"}, 0),
        ({"unfreezeTimeout": "0"}, 0),
    ],
)
def test_unfreeze_timeout_is_read_as_virt_handler_reads_it(body: Any, seconds: int) -> None:
    assert unfreeze_timeout_seconds(body) == seconds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "failed to retrieve unfreeze timeout"),
        (b"", "failed to retrieve unfreeze timeout"),
        ("{not json", "failed to unmarshal unfreeze timeout"),
        ({"other": 1}, "Unfreeze timeout in freeze request is not set"),
        ({"unfreezeTimeout": 60}, "must be a duration string"),
        ({"unfreezeTimeout": "60"}, 'time: missing unit in duration "60"'),
        ({"unfreezeTimeout": "-1m"}, "negative"),
    ],
)
def test_a_bad_freeze_body_is_400(body: Any, message: str) -> None:
    with pytest.raises(ApiError) as raised:
        unfreeze_timeout_seconds(body)
    assert raised.value.code == 400 and message in raised.value.message


def test_an_index_maps_keys_back_to_their_referrers() -> None:
    index = Index()
    index.update("vm-a", [("ns", "root"), ("ns", "data")])
    index.update("vm-b", [("ns", "root")])
    assert index.referrers(("ns", "root")) == {"vm-a", "vm-b"}
    index.update("vm-a", [("ns", "data")])
    assert index.referrers(("ns", "root")) == {"vm-b"}
    index.drop("vm-b")
    assert index.referrers(("ns", "root")) == set()
    assert index.referrers(("ns", "data")) == {"vm-a"}
    index.update("vm-a", [])
    assert index.referrers(("ns", "data")) == set()
