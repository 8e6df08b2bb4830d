"""KubeVirt's backend storage: the PVC of a VM's persistent TPM or EFI state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    KUBEVIRT,
    Cluster,
    behaviour_cluster,
    condition,
    vm_body,
    wait_for,
)

STORAGE = ("storage.k8s.io", "v1")
PREFIX = "persistent-state-for"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-backend-storage")


def persistent_vm(
    name: str, *, tpm: bool = True, efi: bool = False, **options: Any
) -> dict[str, Any]:
    body = vm_body(name, **options)
    domain = body["spec"]["template"]["spec"]["domain"]
    if tpm:
        domain["devices"]["tpm"] = {"persistent": True}
    if efi:
        domain["firmware"] = {"bootloader": {"efi": {"persistent": True, "secureBoot": False}}}
    return body


def state_claims(cluster: Cluster, ns: str, vm: str) -> list[dict[str, Any]]:
    found = cluster.core.list_namespaced_persistent_volume_claim(
        ns, label_selector=f"{PREFIX}={vm}"
    )
    return [cluster.api.sanitize_for_serialization(p) for p in found.items]


def running(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (v := cluster.vmi(ns, name)) and v["status"].get("phase") == "Running" and v,
        what=f"VMI {name} Running",
    )


def test_a_persistent_tpm_gets_a_state_claim_owned_by_the_vm(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm = cluster.create(KUBEVIRT, "virtualmachines", ns, persistent_vm("vm"))
    vmi = running(cluster, ns, "vm")
    claims = state_claims(cluster, ns, "vm")
    assert len(claims) == 1
    claim = claims[0]
    assert claim["metadata"]["name"].startswith("persistent-state-for-vm-")
    assert claim["metadata"]["generateName"] == "persistent-state-for-vm-"
    assert claim["metadata"]["labels"] == {
        "persistent-state-for": "vm",
        "cdi.kubevirt.io/applyStorageProfile": "true",
    }
    owner = claim["metadata"]["ownerReferences"][0]
    assert owner["uid"] == vm["metadata"]["uid"] and owner["controller"] is True
    assert claim["spec"]["resources"]["requests"] == {"storage": "10Mi"}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "csi-hostpath-sc"  # the default class
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"]["phase"] == "Bound"
    state = [
        v for v in vmi["status"]["volumeStatus"] if v["name"] == "persistent-state-for-this-vm"
    ]
    assert state == [
        {
            "name": "persistent-state-for-this-vm",
            "target": "",
            "persistentVolumeClaimInfo": {
                "claimName": claim["metadata"]["name"],
                "accessModes": ["ReadWriteOnce"],
            },
        }
    ]
    # It outlives the VMI: a restart uses it again.
    assert cluster.vm_action(ns, "vm", "restart")[0] in (200, 202)
    wait_for(
        lambda: (v := cluster.vmi(ns, "vm")) and v["metadata"]["uid"] != vmi["metadata"]["uid"]
        and v["status"].get("phase") == "Running",
        what="restarted",
    )
    assert [c["metadata"]["name"] for c in state_claims(cluster, ns, "vm")] == [
        claim["metadata"]["name"]
    ]
    # And goes with the VM.
    cluster.delete(KUBEVIRT, "virtualmachines", ns, "vm")
    wait_for(lambda: not state_claims(cluster, ns, "vm"), what="state claim gone")


def test_persistent_efi_needs_the_state_claim_too(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(KUBEVIRT, "virtualmachines", ns, persistent_vm("efi", tpm=False, efi=True))
    running(cluster, ns, "efi")
    assert len(state_claims(cluster, ns, "efi")) == 1
    cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("plain"))
    running(cluster, ns, "plain")
    assert state_claims(cluster, ns, "plain") == []


def test_the_kubevirt_cr_names_the_class_and_a_pending_claim_holds_the_pod(
    cluster: Cluster,
) -> None:
    slow = f"slow-{uuid.uuid4().hex[:8]}"
    cluster.create(
        STORAGE, "storageclasses", None,
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": slow, "annotations": {"sim.vmsnap.io/bind-latency": "1s"}},
         "provisioner": "fast.csi.vmsnap.io"},
    )
    cluster.create(
        KUBEVIRT, "kubevirts", "kube-system",
        {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kubevirt"},
         "spec": {"configuration": {"vmStateStorageClass": slow}}},
    )
    try:
        ns = cluster.namespace()
        cluster.create(KUBEVIRT, "virtualmachines", ns, persistent_vm("vm"))
        pending = wait_for(
            lambda: condition(cluster.vmi(ns, "vm"), "Synchronized"), what="Synchronized"
        )
        assert pending["status"] == "False"
        assert pending["reason"] == "BackendStorageNotReady"
        assert pending["message"] == "PVC pending"
        assert (cluster.vmi(ns, "vm") or {})["status"]["phase"] == "Pending"
        claim = state_claims(cluster, ns, "vm")[0]
        assert claim["spec"]["storageClassName"] == slow
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        vmi = running(cluster, ns, "vm")
        assert condition(vmi, "Synchronized") is None

        # A WaitForFirstConsumer class: the launcher pod is the consumer that binds it.
        cluster.patch(KUBEVIRT, "kubevirts", "kube-system", "kubevirt",
                      {"spec": {"configuration": {"vmStateStorageClass": "fast-wffc"}}})
        cluster.create(KUBEVIRT, "virtualmachines", ns, persistent_vm("wffc"))
        running(cluster, ns, "wffc")
        claim = state_claims(cluster, ns, "wffc")[0]
        assert claim["spec"]["storageClassName"] == "fast-wffc"
        assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
        assert claim["status"]["phase"] == "Bound"
    finally:
        cluster.delete(KUBEVIRT, "kubevirts", "kube-system", "kubevirt")
        cluster.delete(STORAGE, "storageclasses", None, slow)


def test_without_a_default_class_the_claim_cannot_be_made(start_sim: StartSim) -> None:
    sim = start_sim(name="backend-storage-no-class")
    bare = Cluster(sim)
    try:
        ns = bare.namespace()
        bare.create(KUBEVIRT, "virtualmachines", ns, persistent_vm("vm"))
        failed = wait_for(lambda: condition(bare.vmi(ns, "vm"), "Synchronized"))
        assert failed["reason"] == "FailedBackendStorageCreate"
        assert failed["message"] == "no default storage class found"
        assert (bare.vmi(ns, "vm") or {})["status"]["phase"] == "Pending"
    finally:
        bare.close()
        sim.process.stop()
