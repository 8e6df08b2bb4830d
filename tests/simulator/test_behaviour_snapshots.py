"""The CSI snapshotter through the official client: cut, ready, contents, errors, deletion.

Storage classes come from simulator/seeds/storage-faults.yaml (fast-snapclass:
cut 300ms, ready 400ms after the cut). Timing bounds are strict on the early
side (a snapshot is never cut before its latency) and loose on the late side,
so a busy machine does not fail them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    SNAPSHOT,
    Cluster,
    behaviour_cluster,
    parse_time,
    pvc_body,
    snapshot_body,
    wait_for,
)

AS_SOURCE = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
BOUND = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
CONTENT_BOUND = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
PVC_SOURCE = "snapshot.storage.kubernetes.io/pvc-as-source-protection"
BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-snapshots")


def bound_pvc(cluster: Cluster, namespace: str, name: str, **options: Any) -> dict[str, Any]:
    cluster.create_pvc(namespace, pvc_body(name, **options))
    return wait_for(
        lambda: _phase(cluster.pvc(namespace, name)) == "Bound" and cluster.pvc(namespace, name),
        what=f"PVC {name} Bound",
    )


def _phase(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def _status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def snapshot_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return _status(cluster.snapshot(namespace, name))


def test_snapshot_is_cut_then_ready_after_the_class_latencies(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "data", size="5Gi")
    created_at = time.time()
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data", "fast-snapclass"))

    cut = wait_for(
        lambda: snapshot_status(cluster, ns, "snap").get("creationTime"), what="creationTime"
    )
    cut_after = parse_time(cut) - created_at
    assert 0.29 <= cut_after <= 1.5, f"cut {cut_after:.3f}s after creation, latency is 300ms"
    assert "." in cut, "creationTime carries fractional seconds (the freeze window uses it)"

    wait_for(lambda: snapshot_status(cluster, ns, "snap").get("readyToUse"), what="readyToUse")
    ready_after_cut = time.time() - parse_time(cut)
    assert 0.38 <= ready_after_cut <= 2.0, f"ready {ready_after_cut:.3f}s after the cut"

    status = snapshot_status(cluster, ns, "snap")
    assert status["restoreSize"] == "5Gi"
    assert "error" not in status
    content = cluster.content(status["boundVolumeSnapshotContentName"])
    assert content is not None
    assert content["status"]["readyToUse"] is True
    assert content["status"]["restoreSize"] == 5 * 1024**3
    assert abs(content["status"]["creationTime"] / 1e9 - parse_time(cut)) < 1e-5
    assert content["status"]["snapshotHandle"]


def test_content_is_bound_with_the_snapshotters_fields_and_finalizers(cluster: Cluster) -> None:
    ns = cluster.namespace()
    pvc = bound_pvc(cluster, ns, "data", size="2Gi")
    # No class: the default class of the PVC's driver is chosen and written into the spec.
    created = cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data"))
    uid = created["metadata"]["uid"]
    snap = wait_for(
        lambda: (
            (s := cluster.snapshot(ns, "snap"))
            and _status(s).get("boundVolumeSnapshotContentName")
            and s
        ),
        what="binding",
    )
    assert snap["spec"]["volumeSnapshotClassName"] == "fast-snapclass"
    assert snap["status"]["boundVolumeSnapshotContentName"] == f"snapcontent-{uid}"
    assert snap["status"]["readyToUse"] is False
    wait_for(
        lambda: BOUND in (cluster.snapshot(ns, "snap") or {})["metadata"].get("finalizers", [])
    )
    snap = cluster.snapshot(ns, "snap")
    assert snap is not None and {AS_SOURCE, BOUND} <= set(snap["metadata"]["finalizers"])

    content = cluster.content(f"snapcontent-{uid}")
    assert content is not None
    assert content["metadata"]["finalizers"] == [CONTENT_BOUND]
    assert content["spec"]["volumeSnapshotRef"] == {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "name": "snap",
        "namespace": ns,
        "uid": uid,
        "resourceVersion": content["spec"]["volumeSnapshotRef"]["resourceVersion"],
    }
    assert content["spec"]["driver"] == "fast.csi.vmsnap.io"
    assert content["spec"]["deletionPolicy"] == "Delete"
    assert content["spec"]["volumeSnapshotClassName"] == "fast-snapclass"
    assert content["spec"]["source"]["volumeHandle"]
    assert content["spec"]["sourceVolumeMode"] == "Filesystem"

    # The source PVC is protected until the snapshot is ready.
    assert PVC_SOURCE in (cluster.pvc(ns, "data") or {})["metadata"].get("finalizers", [])
    wait_for(lambda: snapshot_status(cluster, ns, "snap").get("readyToUse"), what="readyToUse")
    wait_for(
        lambda: (
            PVC_SOURCE not in ((cluster.pvc(ns, "data") or {})["metadata"].get("finalizers") or [])
        ),
        what="PVC finalizer removed",
    )
    assert pvc["metadata"]["uid"] == (cluster.pvc(ns, "data") or {})["metadata"]["uid"]
    reasons = [e["reason"] for e in cluster.events(ns, "snap")]
    assert {"CreatingSnapshot", "SnapshotCreated", "SnapshotReady"} <= set(reasons)


def test_missing_class_pvc_or_default_class_set_status_error(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "data")
    bound_pvc(cluster, ns, "nodefault", storage_class="nodefault-csi")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("no-class", "data", "gone"))
    cluster.create(
        SNAPSHOT, "volumesnapshots", ns, snapshot_body("no-pvc", "missing", "fast-snapclass")
    )
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("no-default", "nodefault"))
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("no-pvc-no-class", "missing"))

    def error(name: str) -> dict[str, Any] | None:
        return snapshot_status(cluster, ns, name).get("error")

    no_class = wait_for(lambda: error("no-class"))
    assert no_class["message"] == (
        "Failed to get snapshot class with error "
        'volumesnapshotclass.snapshot.storage.k8s.io "gone" not found'
    )
    assert "readyToUse" not in snapshot_status(cluster, ns, "no-class")
    assert parse_time(no_class["time"]) > 0

    no_pvc = wait_for(lambda: error("no-pvc"))
    assert no_pvc["message"] == (
        "Failed to create snapshot content with error snapshot controller failed to update "
        "no-pvc on API server: cannot get claim from snapshot"
    )
    assert snapshot_status(cluster, ns, "no-pvc")["readyToUse"] is False

    no_default = wait_for(lambda: error("no-default"))
    assert no_default["message"] == (
        "Failed to set default snapshot class with error cannot find default snapshot class"
    )
    missing = wait_for(lambda: error("no-pvc-no-class"))
    assert missing["message"].startswith(
        "Failed to set default snapshot class with error failed to retrieve PVC missing"
    )
    no_pvc_snapshot = cluster.snapshot(ns, "no-pvc")
    assert no_pvc_snapshot is not None
    assert cluster.content(f"snapcontent-{no_pvc_snapshot['metadata']['uid']}") is None
    warnings = {e["reason"] for e in cluster.events(ns, "no-class") if e["type"] == "Warning"}
    assert warnings == {"GetSnapshotClassFailed"}


def test_error_clears_once_the_missing_pvc_is_there(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "late", "fast-retain"))
    wait_for(lambda: snapshot_status(cluster, ns, "snap").get("error"), what="error")
    cluster.create_pvc(ns, pvc_body("late"))
    status = wait_for(
        lambda: (s := snapshot_status(cluster, ns, "snap")).get("readyToUse") and s, what="ready"
    )
    assert "error" not in status
    assert status["creationTime"]


def test_driver_mismatch_and_non_csi_volume_fail_like_the_real_snapshotter(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "fast")
    # local-path is rancher.io/local-path: not a CSI driver; it binds when a consumer appears,
    # so give it a selected node the way the scheduler would.
    bound_pvc(
        cluster,
        ns,
        "local",
        storage_class="local-path",
        annotations={"volume.kubernetes.io/selected-node": "sim-node-1"},
    )
    cluster.create(
        SNAPSHOT, "volumesnapshots", ns, snapshot_body("mismatch", "fast", "never-ready-snapclass")
    )
    cluster.create(
        SNAPSHOT, "volumesnapshots", ns, snapshot_body("non-csi", "local", "fast-snapclass")
    )

    mismatch = wait_for(lambda: snapshot_status(cluster, ns, "mismatch").get("error"))
    assert "rpc error: code = NotFound" in mismatch["message"]
    assert mismatch["message"].startswith(
        "Failed to check and update snapshot content: failed to take snapshot of the volume"
    )
    status = snapshot_status(cluster, ns, "mismatch")
    assert status["readyToUse"] is False and "creationTime" not in status
    content = cluster.content(status["boundVolumeSnapshotContentName"])
    assert content is not None and content["status"]["error"]["message"] == mismatch["message"]

    non_csi = wait_for(lambda: snapshot_status(cluster, ns, "non-csi").get("error"))
    assert non_csi["message"].startswith(
        "Failed to create snapshot content with error cannot find CSI PersistentVolumeSource"
    )


def test_fail_annotations_never_cut_never_ready_and_error(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "stuck", storage_class="never-cut-csi")
    bound_pvc(cluster, ns, "slow", storage_class="never-ready-csi")
    bound_pvc(cluster, ns, "broken", storage_class="failing-csi")
    # The PVC's own annotation wins over its class.
    bound_pvc(cluster, ns, "odd", annotations={"sim.vmsnap.io/fail": "never-cut"})
    for name in ("stuck", "slow", "broken", "odd"):
        cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body(name, name))

    broken = wait_for(lambda: snapshot_status(cluster, ns, "broken").get("error"))
    assert "rpc error: code = Internal desc = simulated storage failure" in broken["message"]
    wait_for(lambda: snapshot_status(cluster, ns, "slow").get("creationTime"), what="cut")
    time.sleep(0.6)  # well past every latency involved (50ms default, 300ms fast)
    for name in ("stuck", "odd"):
        status = snapshot_status(cluster, ns, name)
        assert status.get("boundVolumeSnapshotContentName")
        assert "creationTime" not in status and status["readyToUse"] is False
        assert "error" not in status
    slow = snapshot_status(cluster, ns, "slow")
    assert slow["readyToUse"] is False and "restoreSize" not in slow
    assert snapshot_status(cluster, ns, "broken")["readyToUse"] is False


def test_deleting_a_snapshot_deletes_its_content_when_the_policy_is_delete(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "data")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data", "fast-snapclass"))
    content_name = wait_for(
        lambda: snapshot_status(cluster, ns, "snap").get("boundVolumeSnapshotContentName")
    )
    wait_for(
        lambda: BOUND in (cluster.snapshot(ns, "snap") or {})["metadata"].get("finalizers", [])
    )
    cluster.delete(SNAPSHOT, "volumesnapshots", ns, "snap")
    wait_for(lambda: cluster.snapshot(ns, "snap") is None, what="snapshot gone")
    assert cluster.content(content_name) is None
    assert PVC_SOURCE not in ((cluster.pvc(ns, "data") or {})["metadata"].get("finalizers") or [])


def test_deleting_a_snapshot_keeps_a_retained_content(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "data")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data", "fast-retain"))
    wait_for(lambda: snapshot_status(cluster, ns, "snap").get("readyToUse"))
    snap = cluster.snapshot(ns, "snap")
    assert snap is not None and BOUND not in snap["metadata"]["finalizers"]
    content_name = snap["status"]["boundVolumeSnapshotContentName"]
    cluster.delete(SNAPSHOT, "volumesnapshots", ns, "snap")
    wait_for(lambda: cluster.snapshot(ns, "snap") is None, what="snapshot gone")
    content = cluster.content(content_name)
    assert content is not None
    assert content["metadata"]["annotations"][BEING_DELETED] == "yes"
    assert content["spec"]["volumeSnapshotRef"]["name"] == "snap"
    assert content["status"]["readyToUse"] is True
    # Deleting the retained content by hand now works: its finalizer is released.
    cluster.delete(SNAPSHOT, "volumesnapshotcontents", None, content_name)
    wait_for(lambda: cluster.content(content_name) is None, what="content gone")


def test_a_bound_content_deleted_by_hand_waits_for_its_snapshot(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "data")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data", "fast-retain"))
    content_name = wait_for(
        lambda: snapshot_status(cluster, ns, "snap").get("boundVolumeSnapshotContentName")
    )
    cluster.delete(SNAPSHOT, "volumesnapshotcontents", None, content_name)
    time.sleep(0.2)
    content = cluster.content(content_name)
    assert content is not None and content["metadata"].get("deletionTimestamp")
    cluster.delete(SNAPSHOT, "volumesnapshots", ns, "snap")
    wait_for(lambda: cluster.content(content_name) is None, what="content gone")
    wait_for(lambda: cluster.snapshot(ns, "snap") is None, what="snapshot gone")


def test_snapshot_deletion_waits_while_a_claim_is_restored_from_it(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvc(cluster, ns, "data", storage_class="never-ready-csi")
    cluster.create(SNAPSHOT, "volumesnapshots", ns, snapshot_body("snap", "data"))
    wait_for(lambda: snapshot_status(cluster, ns, "snap").get("creationTime"))
    cluster.create_pvc(
        ns, pvc_body("restore", storage_class="never-ready-csi", source_snapshot="snap")
    )
    cluster.delete(SNAPSHOT, "volumesnapshots", ns, "snap")
    time.sleep(0.3)
    snap = cluster.snapshot(ns, "snap")
    assert snap is not None and snap["metadata"].get("deletionTimestamp")
    assert AS_SOURCE in snap["metadata"]["finalizers"]
    assert "SnapshotDeletePending" in {e["reason"] for e in cluster.events(ns, "snap")}
    cluster.delete_pvc(ns, "restore")
    wait_for(lambda: cluster.snapshot(ns, "snap") is None, what="snapshot gone")


def test_a_pre_provisioned_snapshot_binds_to_its_content(cluster: Cluster) -> None:
    ns = cluster.namespace()
    content_name = f"imported-{ns}"
    cluster.create(
        SNAPSHOT,
        "volumesnapshotcontents",
        None,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": "Retain",
                "driver": "fast.csi.vmsnap.io",
                "source": {"snapshotHandle": "handle-123"},
                "volumeSnapshotRef": {"name": "imported", "namespace": ns},
            },
        },
    )
    snapshot = cluster.create(
        SNAPSHOT,
        "volumesnapshots",
        ns,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "imported"},
            "spec": {"source": {"volumeSnapshotContentName": content_name}},
        },
    )
    status = wait_for(
        lambda: (s := snapshot_status(cluster, ns, "imported")).get("readyToUse") and s
    )
    assert status["boundVolumeSnapshotContentName"] == content_name
    assert status["creationTime"]
    content = cluster.content(content_name)
    assert content is not None
    assert content["spec"]["volumeSnapshotRef"]["uid"] == snapshot["metadata"]["uid"]
    assert content["status"]["snapshotHandle"] == "handle-123"
    # A snapshot naming a content that is not there says so.
    cluster.create(
        SNAPSHOT,
        "volumesnapshots",
        ns,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "orphan"},
            "spec": {"source": {"volumeSnapshotContentName": f"absent-{ns}"}},
        },
    )
    error = wait_for(lambda: snapshot_status(cluster, ns, "orphan").get("error"))
    assert error["message"] == "VolumeSnapshotContent is missing"
