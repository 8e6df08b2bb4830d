"""A VM's ControllerRevisions: instance types and preferences, the spec a VMI started from,
and RestartRequired when the template moves away from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    KUBEVIRT,
    Cluster,
    behaviour_cluster,
    condition,
    vm_body,
    wait_for,
)

INSTANCETYPES = ("instancetype.kubevirt.io", "v1beta1")
RESTART = "a non-live-updatable field was changed in the template spec"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-vm-revisions")


def apps(cluster: Cluster) -> Any:
    return client.AppsV1Api(cluster.api)


def revision(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    try:
        found = apps(cluster).read_namespaced_controller_revision(name, ns)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    answer: dict[str, Any] = cluster.api.sanitize_for_serialization(found)
    return answer


def typed_vm(name: str, **matchers: Any) -> dict[str, Any]:
    body = vm_body(name, run_strategy=matchers.pop("run_strategy", "Always"))
    body["spec"]["template"]["spec"]["domain"].pop("memory")
    body["spec"].update(matchers)
    return body


def running(cluster: Cluster, ns: str, name: str, other_than: str = "") -> dict[str, Any]:
    return wait_for(
        lambda: (v := cluster.vmi(ns, name)) and v["status"].get("phase") == "Running"
        and v["metadata"]["uid"] != other_than and v,
        what=f"VMI {name} Running",
    )


def instancetypes(cluster: Cluster, ns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    small = cluster.create(
        INSTANCETYPES, "virtualmachineinstancetypes", ns,
        {"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineInstancetype",
         "metadata": {"name": "small", "labels": {"size": "s"}},
         "spec": {"cpu": {"guest": 2}, "memory": {"guest": "1Gi"}}},
    )
    linux = cluster.create(
        INSTANCETYPES, "virtualmachinepreferences", ns,
        {"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachinePreference",
         "metadata": {"name": "linux"}, "spec": {"cpu": {"preferredCPUTopology": "cores"}}},
    )
    return small, linux


def test_instance_types_are_stored_in_revisions_the_vm_records(cluster: Cluster) -> None:
    ns = cluster.namespace()
    small, linux = instancetypes(cluster, ns)
    vm = cluster.create(KUBEVIRT, "virtualmachines", ns, typed_vm(
        "vm",
        instancetype={"name": "small", "kind": "VirtualMachineInstancetype"},
        preference={"name": "linux", "kind": "VirtualMachinePreference"},
    ))
    uid = vm["metadata"]["uid"]
    name = f"vm-small-v1beta1-{small['metadata']['uid']}-1"
    status = wait_for(lambda: ((cluster.vm(ns, "vm") or {}).get("status") or {}).get(
        "preferenceRef") and (cluster.vm(ns, "vm") or {})["status"])
    assert status["instancetypeRef"] == {
        "name": "small", "kind": "VirtualMachineInstancetype",
        "controllerRevisionRef": {"name": name},
    }
    assert status["preferenceRef"]["controllerRevisionRef"] == {
        "name": f"vm-linux-v1beta1-{linux['metadata']['uid']}-1"
    }
    stored = revision(cluster, ns, name) or {}
    assert stored["metadata"]["labels"] == {
        "instancetype.kubevirt.io/object-generation": "1",
        "instancetype.kubevirt.io/object-kind": "VirtualMachineInstancetype",
        "instancetype.kubevirt.io/object-name": "small",
        "instancetype.kubevirt.io/object-uid": small["metadata"]["uid"],
        "instancetype.kubevirt.io/object-version": "v1beta1",
    }
    owner = stored["metadata"]["ownerReferences"][0]
    assert owner["uid"] == uid and owner["controller"] is True
    data = stored["data"]
    assert data["apiVersion"] == "instancetype.kubevirt.io/v1beta1"
    assert data["kind"] == "VirtualMachineInstancetype"
    assert data["spec"] == small["spec"] and "labels" not in data["metadata"]

    vmi = running(cluster, ns, "vm")
    assert vmi["metadata"]["annotations"]["kubevirt.io/instancetype-name"] == "small"
    assert vmi["metadata"]["annotations"]["kubevirt.io/preference-name"] == "linux"
    assert vmi["spec"]["domain"]["cpu"] == {"cores": 2, "sockets": 1, "threads": 1}
    assert vmi["spec"]["domain"]["memory"] == {"guest": "1Gi"}
    # The spec the VMI started from, with the revisions it used.
    started = f"revision-start-vm-{uid}-1"
    assert vmi["status"]["virtualMachineRevisionName"] == started
    start = revision(cluster, ns, started) or {}
    assert start["revision"] == 1
    assert start["data"]["spec"]["instancetype"]["revisionName"] == name
    assert start["metadata"]["ownerReferences"][0]["uid"] == uid


def test_cluster_instance_types_are_the_default_kind(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(
        INSTANCETYPES, "virtualmachineclusterinstancetypes", None,
        {"apiVersion": "instancetype.kubevirt.io/v1beta1",
         "kind": "VirtualMachineClusterInstancetype", "metadata": {"name": f"u1-{ns}"},
         "spec": {"cpu": {"guest": 4}, "memory": {"guest": "2Gi"}}},
    )
    try:
        cluster.create(KUBEVIRT, "virtualmachines", ns, typed_vm(
            "vm", instancetype={"name": f"u1-{ns}"}))
        vmi = running(cluster, ns, "vm")
        assert vmi["metadata"]["annotations"]["kubevirt.io/cluster-instancetype-name"] == (
            f"u1-{ns}"
        )
        assert vmi["spec"]["domain"]["cpu"] == {"cores": 1, "sockets": 4, "threads": 1}
        ref = (cluster.vm(ns, "vm") or {})["status"]["instancetypeRef"]
        assert ref["name"] == f"u1-{ns}" and "kind" not in ref
    finally:
        cluster.delete(INSTANCETYPES, "virtualmachineclusterinstancetypes", None, f"u1-{ns}")


def test_a_vm_whose_revision_is_gone_does_not_start(cluster: Cluster) -> None:
    ns = cluster.namespace()
    small, _ = instancetypes(cluster, ns)
    cluster.create(KUBEVIRT, "virtualmachines", ns, typed_vm(
        "vm", run_strategy="Halted",
        instancetype={"name": "small", "kind": "VirtualMachineInstancetype"}))
    name = f"vm-small-v1beta1-{small['metadata']['uid']}-1"
    wait_for(lambda: revision(cluster, ns, name), what="the revision")
    apps(cluster).delete_namespaced_controller_revision(name, ns)
    assert cluster.vm_action(ns, "vm", "start")[0] in (200, 202)
    failure = wait_for(lambda: condition(cluster.vm(ns, "vm"), "Failure"), what="Failure")
    assert failure["status"] == "True"
    assert failure["reason"] == "FailedFindInstancetype"
    assert failure["message"] == f'controllerrevisions.apps "{name}" not found'
    assert cluster.vmi(ns, "vm") is None

    cluster.create(KUBEVIRT, "virtualmachines", ns, typed_vm(
        "named", instancetype={"name": "small", "kind": "VirtualMachineInstancetype",
                               "revisionName": "no-such-revision"}))
    failure = wait_for(lambda: condition(cluster.vm(ns, "named"), "Failure"), what="Failure")
    assert failure["message"] == 'controllerrevisions.apps "no-such-revision" not found'
    cluster.create(KUBEVIRT, "virtualmachines", ns, typed_vm(
        "missing", preference={"name": "nope"}))
    failure = wait_for(lambda: condition(cluster.vm(ns, "missing"), "Failure"), what="Failure")
    assert failure["reason"] == "FailedFindPreference"
    assert failure["message"] == (
        'virtualmachineclusterpreferences.instancetype.kubevirt.io "nope" not found'
    )
    assert cluster.vmi(ns, "named") is None and cluster.vmi(ns, "missing") is None


def test_a_template_change_that_needs_a_restart_is_reported(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("vm"))
    first = running(cluster, ns, "vm")
    uid = (cluster.vm(ns, "vm") or {})["metadata"]["uid"]
    # Guest memory is live-updatable (the default vmRolloutStrategy is LiveUpdate).
    cluster.patch(KUBEVIRT, "virtualmachines", ns, "vm", {"spec": {"template": {"spec": {
        "domain": {"memory": {"guest": "512Mi"}}}}}})
    wait_for(lambda: (cluster.vm(ns, "vm") or {})["status"].get("desiredGeneration") == 2)
    assert condition(cluster.vm(ns, "vm"), "RestartRequired") is None
    # Cores are not.
    cluster.patch(KUBEVIRT, "virtualmachines", ns, "vm", {"spec": {"template": {"spec": {
        "domain": {"cpu": {"cores": 2}}}}}})
    required = wait_for(lambda: condition(cluster.vm(ns, "vm"), "RestartRequired"),
                        what="RestartRequired")
    assert required["status"] == "True" and required["message"] == RESTART
    assert "reason" not in required
    vmi = cluster.vmi(ns, "vm") or {}
    assert vmi["metadata"]["uid"] == first["metadata"]["uid"]
    assert vmi["spec"] == first["spec"], "the VMI keeps the spec it started with"
    assert vmi["status"]["virtualMachineRevisionName"] == f"revision-start-vm-{uid}-1"

    assert cluster.vm_action(ns, "vm", "restart")[0] in (200, 202)
    second = running(cluster, ns, "vm", other_than=first["metadata"]["uid"])
    assert second["spec"]["domain"]["cpu"]["cores"] == 2
    assert second["status"]["virtualMachineRevisionName"] == f"revision-start-vm-{uid}-3"
    wait_for(lambda: condition(cluster.vm(ns, "vm"), "RestartRequired") is None,
             what="RestartRequired cleared")
    assert revision(cluster, ns, f"revision-start-vm-{uid}-1") is None
