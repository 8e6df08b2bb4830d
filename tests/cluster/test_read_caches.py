"""The worker's watch-fed caches (cluster.informer) against a running simulator: PVCs and
classes read without requests, changes followed, what looks unusable or leaves a disk out
confirmed by the server, and the server read again whenever a cache may have missed something."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cluster.client import Cluster
from cluster.informer import WatchedCollection
from tests.cluster.conftest import NS
from tests.support.sim import Sim

PVC_BODY = {"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "1Gi"}}}}


@pytest.fixture
def cached(sim: Sim) -> Iterator[Cluster]:
    """A client that keeps PVC caches, as the worker does (each test starts its own)."""
    with Cluster.from_environment(str(sim.kubeconfig), request_timeout_seconds=10,
                                  cache_reads=True) as adapter:
        yield adapter


def pvc_requests(sim: Sim, since: int) -> list[tuple[str, str]]:
    """(verb, name) of every PVC request after the log's entry `since`."""
    return [(e["verb"], e["name"]) for e in sim.requests_log()[since:]
            if e["resource"] == "persistentvolumeclaims"]


def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def warm(sim: Sim, first_read: Callable[[], Any], *resources: str) -> None:
    """Make the caches' first read, then wait until each cache's watch request has reached
    the server (it starts on the cache's own thread, and would otherwise land among the
    requests a test is counting)."""
    mark = len(sim.requests_log())
    first_read()
    until(lambda: {r for e in sim.requests_log()[mark:] if e["verb"] == "watch"
                   for r in [e["resource"]]} >= set(resources), f"the watches of {resources}")


def test_cached_pvcs_are_read_without_a_request(cached: Cluster, cluster: Cluster,
                                                sim: Sim) -> None:
    mark = len(sim.requests_log())
    first = cached.get_pvcs(NS, ["snap-a", "root-disk"])
    assert sorted(first) == ["root-disk", "snap-a"]
    # The first read lists the namespace once and starts the watch.
    assert [v for v, _ in pvc_requests(sim, mark)].count("list") == 1
    until(lambda: ("watch", "") in pvc_requests(sim, mark), "the cache's watch")
    mark = len(sim.requests_log())
    again = cached.get_pvcs(NS, ["snap-a", "root-disk", "snap-a"])
    assert pvc_requests(sim, mark) == []
    assert again["snap-a"]["metadata"]["uid"] == cluster.get_pvc(NS, "snap-a")["metadata"]["uid"]  # type: ignore[index]


def test_the_cache_follows_creates_changes_and_deletes(cached: Cluster, cluster: Cluster) -> None:
    cached.get_pvcs(NS, ["snap-a"])
    cache = cached.pvc_cache(NS)
    assert cache is not None
    cluster.create_pvc(NS, {**PVC_BODY, "metadata": {"name": "cache-new"}})
    until(lambda: cache.get("cache-new"), "the new PVC in the cache")
    cluster.core.patch_namespaced_persistent_volume_claim(
        "cache-new", NS, {"metadata": {"labels": {"seen": "yes"}}})
    until(lambda: ((cache.get("cache-new") or {}).get("metadata") or {}).get("labels"),
          "the label in the cache")
    until(lambda: (cache.get("cache-new") or {}).get("status", {}).get("phase") == "Bound",
          "the PVC bound in the cache")
    cluster.delete_pvc(NS, "cache-new")
    until(lambda: cache.get("cache-new") is None, "the PVC gone from the cache")


def test_a_pvc_missing_or_unusable_in_the_cache_is_asked_of_the_server(
    cached: Cluster, sim: Sim
) -> None:
    warm(sim, lambda: cached.get_pvcs(NS, ["snap-a"]), "persistentvolumeclaims")
    mark = len(sim.requests_log())
    found = cached.get_pvcs(NS, ["snap-a", "pending-disk", "no-such-disk"])
    assert sorted(found) == ["pending-disk", "snap-a"]
    assert found["pending-disk"]["status"]["phase"] == "Pending"
    assert sorted(pvc_requests(sim, mark)) == [("get", "no-such-disk"), ("get", "pending-disk")]


def test_a_closed_cache_sends_reads_to_the_server(cached: Cluster, sim: Sim) -> None:
    warm(sim, lambda: cached.get_pvcs(NS, ["snap-a"]), "persistentvolumeclaims")
    cache = cached.pvc_cache(NS)
    assert cache is not None
    cache.close()
    assert cached.pvc_cache(NS) is None
    mark = len(sim.requests_log())
    assert sorted(cached.get_pvcs(NS, ["snap-a", "root-disk"])) == ["root-disk", "snap-a"]
    assert pvc_requests(sim, mark) == [("list", "")]


def test_a_broken_watch_makes_the_cache_stale_until_it_lists_again(
    cluster: Cluster, sim: Sim
) -> None:
    cache = WatchedCollection(
        lambda **kw: cluster.core.list_namespaced_persistent_volume_claim(NS, **kw),
        what=f"PersistentVolumeClaims in {NS}", window_seconds=1.0)
    sim.set_faults({"rules": [{"verb": "watch", "resource": "persistentvolumeclaims",
                               "error": 500}]})
    try:
        cache.start()
        assert cache.get("snap-a") is not None
        until(lambda: not cache.fresh, "the cache to notice its watch is refused")
        cluster.create_pvc(NS, {**PVC_BODY, "metadata": {"name": "while-stale"}})
        sim.clear_faults()
        until(lambda: cache.fresh and cache.get("while-stale"), "a fresh list with the new PVC")
    finally:
        sim.clear_faults()
        cache.close(wait_seconds=5)  # its 1 s windows end: no request of it after this test
        cluster.delete_pvc(NS, "while-stale")


def test_a_cache_that_cannot_list_is_not_kept_and_reads_go_to_the_server(
    cached: Cluster, sim: Sim
) -> None:
    sim.set_faults({"rules": [{"verb": "list", "resource": "persistentvolumeclaims",
                               "error": 500, "count": 1}]})
    try:
        mark = len(sim.requests_log())
        assert cached.pvc_cache(NS) is None  # its first list failed
        assert sorted(cached.get_pvcs(NS, ["snap-a", "root-disk"])) == ["root-disk", "snap-a"]
        assert pvc_requests(sim, mark) == [("list", ""), ("list", "")]
    finally:
        sim.clear_faults()


def class_requests(sim: Sim, since: int) -> list[tuple[str, str]]:
    return [(e["verb"], e["resource"]) for e in sim.requests_log()[since:]
            if e["resource"] in ("storageclasses", "volumesnapshotclasses")]


def test_a_selection_on_warm_caches_asks_the_server_nothing(
    cached: Cluster, cluster: Cluster, sim: Sim
) -> None:
    vm = cluster.get_vm(NS, "hotplug")
    expected = cluster.select_volumes_of(NS, vm)
    assert expected.included and not expected.partial
    warm(sim, lambda: cached.select_volumes_of(NS, vm), "persistentvolumeclaims",
         "storageclasses", "volumesnapshotclasses")
    assert cached.select_volumes_of(NS, vm) == expected
    mark = len(sim.requests_log())
    assert cached.select_volumes_of(NS, vm) == expected
    assert sim.requests_log()[mark:] == []


def test_a_disk_left_out_on_cached_classes_is_chosen_again_on_the_servers(
    cached: Cluster, cluster: Cluster, sim: Sim
) -> None:
    vm = cluster.get_vm(NS, "mixed")
    expected = cluster.select_volumes_of(NS, vm)
    assert expected.partial
    warm(sim, lambda: cached.select_volumes_of(NS, vm), "persistentvolumeclaims",
         "storageclasses", "volumesnapshotclasses")
    mark = len(sim.requests_log())
    assert cached.select_volumes_of(NS, vm) == expected
    asked = class_requests(sim, mark)
    assert ("list", "volumesnapshotclasses") in asked
    assert ("get", "storageclasses") in asked


def test_a_class_made_a_moment_ago_is_used(cached: Cluster, cluster: Cluster, sim: Sim) -> None:
    vm = cluster.get_vm(NS, "mixed")
    before = cached.select_volumes_of(NS, vm)
    assert "legacy" in {v.volume_name for v in before.excluded}
    nfs = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
           "metadata": {"name": "nfs-snap"}, "driver": "nfs.csi.k8s.io",
           "deletionPolicy": "Delete"}
    sim.kubectl("create", "-f", "-", input=json.dumps(nfs))
    try:
        # Whether or not the watch has delivered it yet, the selection sees it.
        after = cached.select_volumes_of(NS, vm)
        assert "legacy" in {v.volume_name for v in after.included}
        cache = cached.class_cache("volumesnapshotclasses")
        assert cache is not None
        until(lambda: cache.get("nfs-snap"), "the new class in the cache")
    finally:
        sim.kubectl("delete", "volumesnapshotclass", "nfs-snap")
