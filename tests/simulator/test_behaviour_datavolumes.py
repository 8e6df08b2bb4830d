"""CDI DataVolumes: their claims, their phases per source, adoption, and the VMs that use them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    KUBEVIRT,
    SNAPSHOT,
    Cluster,
    behaviour_cluster,
    condition,
    pvc_body,
    snapshot_body,
    vm_body,
    wait_for,
)

CDI = ("cdi.kubevirt.io", "v1beta1")
STORAGE = ("storage.k8s.io", "v1")
DVS = "datavolumes"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-datavolumes")


def dv_body(
    name: str,
    source: dict[str, Any],
    storage_class: str | None = "fast-csi",
    size: str | None = "1Gi",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    storage: dict[str, Any] = {}
    if storage_class is not None:
        storage["storageClassName"] = storage_class
    if size is not None:
        storage["resources"] = {"requests": {"storage": size}}
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"source": source, "storage": storage},
    }


def dv(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get(CDI, DVS, ns, name) or {}


def phase(cluster: Cluster, ns: str, name: str) -> str:
    return str((dv(cluster, ns, name).get("status") or {}).get("phase") or "")


def phases_until(
    cluster: Cluster, ns: str, name: str, final: str = "Succeeded", timeout: float = 10.0
) -> list[tuple[str, str]]:
    """Every (phase, progress) seen, polling, until `final`."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dv(cluster, ns, name).get("status") or {}
        step = (str(status.get("phase") or ""), str(status.get("progress") or ""))
        if not seen or seen[-1] != step:
            seen.append(step)
        if step[0] == final:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"{name} never {final}: {seen}")


def reasons(cluster: Cluster, ns: str, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(ns, name)]


def owned_by(obj: dict[str, Any] | None, owner: dict[str, Any]) -> bool:
    return any(
        r["uid"] == owner["metadata"]["uid"] and r.get("controller")
        for r in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    )


def bound(cluster: Cluster, ns: str, name: str) -> Callable[[], bool]:
    return lambda: ((cluster.pvc(ns, name) or {}).get("status") or {}).get("phase") == "Bound"


# ---- import ---------------------------------------------------------------------------


def test_an_http_import_makes_its_claim_and_reports_cdi_s_phases(cluster: Cluster) -> None:
    ns = cluster.namespace()
    source = {"http": {"url": "https://images.example/fedora.qcow2"}}
    created = cluster.create(
        CDI, DVS, ns, dv_body("disk", source, annotations={"sim.vmsnap.io/import-latency": "1s"})
    )
    seen = phases_until(cluster, ns, "disk")
    names = [p for p, _ in seen]
    assert names[0] in ("", "Pending")
    assert "ImportScheduled" in names and "ImportInProgress" in names
    assert names.index("ImportScheduled") < names.index("ImportInProgress")
    progress = [p for name, p in seen if name == "ImportInProgress"]
    assert all(re.fullmatch(r"\d{1,3}\.\d\d%", p) for p in progress), progress
    assert len(set(progress)) >= 2, progress
    status = dv(cluster, ns, "disk")["status"]
    assert status["progress"] == "100.0%" and status["claimName"] == "disk"
    assert (condition(dv(cluster, ns, "disk"), "Ready") or {})["status"] == "True"
    assert (condition(dv(cluster, ns, "disk"), "Bound") or {})["message"] == "PVC disk Bound"

    pvc = cluster.pvc(ns, "disk")
    assert pvc is not None and owned_by(pvc, created)
    labels, notes = pvc["metadata"]["labels"], pvc["metadata"]["annotations"]
    assert labels["app"] == "containerized-data-importer"
    assert labels["app.kubernetes.io/managed-by"] == "cdi-controller"
    assert labels["app.kubernetes.io/component"] == "storage"
    assert notes["cdi.kubevirt.io/createdForDataVolume"] == created["metadata"]["uid"]
    assert notes["cdi.kubevirt.io/storage.import.endpoint"] == source["http"]["url"]
    assert notes["cdi.kubevirt.io/storage.import.source"] == "http"
    assert notes["cdi.kubevirt.io/storage.pod.phase"] == "Succeeded"
    # CDI's default filesystem overhead on top of the 1Gi asked for, aligned to 1MiB.
    assert pvc["spec"]["resources"]["requests"] == {"storage": "1138166334"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {"ImportScheduled", "ImportInProgress", "ImportSucceeded", "Bound"} <= set(
        reasons(cluster, ns, "disk")
    )


def test_registry_and_blank_imports_take_the_import_path(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(CDI, DVS, ns, dv_body("reg", {"registry": {"url": "docker://quay.io/x/y"}}))
    cluster.create(CDI, DVS, ns, dv_body("blank", {"blank": {}}))
    assert "ImportInProgress" in [p for p, _ in phases_until(cluster, ns, "reg")]
    phases_until(cluster, ns, "blank")
    notes = (cluster.pvc(ns, "blank") or {})["metadata"]["annotations"]
    assert notes["cdi.kubevirt.io/storage.import.source"] == "none"


def test_a_missing_storage_class_and_no_access_mode_makes_no_claim(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(CDI, DVS, ns, dv_body("dv", {"blank": {}}, storage_class="nowhere"))
    message = "PVC spec is missing accessMode and no storageClass to choose profile"
    wait_for(lambda: "ErrClaimNotValid" in reasons(cluster, ns, "dv"))
    bound_condition = condition(dv(cluster, ns, "dv"), "Bound") or {}
    assert bound_condition.get("message") == message
    assert cluster.pvc(ns, "dv") is None


# ---- clones ---------------------------------------------------------------------------


def ready_snapshot(cluster: Cluster, ns: str, claim: str, name: str) -> dict[str, Any]:
    cluster.create_pvc(ns, pvc_body(claim, size="2Gi"))
    wait_for(bound(cluster, ns, claim))
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body(name, claim))
    return wait_for(
        lambda: (s := cluster.snapshot(ns, name)) and (s.get("status") or {}).get("readyToUse")
        and s, timeout=5,
    )


def test_a_snapshot_source_restores_the_claim_from_it(cluster: Cluster) -> None:
    ns = cluster.namespace()
    early = {"snapshot": {"namespace": ns, "name": "later"}}
    cluster.create(CDI, DVS, ns, dv_body("early", early, size=None))
    wait_for(
        lambda: (condition(dv(cluster, ns, "early"), "Bound") or {}).get("reason")
        == "CloneWithoutSource"
    )
    assert (condition(dv(cluster, ns, "early"), "Bound") or {})["message"] == (
        "The source snapshot later doesn't exist"
    )
    assert cluster.pvc(ns, "early") is None
    assert phase(cluster, ns, "early") == ""

    ready_snapshot(cluster, ns, "source", "snap")
    source = {"snapshot": {"namespace": ns, "name": "snap"}}
    cluster.create(CDI, DVS, ns, dv_body("restored", source, size=None))
    seen = [p for p, _ in phases_until(cluster, ns, "restored")]
    assert "CloneFromSnapshotSourceInProgress" in seen
    pvc = cluster.pvc(ns, "restored") or {}
    assert pvc["spec"]["dataSource"] == {
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"
    }
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"  # the restoreSize
    assert "CloneSucceeded" in reasons(cluster, ns, "restored")
    # The early one starts once its snapshot exists.
    ready_snapshot(cluster, ns, "source-2", "later")
    phases_until(cluster, ns, "early")


def test_a_pvc_source_is_cloned_by_way_of_a_temporary_snapshot(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("source", size="2Gi"))
    wait_for(bound(cluster, ns, "source"))
    source = {"pvc": {"namespace": ns, "name": "source"}}
    created = cluster.create(CDI, DVS, ns, dv_body("copy", source, size=None))
    seen = [p for p, _ in phases_until(cluster, ns, "copy")]
    assert seen.index("SnapshotForSmartCloneInProgress") < seen.index(
        "CloneFromSnapshotSourceInProgress"
    )
    temporary = f"tmp-snapshot-{created['metadata']['uid']}"
    pvc = cluster.pvc(ns, "copy") or {}
    assert pvc["spec"]["dataSource"]["name"] == temporary
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    wait_for(lambda: cluster.snapshot(ns, temporary) is None, what="temporary snapshot gone")


def test_a_pvc_source_without_snapshots_is_copied_by_host(cluster: Cluster) -> None:
    ns = cluster.namespace()
    storage_class = f"copy-{uuid.uuid4().hex[:8]}"
    cluster.create(
        STORAGE, "storageclasses", None,
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": storage_class}, "provisioner": "example.com/nfs"},
    )
    cluster.create_pvc(ns, pvc_body("source", storage_class=storage_class))
    wait_for(bound(cluster, ns, "source"))
    cluster.create(
        CDI, DVS, ns,
        dv_body("copy", {"pvc": {"namespace": ns, "name": "source"}}, storage_class=storage_class,
                annotations={"sim.vmsnap.io/import-latency": "600ms"}),
    )
    seen = [p for p, _ in phases_until(cluster, ns, "copy")]
    assert seen.index("CloneScheduled") < seen.index("CloneInProgress")
    notes = (cluster.pvc(ns, "copy") or {})["metadata"]["annotations"]
    assert notes["k8s.io/CloneRequest"] == f"{ns}/source"
    assert notes["cdi.kubevirt.io/cloneType"] == "copy"
    assert "CloneSucceeded" in reasons(cluster, ns, "copy")
    cluster.delete(STORAGE, "storageclasses", None, storage_class)


# ---- adoption -------------------------------------------------------------------------


def test_a_claim_populated_for_the_data_volume_is_adopted(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(
        ns, pvc_body("disk", annotations={"cdi.kubevirt.io/storage.populatedFor": "disk"})
    )
    wait_for(bound(cluster, ns, "disk"))
    created = cluster.create(CDI, DVS, ns, dv_body("disk", {"http": {"url": "https://x/y"}}))
    assert [p for p, _ in phases_until(cluster, ns, "disk")][-1] == "Succeeded"
    pvc = cluster.pvc(ns, "disk") or {}
    assert owned_by(pvc, created)
    assert "cdi.kubevirt.io/storage.pod.phase" not in pvc["metadata"]["annotations"]
    wait_for(
        lambda: dv(cluster, ns, "disk")["metadata"].get("annotations", {}).get(
            "cdi.kubevirt.io/storage.prePopulated"
        ) == "disk"
    )


def test_a_claim_is_adopted_only_when_the_data_volume_allows_it(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("kept"))
    cluster.create_pvc(ns, pvc_body("taken"))
    cluster.create(CDI, DVS, ns, dv_body("kept", {"blank": {}}))
    taken = cluster.create(
        CDI, DVS, ns,
        dv_body("taken", {"blank": {}}, annotations={"cdi.kubevirt.io/allowClaimAdoption": "true"}),
    )
    wait_for(lambda: "ErrResourceExists" in reasons(cluster, ns, "kept"))
    messages = [e["message"] for e in cluster.events(ns, "kept") if e["type"] == "Warning"]
    assert 'Resource "kept" already exists and is not managed by DataVolume' in messages
    assert not (cluster.pvc(ns, "kept") or {})["metadata"].get("ownerReferences")
    phases_until(cluster, ns, "taken")
    assert owned_by(cluster.pvc(ns, "taken"), taken)


# ---- WaitForFirstConsumer ---------------------------------------------------------------


def test_a_data_volume_on_a_wait_for_first_consumer_class_waits_for_its_vm(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace()
    cluster.create(CDI, DVS, ns, dv_body("alone", {"blank": {}}, storage_class="fast-wffc"))
    wait_for(lambda: phase(cluster, ns, "alone") == "WaitForFirstConsumer")
    time.sleep(0.3)
    assert phase(cluster, ns, "alone") == "WaitForFirstConsumer"
    messages = [e["message"] for e in cluster.events(ns, "alone")
                if e["reason"] == "WaitForFirstConsumer"]
    assert messages == ["waiting for first consumer to be created before binding"]

    template = {
        "metadata": {"name": "vm-root", "annotations": {"sim.vmsnap.io/import-latency": "600ms"}},
        "spec": dv_body("", {"blank": {}}, storage_class="fast-wffc")["spec"],
    }
    cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("vm", data_volumes=[template]))
    # KubeVirt starts the VMI for a DataVolume that waits for its consumer; the temporary
    # launcher pod binds the claim, CDI fills it, and only then does the VMI run.
    seen = [p for p, _ in phases_until(cluster, ns, "vm-root", final="ImportScheduled")]
    assert "WaitForFirstConsumer" in seen
    vmi = wait_for(lambda: cluster.vmi(ns, "vm"), what="VMI")
    assert (cluster.pvc(ns, "vm-root") or {})["metadata"]["annotations"][
        "volume.kubernetes.io/selected-node"
    ]
    importing = wait_for(
        lambda: (v := cluster.vmi(ns, "vm")) and condition(v, "DataVolumesReady")
        and (v if phase(cluster, ns, "vm-root") in ("ImportScheduled", "ImportInProgress")
             else None),
        what="VMI pending while importing",
    )
    assert importing["status"]["phase"] == "Pending"
    assert (condition(importing, "DataVolumesReady") or {})["reason"] == "NotAllDVsReady"
    running = wait_for(
        lambda: (v := cluster.vmi(ns, "vm")) and v["status"].get("phase") == "Running" and v,
        what="VMI Running",
    )
    assert running["metadata"]["uid"] == vmi["metadata"]["uid"]
    assert phase(cluster, ns, "vm-root") == "Succeeded"
    assert (condition(running, "DataVolumesReady") or {})["reason"] == "AllDVsReady"
    assert phase(cluster, ns, "alone") == "WaitForFirstConsumer"


# ---- dataVolumeTemplates ----------------------------------------------------------------


def test_data_volume_templates_become_data_volumes_owned_by_the_vm(cluster: Cluster) -> None:
    ns = cluster.namespace()
    template = {
        "metadata": {
            "name": "vm-dv",
            "labels": {"tier": "db"},
            "annotations": {"sim.vmsnap.io/import-latency": "800ms"},
        },
        "spec": {
            "storage": {
                "storageClassName": "fast-csi",
                "resources": {"requests": {"storage": "2Gi"}},
            },
            "source": {"http": {"url": "https://images.example/disk.img"}},
        },
    }
    vm = cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("vm", data_volumes=[template]))
    created = wait_for(lambda: cluster.get(CDI, DVS, ns, "vm-dv"), what="DataVolume")
    assert owned_by(created, vm)
    assert created["metadata"]["labels"] == {"tier": "db", "kubevirt.io/created-by":
                                             vm["metadata"]["uid"]}
    assert created["metadata"]["annotations"]["cdi.kubevirt.io/allowClaimAdoption"] == "true"
    assert created["spec"] == template["spec"]
    assert "SuccessfulDataVolumeCreate" in reasons(cluster, ns, "vm")
    pvc = wait_for(lambda: cluster.pvc(ns, "vm-dv"), what="PVC")
    assert owned_by(pvc, created) and not owned_by(pvc, vm)
    # The VM does not start until its DataVolume is Succeeded.
    wait_for(
        lambda: (cluster.vm(ns, "vm") or {}).get("status", {}).get("printableStatus")
        == "Provisioning"
    )
    while True:
        vmi = cluster.vmi(ns, "vm")  # first: a VMI seen means the DataVolume was done
        if phase(cluster, ns, "vm-dv") == "Succeeded":
            break
        assert vmi is None, "started before its DataVolume was Succeeded"
        time.sleep(0.01)
    wait_for(lambda: (v := cluster.vmi(ns, "vm")) and v["status"].get("phase") == "Running")
    statuses = wait_for(
        lambda: (cluster.vm(ns, "vm") or {}).get("status", {}).get("volumeSnapshotStatuses")
    )
    assert statuses[0] == {"name": "disk0", "enabled": True}
    # Deleting the VM removes its DataVolume, and with it the claim.
    cluster.delete(KUBEVIRT, "virtualmachines", ns, "vm")
    wait_for(lambda: cluster.get(CDI, DVS, ns, "vm-dv") is None, what="DataVolume gone")
    wait_for(lambda: cluster.pvc(ns, "vm-dv") is None, what="PVC gone")


def test_a_seeded_claim_of_a_template_is_adopted(cluster: Cluster) -> None:
    seeded = wait_for(lambda: cluster.get(CDI, DVS, "demo", "web-1-data-2"))
    wait_for(lambda: phase(cluster, "demo", "web-1-data-2") == "Succeeded")
    assert owned_by(cluster.pvc("demo", "web-1-data-2"), seeded)
    assert owned_by(seeded, cluster.vm("demo", "web-1") or {})
