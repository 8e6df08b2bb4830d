"""PVCs restored from a VolumeSnapshot: retry-safe create, the wait for Bound, delete."""

from __future__ import annotations

import pytest

from cluster.client import Cluster
from cluster.errors import Conflict, Invalid, NotFound
from cluster.pvcs import pvc_from_snapshot
from rules.models import PvcState
from tests.cluster.conftest import NS
from tests.support.sim import Sim


@pytest.fixture(scope="module")
def ready_snapshot(cluster: Cluster) -> str:
    cluster.create_volume_snapshot(NS, "vs-for-restore", "snap-a", "fast-snap", {})
    cluster.watch_volume_snapshots(NS, ["vs-for-restore"], "ready", timeout_seconds=10)
    return "vs-for-restore"


def test_restore_a_pvc_from_a_snapshot(cluster: Cluster, ready_snapshot: str) -> None:
    backed_up = cluster.get_pvc(NS, "snap-a")
    assert backed_up is not None
    snapshot = cluster.get_volume_snapshot(NS, ready_snapshot)
    assert snapshot is not None and snapshot.ready_to_use
    body = pvc_from_snapshot("restored-a", backed_up, ready_snapshot, snapshot.restore_size,
                             labels={"vmsnap.io/restore": "r1"})
    created = cluster.create_pvc(NS, body)
    assert created["metadata"]["name"] == "restored-a"
    assert created["spec"]["dataSource"]["name"] == ready_snapshot
    again = cluster.create_pvc(NS, body)
    assert again["metadata"]["uid"] == created["metadata"]["uid"]
    seen: list[list[PvcState]] = []
    (state,) = cluster.watch_pvcs(NS, ["restored-a"], timeout_seconds=10, on_change=seen.append)
    assert state.bound and state.data_source == ready_snapshot
    assert seen[-1][0].bound


def test_create_refuses_a_pvc_of_the_same_name_from_another_source(
    cluster: Cluster, ready_snapshot: str
) -> None:
    backed_up = cluster.get_pvc(NS, "snap-a")
    assert backed_up is not None
    cluster.create_pvc(NS, pvc_from_snapshot("restored-b", backed_up, ready_snapshot, "1Gi"))
    with pytest.raises(Conflict, match="VolumeSnapshot/vs-for-restore"):
        cluster.create_pvc(NS, pvc_from_snapshot("restored-b", backed_up, "other", "1Gi"))
    plain = {"metadata": {"name": "restored-b"},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                      "resources": {"requests": {"storage": "1Gi"}}}}
    with pytest.raises(Conflict, match="not none"):
        cluster.create_pvc(NS, plain)


def test_get_and_delete(cluster: Cluster) -> None:
    body = {"metadata": {"name": "scratch"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "1Gi"}}}}
    cluster.create_pvc(NS, body)
    assert cluster.create_pvc(NS, body)["metadata"]["name"] == "scratch"  # no source either
    found = cluster.get_pvc(NS, "scratch")
    assert found is not None and found["spec"]["storageClassName"] == "fast"
    assert cluster.delete_pvc(NS, "scratch") is True
    assert cluster.get_pvc(NS, "never-was") is None
    assert cluster.delete_pvc(NS, "never-was") is False


def test_bad_pvcs_change_nothing(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match=r"metadata\.name"):
        cluster.create_pvc(NS, {"spec": {}})
    with pytest.raises(ValueError, match="namespace 'other'"):
        cluster.create_pvc(NS, {"metadata": {"name": "bad", "namespace": "other"}, "spec": {}})
    with pytest.raises(Invalid):
        cluster.create_pvc(NS, {"metadata": {"name": "bad"}, "spec": {"accessModes": 5}})
    assert cluster.get_pvc(NS, "bad") is None


def test_waiting_for_a_pvc_that_stays_pending_times_out(cluster: Cluster) -> None:
    with pytest.raises(TimeoutError, match=r"pending-disk \(phase Pending\)"):
        cluster.watch_pvcs(NS, ["pending-disk"], timeout_seconds=0.5)
    with pytest.raises(NotFound):
        cluster.watch_pvcs(NS, ["missing-disk"], timeout_seconds=0.5)


def test_get_pvcs_reads_many_in_one_list_and_leaves_out_the_missing(
    cluster: Cluster, sim: Sim
) -> None:
    before = len(sim.requests_log())
    found = cluster.get_pvcs(NS, ["snap-a", "root-disk", "no-such-pvc", "snap-a"])
    kinds = [(e.get("verb"), e.get("resource")) for e in sim.requests_log()[before:]]
    assert sorted(found) == ["root-disk", "snap-a"]
    assert found["snap-a"]["metadata"]["name"] == "snap-a"
    assert found["root-disk"]["spec"]["storageClassName"]
    assert kinds == [("list", "persistentvolumeclaims")]
    before = len(sim.requests_log())
    assert list(cluster.get_pvcs(NS, ["snap-a"])) == ["snap-a"]
    assert cluster.get_pvcs(NS, ["no-such-pvc"]) == {}
    kinds = [(e.get("verb"), e.get("resource")) for e in sim.requests_log()[before:]]
    assert kinds == [("get", "persistentvolumeclaims")] * 2
