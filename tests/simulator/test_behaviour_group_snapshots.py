"""VolumeGroupSnapshots through the official client and kubectl: one cut for every member,
the members and their contents, readiness, errors, deletion with Delete and Retain.

The classes come from simulator/seeds/storage-faults.yaml (fast-groupsnapclass: the
default for fast.csi.vmsnap.io, cut 300ms, ready 400ms after the cut; fast-group-retain;
never-cut, never-ready and failing group classes; none for nodefault-csi). Timing bounds
are strict on the early side and loose on the late side, so a busy machine does not fail
them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    SNAPSHOT,
    Cluster,
    behaviour_cluster,
    parse_time,
    pvc_body,
    wait_for,
)

GROUP = ("groupsnapshot.storage.k8s.io", "v1")
GROUP_BOUND = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-bound-protection"
GROUP_CONTENT_BOUND = (
    "groupsnapshot.storage.kubernetes.io/volumegroupsnapshotcontent-bound-protection"
)
GROUP_BEING_DELETED = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-deleted"
IN_GROUP = "snapshot.storage.kubernetes.io/volumesnapshot-in-group-protection"
AS_SOURCE = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
GROUP_HANDLE = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-group-snapshots")


def group_body(
    name: str, labels: dict[str, str] | None = None, group_class: str | None = None,
    selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"selector": selector if selector is not None else {"matchLabels": labels}}
    }
    if group_class is not None:
        spec["volumeGroupSnapshotClassName"] = group_class
    return {
        "apiVersion": "groupsnapshot.storage.k8s.io/v1",
        "kind": "VolumeGroupSnapshot",
        "metadata": {"name": name},
        "spec": spec,
    }


def bound_pvcs(
    cluster: Cluster, namespace: str, names: list[str], labels: dict[str, str],
    storage_class: str = "fast-csi", size: str = "1Gi",
) -> None:
    for name in names:
        body = pvc_body(name, storage_class=storage_class, size=size)
        body["metadata"]["labels"] = labels
        cluster.create_pvc(namespace, body)
    wait_for(
        lambda: all(pvc_phase(cluster, namespace, name) == "Bound" for name in names),
        what=f"PVCs {names} Bound",
    )


def pvc_phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    return ((cluster.pvc(namespace, name) or {}).get("status") or {}).get("phase")


def group(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return cluster.get(GROUP, "volumegroupsnapshots", namespace, name)


def group_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (group(cluster, namespace, name) or {}).get("status") or {}


def group_content(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.get(GROUP, "volumegroupsnapshotcontents", None, name)


def members(cluster: Cluster, namespace: str, group_name: str) -> list[dict[str, Any]]:
    found = cluster.custom.list_namespaced_custom_object(*SNAPSHOT, namespace, "volumesnapshots")
    items: list[dict[str, Any]] = cast(dict[str, Any], found)["items"]
    return [
        snapshot for snapshot in items
        if any(ref.get("kind") == "VolumeGroupSnapshot" and ref.get("name") == group_name
               for ref in snapshot["metadata"].get("ownerReferences") or [])
    ]


def error_message(cluster: Cluster, namespace: str, name: str) -> str:
    return str((group_status(cluster, namespace, name).get("error") or {}).get("message") or "")


def test_one_cut_for_every_member_with_their_snapshots_and_contents(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["db-a", "db-b", "db-c"], {"app": "db"}, size="2Gi")
    bound_pvcs(cluster, ns, ["web"], {"app": "web"})
    created_at = time.time()
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "db"}))

    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="group ready")
    vgs = group(cluster, ns, "g")
    assert vgs is not None
    uid = vgs["metadata"]["uid"]
    status = vgs["status"]
    # The default class of the volumes' driver is written into the spec.
    assert vgs["spec"]["volumeGroupSnapshotClassName"] == "fast-groupsnapclass"
    assert GROUP_BOUND in vgs["metadata"]["finalizers"]
    assert status["boundVolumeGroupSnapshotContentName"] == f"groupsnapcontent-{uid}"
    assert "error" not in status
    cut_after = parse_time(status["creationTime"]) - created_at
    assert 0.29 <= cut_after <= 2.0, f"cut {cut_after:.3f}s after creation, latency is 300ms"

    content = group_content(cluster, f"groupsnapcontent-{uid}")
    assert content is not None
    spec = content["spec"]
    assert spec["volumeGroupSnapshotRef"] == {
        **spec["volumeGroupSnapshotRef"],
        "kind": "VolumeGroupSnapshot", "name": "g", "namespace": ns, "uid": uid,
        "apiVersion": "groupsnapshot.storage.k8s.io/v1",
    }
    assert (spec["driver"], spec["deletionPolicy"], spec["volumeGroupSnapshotClassName"]) == (
        "fast.csi.vmsnap.io", "Delete", "fast-groupsnapclass")
    assert len(spec["source"]["volumeHandles"]) == 3
    assert GROUP_CONTENT_BOUND in content["metadata"]["finalizers"]
    infos = content["status"]["volumeSnapshotInfoList"]
    assert {info["volumeHandle"] for info in infos} == set(spec["source"]["volumeHandles"])
    assert {info["creationTime"] for info in infos} == {infos[0]["creationTime"]}
    assert all(info["readyToUse"] and info["restoreSize"] == 2 * 2**30 for info in infos)
    group_handle = content["status"]["volumeGroupSnapshotHandle"]

    found = members(cluster, ns, "g")
    assert sorted(m["spec"]["source"]["persistentVolumeClaimName"] for m in found) == [
        "db-a", "db-b", "db-c"]
    cut_times = {m["status"]["creationTime"] for m in found}
    assert cut_times == {status["creationTime"]}, "one creationTime for the group and its members"
    for handle in spec["source"]["volumeHandles"]:
        digest = hashlib.sha256((uid + handle).encode()).hexdigest()
        member = next(m for m in found if m["metadata"]["name"] == f"snapshot-{digest}")
        assert member["metadata"]["ownerReferences"] == [{
            "apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot",
            "name": "g", "uid": uid,
        }]
        assert set(member["metadata"]["finalizers"]) == {IN_GROUP, AS_SOURCE}
        assert "volumeSnapshotClassName" not in member["spec"]
        assert member["status"]["boundVolumeSnapshotContentName"] == f"snapcontent-{digest}"
        assert member["status"]["volumeGroupSnapshotName"] == "g"
        assert member["status"]["readyToUse"] is True
        assert member["status"]["restoreSize"] == "2Gi"
        member_content = cluster.content(f"snapcontent-{digest}")
        assert member_content is not None
        assert member_content["metadata"]["annotations"][GROUP_HANDLE] == group_handle
        assert member_content["spec"]["volumeSnapshotRef"]["uid"] == member["metadata"]["uid"]
        assert member_content["spec"]["source"] == {"volumeHandle": handle}
        assert (member_content["spec"]["driver"], member_content["spec"]["deletionPolicy"]) == (
            "fast.csi.vmsnap.io", "Delete")
        assert member_content["status"]["volumeGroupSnapshotHandle"] == group_handle
        assert member_content["status"]["readyToUse"] is True
    reasons = [e["reason"] for e in cluster.events(ns, "g")]
    assert {"CreatingGroupSnapshot", "GroupSnapshotCreated", "GroupSnapshotReady"} <= set(reasons)


def test_readiness_follows_the_cut_by_the_ready_latency(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["a", "b"], {"tier": "data"})
    cluster.create(GROUP, "volumegroupsnapshots", ns,
                   group_body("g", {"tier": "data"}, "fast-groupsnapclass"))
    cut = wait_for(lambda: group_status(cluster, ns, "g").get("creationTime"), what="cut")
    assert group_status(cluster, ns, "g").get("readyToUse") is False
    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="ready")
    ready_after_cut = time.time() - parse_time(cut)
    assert 0.38 <= ready_after_cut <= 2.5, f"ready {ready_after_cut:.3f}s after the cut"
    assert all(m["status"]["readyToUse"] for m in members(cluster, ns, "g"))


def test_only_match_labels_select_as_upstream_lists_them(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["x", "y"], {"app": "db"})
    selector = {
        "matchLabels": {"app": "db"},
        "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}],
    }
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", selector=selector))
    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="ready")
    assert len(members(cluster, ns, "g")) == 2


def test_no_matching_pvc_is_an_error_until_one_appears(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(GROUP, "volumegroupsnapshots", ns,
                   group_body("g", {"app": "none"}, "fast-groupsnapclass"))
    wait_for(lambda: error_message(cluster, ns, "g"), what="error")
    status = group_status(cluster, ns, "g")
    assert status["error"]["message"] == (
        "failed to create group snapshot content with error failed to get input parameters to "
        'create group snapshot g: "label selector app=none for group snapshot not applied to '
        'any PVC"'
    )
    assert status["readyToUse"] is False and status["error"]["time"].endswith("Z")
    assert "boundVolumeGroupSnapshotContentName" not in status
    bound_pvcs(cluster, ns, ["late"], {"app": "none"})
    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="ready")
    assert "error" not in group_status(cluster, ns, "g")


def test_without_a_class_the_default_for_the_driver_is_needed(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("none", {"app": "none"}))
    wait_for(lambda: error_message(cluster, ns, "none"), what="error")
    assert error_message(cluster, ns, "none") == (
        "Failed to set default group snapshot class with error label selector app=none for "
        "group snapshot not applied to any PVC"
    )
    bound_pvcs(cluster, ns, ["n"], {"app": "nodefault"}, storage_class="nodefault-csi")
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "nodefault"}))
    wait_for(lambda: error_message(cluster, ns, "g"), what="error")
    status = group_status(cluster, ns, "g")
    assert status["error"]["message"] == (
        "Failed to set default group snapshot class with error cannot find default group "
        "snapshot class"
    )
    assert "readyToUse" not in status


def test_a_missing_class_is_an_error(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["a"], {"app": "db"})
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "db"}, "nope"))
    wait_for(lambda: error_message(cluster, ns, "g"), what="error")
    assert error_message(cluster, ns, "g") == (
        "failed to get group snapshot class with error "
        'volumegroupsnapshotclass.groupsnapshot.storage.k8s.io "nope" not found'
    )
    assert "readyToUse" not in group_status(cluster, ns, "g")


def test_unbound_and_foreign_volumes_are_errors(cluster: Cluster) -> None:
    ns = cluster.namespace()
    pending = pvc_body("waiting", storage_class="fast-wffc")
    pending["metadata"]["labels"] = {"app": "wffc"}
    cluster.create_pvc(ns, pending)
    cluster.create(GROUP, "volumegroupsnapshots", ns,
                   group_body("unbound", {"app": "wffc"}, "fast-groupsnapclass"))
    wait_for(lambda: error_message(cluster, ns, "unbound"), what="error")
    assert error_message(cluster, ns, "unbound").endswith(
        '"the PVC waiting is not yet bound to a PV, will not attempt to take a group snapshot"')

    bound_pvcs(cluster, ns, ["fast"], {"app": "fast"})
    cluster.create(GROUP, "volumegroupsnapshots", ns,
                   group_body("foreign", {"app": "fast"}, "failing-groupsnapclass"))
    wait_for(lambda: error_message(cluster, ns, "foreign"), what="error")
    volume = (cluster.pvc(ns, "fast") or {})["spec"]["volumeName"]
    assert error_message(cluster, ns, "foreign") == (
        "failed to create group snapshot content with error snapshot controller failed to "
        f"update {ns}/foreign on API server: Volume CSI driver (fast.csi.vmsnap.io) mismatch "
        f"with VolumeGroupSnapshotClass (failing.csi.vmsnap.io) {ns}/foreign: {volume}"
    )
    assert group_status(cluster, ns, "foreign")["readyToUse"] is False


def test_a_driver_failure_reaches_the_group(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["a", "b"], {"app": "db"}, storage_class="failing-csi")
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "db"}))
    wait_for(lambda: error_message(cluster, ns, "g"), what="error")
    status = group_status(cluster, ns, "g")
    content = group_content(cluster, status["boundVolumeGroupSnapshotContentName"])
    assert content is not None
    handles = " ".join(content["spec"]["source"]["volumeHandles"])
    assert status["error"]["message"] == (
        "Failed to create group snapshot: failed to take group snapshot of the volumes "
        f'[{handles}]: "rpc error: code = Internal desc = simulated storage failure '
        '(sim.vmsnap.io/fail: error)"'
    )
    assert status["readyToUse"] is False and "creationTime" not in status
    assert content["status"]["error"] == status["error"]
    assert members(cluster, ns, "g") == []


def test_a_group_that_never_cuts_and_one_never_ready(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["stuck"], {"app": "stuck"}, storage_class="never-cut-csi")
    bound_pvcs(cluster, ns, ["slow"], {"app": "slow"}, storage_class="never-ready-csi")
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("stuck", {"app": "stuck"}))
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("slow", {"app": "slow"}))
    wait_for(lambda: group_status(cluster, ns, "slow").get("creationTime"), what="cut")
    wait_for(lambda: len(members(cluster, ns, "slow")) == 1, what="member")
    time.sleep(0.6)  # far beyond the default latencies
    stuck = group_status(cluster, ns, "stuck")
    assert stuck["boundVolumeGroupSnapshotContentName"] and stuck["readyToUse"] is False
    assert "creationTime" not in stuck and "error" not in stuck
    assert members(cluster, ns, "stuck") == []
    assert group_status(cluster, ns, "slow")["readyToUse"] is False
    assert members(cluster, ns, "slow")[0]["status"]["readyToUse"] is False


def test_deleting_the_group_deletes_members_and_contents(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["a", "b"], {"app": "db"})
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "db"}))
    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="ready")
    content_name = group_status(cluster, ns, "g")["boundVolumeGroupSnapshotContentName"]
    found = members(cluster, ns, "g")
    member_contents = [m["status"]["boundVolumeSnapshotContentName"] for m in found]

    # A member alone cannot go while its group exists: upstream refuses it.
    lone = found[0]["metadata"]["name"]
    cluster.delete(SNAPSHOT, "volumesnapshots", ns, lone)
    wait_for(lambda: any(e["reason"] == "SnapshotDeletePending" for e in cluster.events(ns, lone)),
             what="SnapshotDeletePending")
    held = cluster.snapshot(ns, lone)
    assert held is not None and held["metadata"].get("deletionTimestamp")
    message = next(e["message"] for e in cluster.events(ns, lone)
                   if e["reason"] == "SnapshotDeletePending")
    assert message == (
        f"deletion of the individual volume snapshot {ns}/{lone} is not allowed as it belongs "
        f"to group snapshot {ns}/g. Deleting the group snapshot will trigger the deletion of "
        "all the individual volume snapshots that are part of the group."
    )
    assert cluster.content(held["status"]["boundVolumeSnapshotContentName"]) is not None

    cluster.delete(GROUP, "volumegroupsnapshots", ns, "g")
    wait_for(lambda: group(cluster, ns, "g") is None, what="group gone")
    wait_for(lambda: members(cluster, ns, "g") == [], what="members gone")
    wait_for(lambda: group_content(cluster, content_name) is None, what="group content gone")
    wait_for(lambda: all(cluster.content(name) is None for name in member_contents),
             what="member contents gone")


def test_deleting_a_retained_group_keeps_the_contents(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["a", "b"], {"app": "db"})
    cluster.create(GROUP, "volumegroupsnapshots", ns,
                   group_body("g", {"app": "db"}, "fast-group-retain"))
    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="ready")
    content_name = group_status(cluster, ns, "g")["boundVolumeGroupSnapshotContentName"]
    member_contents = [m["status"]["boundVolumeSnapshotContentName"]
                       for m in members(cluster, ns, "g")]
    cluster.delete(GROUP, "volumegroupsnapshots", ns, "g")
    wait_for(lambda: group(cluster, ns, "g") is None, what="group gone")
    wait_for(lambda: members(cluster, ns, "g") == [], what="members gone")
    content = group_content(cluster, content_name)
    assert content is not None and content["spec"]["deletionPolicy"] == "Retain"
    assert content["metadata"]["annotations"][GROUP_BEING_DELETED] == "yes"
    assert content["status"]["readyToUse"] is True
    for name in member_contents:
        kept = cluster.content(name)
        assert kept is not None and kept["spec"]["deletionPolicy"] == "Retain"
    # The retained group content can then be deleted by hand: its finalizer is released.
    cluster.delete(GROUP, "volumegroupsnapshotcontents", None, content_name)
    wait_for(lambda: group_content(cluster, content_name) is None, what="group content gone")


def test_the_crd_rules_refuse_bad_groups(cluster: Cluster) -> None:
    ns = cluster.namespace()
    both = group_body("both", {"app": "db"})
    both["spec"]["source"]["volumeGroupSnapshotContentName"] = "c"
    empty_class = group_body("empty", {"app": "db"}, "")
    for body in (both, empty_class):
        with pytest.raises(ApiException) as refused:
            cluster.create(GROUP, "volumegroupsnapshots", ns, body)
        assert refused.value.status == 422
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "none"}))
    with pytest.raises(ApiException) as immutable:
        cluster.patch(GROUP, "volumegroupsnapshots", ns, "g",
                      {"spec": {"source": {"selector": {"matchLabels": {"app": "other"}}}}})
    assert immutable.value.status == 422
    assert "selector is immutable" in json.loads(str(immutable.value.body))["message"]


def test_kubectl_short_names_and_columns(cluster: Cluster) -> None:
    ns = cluster.namespace()
    bound_pvcs(cluster, ns, ["a"], {"app": "db"})
    cluster.create(GROUP, "volumegroupsnapshots", ns, group_body("g", {"app": "db"}))
    wait_for(lambda: group_status(cluster, ns, "g").get("readyToUse"), what="ready")
    sim = cluster.sim
    resources = sim.kubectl("api-resources", "--api-group", "groupsnapshot.storage.k8s.io").stdout
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    assert rows["volumegroupsnapshots"][1:4] == [
        "vgs", "groupsnapshot.storage.k8s.io/v1", "true"]
    assert rows["volumegroupsnapshotclasses"][1:4] == [
        "vgsclass,vgsclasses", "groupsnapshot.storage.k8s.io/v1", "false"]
    assert rows["volumegroupsnapshotcontents"][1:4] == [
        "vgsc,vgscs", "groupsnapshot.storage.k8s.io/v1", "false"]

    table = sim.kubectl("get", "vgs", "-n", ns).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "READYTOUSE", "VOLUMEGROUPSNAPSHOTCLASS", "VOLUMEGROUPSNAPSHOTCONTENT",
        "CREATIONTIME", "AGE"]
    assert table[1].split()[:4] == [
        "g", "true", "fast-groupsnapclass", group_status(cluster, ns, "g")[
            "boundVolumeGroupSnapshotContentName"]]
    same = sim.kubectl("get", "volumegroupsnapshots", "-n", ns, "g", "-o", "json").stdout
    assert json.loads(same)["apiVersion"] == "groupsnapshot.storage.k8s.io/v1"
    classes = sim.kubectl("get", "vgsclass", "fast-groupsnapclass").stdout.splitlines()
    assert classes[0].split() == ["NAME", "DRIVER", "DELETIONPOLICY", "AGE"]
    assert classes[1].split()[:3] == ["fast-groupsnapclass", "fast.csi.vmsnap.io", "Delete"]
    contents = sim.kubectl("get", "vgsc").stdout
    assert f" {ns} " in contents and "fast.csi.vmsnap.io" in contents
    # Upstream stores the objects as v1beta2 and serves v1 as the preferred version.
    crd = json.loads(sim.kubectl(
        "get", "crd", "volumegroupsnapshots.groupsnapshot.storage.k8s.io", "-o", "json").stdout)
    assert crd["status"]["storedVersions"] == ["v1beta2"]
    groups = json.loads(sim.kubectl("get", "--raw", "/apis/groupsnapshot.storage.k8s.io").stdout)
    assert groups["preferredVersion"]["version"] == "v1"
