"""Pure pieces of the simulator's CDI and KubeVirt rules, on plain objects."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.controllers.backend_storage import is_needed
from simulator.controllers.datavolumes import (
    claim_adoptable,
    pvc_for_template,
    required_space,
    source_of,
)
from simulator.controllers.instancetypes import revision_name
from simulator.controllers.vm_controller import data_volume_manifest, restart_required
from simulator.controllers.vm_status import (
    VolumeReadiness,
    data_volume_failed,
    data_volume_provisioning,
    printable_status,
    set_to_start,
)

READY = VolumeReadiness((), ())


def test_cdi_grows_a_filesystem_request_by_its_overhead_after_aligning_it() -> None:
    assert required_space(1024**3) == 1138166334
    assert required_space(2 * 1024**3) == 2276332667
    assert required_space(1) == 1111491  # aligned to 1MiB first
    assert required_space(1024**2, 0.0) == 1024**2


def test_the_claim_of_an_import_carries_what_cdi_writes() -> None:
    dv: dict[str, Any] = {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "disk", "namespace": "ns", "uid": "u-1",
                     "labels": {"app": "mine"}, "annotations": {"note": "x"}},
        "spec": {"source": {"http": {"url": "https://x/y.img"}},
                 "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
    }
    pvc = pvc_for_template(dv, dv, filesystem_overhead=0.06)
    meta = pvc["metadata"]
    assert meta["labels"] == {
        "app": "mine",  # the DataVolume's labels win over CDI's app label
        "alerts.k8s.io/KubePersistentVolumeFillingUp": "disabled",
        "app.kubernetes.io/component": "storage",
        "app.kubernetes.io/managed-by": "cdi-controller",
    }
    assert meta["annotations"] == {
        "note": "x",
        "cdi.kubevirt.io/storage.pod.restarts": "0",
        "cdi.kubevirt.io/storage.contentType": "kubevirt",
        "cdi.kubevirt.io/storage.preallocation.requested": "false",
        "cdi.kubevirt.io/createdForDataVolume": "u-1",
        "cdi.kubevirt.io/storage.import.source": "http",
        "cdi.kubevirt.io/storage.import.endpoint": "https://x/y.img",
    }
    assert meta["ownerReferences"] == [{
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "disk",
        "uid": "u-1", "controller": True, "blockOwnerDeletion": True,
    }]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1138166334"
    assert source_of(dv["spec"]) == ("http", {"url": "https://x/y.img"})
    assert source_of({"sourceRef": {"kind": "DataSource", "name": "x"}}) == ("", {})


@pytest.mark.parametrize(
    ("pvc_notes", "dv_notes", "adoptable"),
    [
        ({"cdi.kubevirt.io/storage.populatedFor": "disk"}, {}, True),
        ({"cdi.kubevirt.io/storage.populatedFor": "other"}, {}, False),
        ({}, {"cdi.kubevirt.io/allowClaimAdoption": "true"}, True),
        ({}, {"cdi.kubevirt.io/allowClaimAdoption": "false"}, False),
        ({}, {}, False),  # the DataVolumeClaimAdoption feature gate is off
        ({"cdi.kubevirt.io/createdForDataVolume": "u-1"},
         {"cdi.kubevirt.io/allowClaimAdoption": "true"}, False),
    ],
)
def test_claim_adoption_follows_cdi(
    pvc_notes: dict[str, str], dv_notes: dict[str, str], adoptable: bool
) -> None:
    pvc = {"metadata": {"name": "disk", "annotations": pvc_notes}}
    dv = {"metadata": {"name": "disk", "uid": "u-1", "annotations": dv_notes}}
    assert claim_adoptable(pvc, dv) is adoptable


def test_a_template_becomes_the_data_volume_kubevirt_makes() -> None:
    vm = {"metadata": {"name": "vm", "namespace": "ns", "uid": "vm-1"},
          "spec": {"template": {"spec": {"priorityClassName": "high"}}}}
    template = {"metadata": {"name": "vm-root", "labels": {"a": "b"}},
                "spec": {"source": {"pvc": {"name": "golden", "namespace": "images"}},
                         "storage": {}}}
    dv = data_volume_manifest(vm, template)
    assert dv["metadata"]["labels"] == {"a": "b", "kubevirt.io/created-by": "vm-1"}
    assert dv["metadata"]["annotations"] == {"cdi.kubevirt.io/allowClaimAdoption": "true"}
    assert dv["metadata"]["ownerReferences"][0]["controller"] is True
    assert dv["spec"]["priorityClassName"] == "high"
    assert dv["spec"]["source"]["pvc"]["namespace"] == "images"


def dv(phase: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {"status": {"phase": phase, "conditions": list(conditions)}}


def test_data_volume_states_as_the_vm_controller_reads_them() -> None:
    assert data_volume_provisioning(dv("ImportInProgress"))
    assert data_volume_provisioning(dv(""))
    assert not data_volume_provisioning(dv("Succeeded"))
    assert not data_volume_provisioning(dv("WaitForFirstConsumer"))
    assert data_volume_provisioning(dv("WaitForFirstConsumer", {"type": "Bound",
                                                                "status": "True"}))
    assert data_volume_failed(dv("Failed"))
    assert data_volume_failed(dv("ImportInProgress", {"type": "Running", "status": "False",
                                                       "reason": "Error"}))
    assert not data_volume_failed(dv("ImportInProgress"))


def test_printable_status_with_data_volumes_in_vm_go_s_order() -> None:
    vm = {"metadata": {"name": "vm"}, "spec": {"template": {"spec": {"volumes": [
        {"name": "d", "dataVolume": {"name": "dv"}}]}}}}
    found: dict[str, dict[str, Any]] = {}

    def status(strategy: str = "Always", readiness: VolumeReadiness = READY) -> str:
        return printable_status(vm, None, strategy, readiness, strategy == "Always",
                                data_volume=found.get)

    assert status() == "Starting"
    found["dv"] = dv("ImportInProgress")
    assert status() == "Provisioning"
    assert status("Halted") == "Provisioning"
    found["dv"] = dv("Failed")
    assert status() == "DataVolumeError"
    found["dv"] = dv("WaitForFirstConsumer")
    assert status(readiness=VolumeReadiness((), ("dv",))) == "WaitingForVolumeBinding"
    assert status("Halted", VolumeReadiness((), ("dv",))) == "Stopped"
    assert set_to_start("RerunOnFailure", {"status": {"phase": "Succeeded"}}, True) is False
    assert set_to_start("Once", None, False) is True


def test_restart_is_required_beyond_the_live_updatable_fields() -> None:
    started: dict[str, Any] = {
        "domain": {"cpu": {"sockets": 1, "cores": 1}, "memory": {"guest": "1Gi"}, "devices": {}},
        "nodeSelector": {"a": "b"},
    }
    vmi = {"spec": {"domain": {"firmware": {"uuid": "u"}}}}

    def changed(**domain: Any) -> dict[str, Any]:
        return {**started, "domain": {**started["domain"], **domain}}

    assert not restart_required(started, changed(memory={"guest": "2Gi"}), vmi, "LiveUpdate")
    assert not restart_required(started, changed(cpu={"sockets": 2, "cores": 1}), vmi,
                                "LiveUpdate")
    assert not restart_required(started, {**started, "nodeSelector": {}}, vmi, "LiveUpdate")
    assert restart_required(started, changed(cpu={"sockets": 1, "cores": 2}), vmi, "LiveUpdate")
    assert restart_required(started, changed(memory={"guest": "2Gi"}), vmi, "Stage")
    # The firmware UUID the VMI runs with, written into the template, is no change.
    assert not restart_required(started, changed(firmware={"uuid": "u"}), vmi, "LiveUpdate")
    assert restart_required(started, changed(firmware={"uuid": "v"}), vmi, "LiveUpdate")


def test_backend_storage_is_for_persistent_tpm_or_efi() -> None:
    assert is_needed({"domain": {"devices": {"tpm": {"persistent": True}}}})
    assert is_needed({"domain": {"firmware": {"bootloader": {"efi": {"persistent": True}}}}})
    assert not is_needed({"domain": {"devices": {"tpm": {}}}})
    assert not is_needed(None)


def test_instancetype_revisions_are_named_as_kubevirt_names_them() -> None:
    obj = {"metadata": {"name": "u1.small", "uid": "abc", "generation": 3}}
    assert revision_name("vm", obj) == "vm-u1.small-v1beta1-abc-3"
