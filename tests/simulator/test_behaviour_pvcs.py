"""PVC binding: latency, default class, restores from VolumeSnapshots, WaitForFirstConsumer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    KUBEVIRT,
    SNAPSHOT,
    Cluster,
    behaviour_cluster,
    pvc_body,
    snapshot_body,
    vm_body,
    wait_for,
)


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-pvcs")


def phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    return ((cluster.pvc(namespace, name) or {}).get("status") or {}).get("phase")


def event_messages(cluster: Cluster, namespace: str, name: str, reason: str) -> list[str]:
    return [e["message"] for e in cluster.events(namespace, name) if e["reason"] == reason]


def test_claim_binds_after_the_bind_latency(cluster: Cluster) -> None:
    ns = cluster.namespace()
    started = time.monotonic()
    cluster.create_pvc(ns, pvc_body("data", size="3Gi"))  # fast-csi: bind-latency 150ms
    assert phase(cluster, ns, "data") in (None, "Pending")
    wait_for(lambda: phase(cluster, ns, "data") == "Bound", what="Bound")
    elapsed = time.monotonic() - started
    assert 0.14 <= elapsed <= 2.0, f"bound after {elapsed:.3f}s, latency is 150ms"
    pvc = cluster.pvc(ns, "data")
    assert pvc is not None
    assert pvc["spec"]["volumeName"] == f"pvc-{pvc['metadata']['uid']}"
    assert pvc["status"]["capacity"] == {"storage": "3Gi"}
    assert pvc["status"]["accessModes"] == ["ReadWriteOnce"]
    notes = pvc["metadata"]["annotations"]
    assert notes["volume.kubernetes.io/storage-provisioner"] == "fast.csi.vmsnap.io"
    assert notes["pv.kubernetes.io/bind-completed"] == "yes"


def test_claim_without_a_class_gets_the_default_storage_class(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("data", storage_class=None))
    wait_for(lambda: phase(cluster, ns, "data") == "Bound", what="Bound")
    pvc = cluster.pvc(ns, "data")
    assert pvc is not None and pvc["spec"]["storageClassName"] == "csi-hostpath-sc"


def test_claim_of_a_missing_class_stays_pending_with_an_event(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("data", storage_class="nope"))
    messages = wait_for(lambda: event_messages(cluster, ns, "data", "ProvisioningFailed"))
    assert messages == ['storageclass.storage.k8s.io "nope" not found']
    assert phase(cluster, ns, "data") == "Pending"


def test_claim_from_a_snapshot_binds_only_once_the_snapshot_is_ready(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("data", size="2Gi"))
    wait_for(lambda: phase(cluster, ns, "data") == "Bound")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data"))
    cluster.create_pvc(ns, pvc_body("restored", size="3Gi", source_snapshot="snap"))

    def snapshot_ready() -> bool:
        return bool(((cluster.snapshot(ns, "snap") or {}).get("status") or {}).get("readyToUse"))

    while not snapshot_ready():
        assert phase(cluster, ns, "restored") == "Pending", "bound before its snapshot was ready"
        time.sleep(0.02)
    wait_for(lambda: phase(cluster, ns, "restored") == "Bound", what="restored Bound")
    restored = cluster.pvc(ns, "restored")
    assert restored is not None and restored["status"]["capacity"] == {"storage": "3Gi"}
    waits = event_messages(cluster, ns, "restored", "ProvisioningFailed")
    assert any(m.endswith("snapshot snap is not Ready") for m in waits)


def test_claim_from_a_missing_snapshot_stays_pending(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("restored", source_snapshot="nowhere"))
    messages = wait_for(lambda: event_messages(cluster, ns, "restored", "ProvisioningFailed"))
    assert 'volumesnapshots.snapshot.storage.k8s.io "nowhere" not found' in messages[0]
    time.sleep(0.3)
    assert phase(cluster, ns, "restored") == "Pending"


def test_claim_smaller_than_the_snapshot_is_refused(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("data", size="2Gi", storage_class="csi-hostpath-sc"))
    wait_for(lambda: phase(cluster, ns, "data") == "Bound")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data"))
    wait_for(
        lambda: ((cluster.snapshot(ns, "snap") or {}).get("status") or {}).get("readyToUse"),
        timeout=5,
    )
    cluster.create_pvc(
        ns, pvc_body("small", size="1Gi", storage_class="csi-hostpath-sc", source_snapshot="snap")
    )
    messages = wait_for(
        lambda: [
            m
            for m in event_messages(cluster, ns, "small", "ProvisioningFailed")
            if "is less than" in m
        ]
    )
    assert "requested volume size 1073741824 is less than the size 2147483648" in messages[0]
    assert phase(cluster, ns, "small") == "Pending"


def test_wait_for_first_consumer_binds_when_a_running_vm_uses_the_claim(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("data", storage_class="fast-wffc"))
    messages = wait_for(lambda: event_messages(cluster, ns, "data", "WaitForFirstConsumer"))
    assert messages == ["waiting for first consumer to be created before binding"]
    time.sleep(0.2)
    assert phase(cluster, ns, "data") == "Pending"
    cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("vm", ["data"]))
    wait_for(lambda: phase(cluster, ns, "data") == "Bound", what="Bound")
    vmi: dict[str, Any] = wait_for(
        lambda: (
            (v := cluster.vmi(ns, "vm")) and (v.get("status") or {}).get("phase") == "Running" and v
        )
    )
    pvc = cluster.pvc(ns, "data")
    assert pvc is not None
    assert (
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
        == vmi["status"]["nodeName"]
    )


def test_a_claim_restored_on_a_wait_for_first_consumer_class_waits_for_its_vm(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("data", size="1Gi"))
    wait_for(lambda: phase(cluster, ns, "data") == "Bound")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data"))
    wait_for(
        lambda: ((cluster.snapshot(ns, "snap") or {}).get("status") or {}).get("readyToUse"),
        timeout=5,
    )
    cluster.create_pvc(ns, pvc_body("restored", storage_class="fast-wffc", source_snapshot="snap"))
    messages = wait_for(lambda: event_messages(cluster, ns, "restored", "WaitForFirstConsumer"))
    assert messages == ["waiting for first consumer to be created before binding"]
    time.sleep(0.3)
    assert phase(cluster, ns, "restored") == "Pending"
    halted = vm_body("vm", ["restored"], run_strategy="Halted")
    cluster.create(KUBEVIRT, "virtualmachines", ns, halted)
    time.sleep(0.3)
    assert phase(cluster, ns, "restored") == "Pending", "a stopped VM is no consumer"
    printable = (cluster.vm(ns, "vm") or {}).get("status", {}).get("printableStatus")
    assert printable == "Stopped"
    cluster.patch(KUBEVIRT, "virtualmachines", ns, "vm", {"spec": {"runStrategy": "Always"}})
    wait_for(lambda: phase(cluster, ns, "restored") == "Bound", what="Bound")
    restored = cluster.pvc(ns, "restored") or {}
    assert restored["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
