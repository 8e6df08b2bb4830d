"""VMs and VMIs: run strategies, start/stop/restart, status, pause."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    KUBEVIRT,
    Cluster,
    behaviour_cluster,
    condition,
    pvc_body,
    vm_body,
    wait_for,
)

VMS = "virtualmachines"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-vms")


def vm_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return (cluster.vm(ns, name) or {}).get("status") or {}


def running_vmi(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (v := cluster.vmi(ns, name)) and (v.get("status") or {}).get("phase") == "Running" and v
        ),
        what=f"VMI {name} Running",
    )


def printable(cluster: Cluster, ns: str, name: str, wanted: str) -> None:
    wait_for(lambda: vm_status(cluster, ns, name).get("printableStatus") == wanted, what=wanted)


def vm_with_disk(cluster: Cluster, ns: str, name: str = "vm", **options: Any) -> dict[str, Any]:
    cluster.create_pvc(ns, pvc_body(f"{name}-root"))
    return cluster.create(KUBEVIRT, VMS, ns, vm_body(name, [f"{name}-root"], **options))


def test_always_runs_a_vmi_built_from_the_template(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm = vm_with_disk(cluster, ns)
    vmi = running_vmi(cluster, ns, "vm")
    owner = vmi["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "VirtualMachine" and owner["uid"] == vm["metadata"]["uid"]
    assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
    assert vmi["metadata"]["labels"]["test"] == "behaviour"
    assert vmi["metadata"]["labels"]["kubevirt.io/nodeName"] == vmi["status"]["nodeName"]
    assert vmi["spec"]["volumes"] == vm["spec"]["template"]["spec"]["volumes"]
    assert vmi["spec"]["domain"]["firmware"]["uuid"]
    assert vmi["spec"]["networks"] == [{"name": "default", "pod": {}}]
    assert "kubevirt.io/virtualMachineControllerFinalize" in vmi["metadata"]["finalizers"]
    status = vmi["status"]
    assert [p["phase"] for p in status["phaseTransitionTimestamps"]] == [
        "Pending",
        "Scheduled",
        "Running",
    ]
    assert (condition(vmi, "Ready") or {}).get("status") == "True"
    assert condition(vmi, "AgentConnected") is not None  # no annotation: the agent is there
    assert condition(vmi, "Paused") is None
    assert status["interfaces"][0]["name"] == "default" and status["interfaces"][0]["ipAddress"]
    targets = {v["name"]: v["target"] for v in status["volumeStatus"]}
    assert targets == {"disk0": "vda", "cloudinit": "vdb"}
    assert status["volumeStatus"][0]["persistentVolumeClaimInfo"]["claimName"] == "vm-root"
    assert "fsFreezeStatus" not in status

    printable(cluster, ns, "vm", "Running")
    vm_now = vm_status(cluster, ns, "vm")
    assert vm_now["ready"] is True and vm_now["created"] is True
    assert vm_now["runStrategy"] == "Always"
    assert vm_now["desiredGeneration"] == vm_now["observedGeneration"] == 1
    assert vmi["metadata"]["annotations"]["kubevirt.io/vm-generation"] == "1"
    assert (condition(cluster.vm(ns, "vm"), "Ready") or {}).get("status") == "True"
    assert {s["name"]: s["enabled"] for s in vm_now["volumeSnapshotStatuses"]} == {
        "disk0": True,
        "cloudinit": False,
    }


def test_stop_and_start_follow_virt_api(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns)
    running_vmi(cluster, ns, "vm")
    assert cluster.vm_action(ns, "vm", "start") == (
        409,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'Operation cannot be fulfilled on virtualmachine.kubevirt.io "vm": '
            "VM is already running",
            "reason": "Conflict",
            "code": 409,
            "details": {"name": "vm", "group": "kubevirt.io", "kind": "virtualmachine"},
        },
    )
    status, _ = cluster.vm_action(ns, "vm", "stop")
    assert status in (200, 202)
    assert (cluster.vm(ns, "vm") or {})["spec"]["runStrategy"] == "Halted"
    wait_for(lambda: cluster.vmi(ns, "vm") is None, what="VMI gone")
    printable(cluster, ns, "vm", "Stopped")
    assert "ready" not in vm_status(cluster, ns, "vm")
    status, body = cluster.vm_action(ns, "vm", "stop")
    assert status == 409 and body["message"].endswith(": VM is not running")

    status, _ = cluster.vm_action(ns, "vm", "start")
    assert status in (200, 202)
    assert (cluster.vm(ns, "vm") or {})["spec"]["runStrategy"] == "Always"
    running_vmi(cluster, ns, "vm")
    printable(cluster, ns, "vm", "Running")


def test_legacy_running_field_is_honoured_and_kept(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns, run_strategy=None, running=True)
    running_vmi(cluster, ns, "vm")
    assert cluster.vm_action(ns, "vm", "stop")[0] in (200, 202)
    spec = (cluster.vm(ns, "vm") or {})["spec"]
    assert spec["running"] is False and "runStrategy" not in spec
    wait_for(lambda: cluster.vmi(ns, "vm") is None, what="VMI gone")


def test_manual_strategy_starts_and_stops_through_state_change_requests(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns, run_strategy="Manual")
    printable(cluster, ns, "vm", "Stopped")
    assert cluster.vmi(ns, "vm") is None
    assert cluster.vm_action(ns, "vm", "start")[0] in (200, 202)
    running_vmi(cluster, ns, "vm")
    assert (cluster.vm(ns, "vm") or {})["spec"]["runStrategy"] == "Manual"
    wait_for(lambda: "stateChangeRequests" not in vm_status(cluster, ns, "vm"))
    assert cluster.vm_action(ns, "vm", "stop")[0] in (200, 202)
    wait_for(lambda: cluster.vmi(ns, "vm") is None, what="VMI gone")
    status, body = cluster.vm_action(ns, "vm", "stop")
    assert status == 409 and body["message"].endswith("VM is not running")


def test_restart_replaces_the_vmi(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns)
    first = running_vmi(cluster, ns, "vm")["metadata"]["uid"]
    assert cluster.vm_action(ns, "vm", "restart")[0] in (200, 202)
    second = wait_for(
        lambda: (
            (v := cluster.vmi(ns, "vm"))
            and v["metadata"]["uid"] != first
            and (v.get("status") or {}).get("phase") == "Running"
            and v
        ),
        what="a new running VMI",
    )
    assert second["metadata"]["uid"] != first


def test_a_missing_pvc_keeps_the_vmi_pending_until_it_exists(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create(KUBEVIRT, VMS, ns, vm_body("vm", ["later"]))
    synchronized = wait_for(lambda: condition(cluster.vmi(ns, "vm"), "Synchronized"))
    assert synchronized["reason"] == "FailedPvcNotFound"
    assert synchronized["message"] == f"PVC {ns}/later does not exist, waiting for it to appear"
    printable(cluster, ns, "vm", "ErrorPvcNotFound")
    assert (cluster.vmi(ns, "vm") or {})["status"]["phase"] == "Pending"
    cluster.create_pvc(ns, pvc_body("later"))
    vmi = running_vmi(cluster, ns, "vm")
    assert condition(vmi, "Synchronized") is None


def test_paused_annotation_and_the_pause_subresources(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns, annotations={"sim.vmsnap.io/paused": "true"})
    vmi = running_vmi(cluster, ns, "vm")
    assert (condition(vmi, "Paused") or {}).get("status") == "True"
    printable(cluster, ns, "vm", "Paused")
    status, body = cluster.vmi_action(ns, "vm", "pause")
    assert status == 409 and body["message"].endswith("VMI is already paused")
    assert cluster.vmi_action(ns, "vm", "unpause")[0] == 200
    assert condition(cluster.vmi(ns, "vm"), "Paused") is None
    printable(cluster, ns, "vm", "Running")
    status, body = cluster.vmi_action(ns, "vm", "unpause")
    assert status == 409 and body["message"].endswith("VMI is not paused")
    assert cluster.vmi_action(ns, "vm", "pause")[0] == 200
    printable(cluster, ns, "vm", "Paused")


def test_guest_agent_annotation_drives_agent_connected(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns, annotations={"sim.vmsnap.io/guest-agent": "absent"})
    vmi = running_vmi(cluster, ns, "vm")
    assert condition(vmi, "AgentConnected") is None
    assert "interfaceName" not in vmi["status"]["interfaces"][0]
    cluster.patch(
        KUBEVIRT,
        VMS,
        ns,
        "vm",
        {"metadata": {"annotations": {"sim.vmsnap.io/guest-agent": "connected"}}},
    )
    wait_for(lambda: condition(cluster.vmi(ns, "vm"), "AgentConnected"), what="AgentConnected")
    wait_for(lambda: condition(cluster.vm(ns, "vm"), "AgentConnected"), what="synced to the VM")


def test_deleting_the_vm_removes_its_vmi(cluster: Cluster) -> None:
    ns = cluster.namespace()
    vm_with_disk(cluster, ns)
    running_vmi(cluster, ns, "vm")
    cluster.delete(KUBEVIRT, VMS, ns, "vm")
    wait_for(lambda: cluster.vmi(ns, "vm") is None, what="VMI gone")


def test_subresources_of_unknown_objects_are_404(cluster: Cluster) -> None:
    ns = cluster.namespace()
    status, body = cluster.vm_action(ns, "ghost", "start")
    assert status == 404 and body["message"] == 'virtualmachine.kubevirt.io "ghost" not found'
    status, body = cluster.vmi_action(ns, "ghost", "freeze", {"unfreezeTimeout": "1m"})
    assert (
        status == 404 and body["message"] == 'virtualmachineinstance.kubevirt.io "ghost" not found'
    )
