"""VM state, freeze/unfreeze, start/stop and updates against the simulator."""

from __future__ import annotations

import time

import pytest

from cluster.client import Cluster
from cluster.errors import AlreadyExists, Conflict, Invalid, NotFound
from rules.models import VmState
from tests.cluster.conftest import NS
from tests.support.sim import Sim


def running(cluster: Cluster, name: str) -> VmState:
    return cluster.wait_for_vm(NS, name, lambda s: s.running, timeout_seconds=10)


def test_state_of_a_running_vm_with_its_agent(cluster: Cluster) -> None:
    state = running(cluster, "freezer")
    assert (state.namespace, state.name, state.run_strategy) == (NS, "freezer", "Always")
    assert state.vmi_exists and state.agent_connected and not state.paused
    assert state.uid and state.resource_version
    assert state.fs_freeze_status is None


def test_state_without_agent_and_paused(cluster: Cluster) -> None:
    absent = running(cluster, "agent-absent")
    assert not absent.agent_connected
    paused = cluster.wait_for_vm(NS, "paused", lambda s: s.paused, timeout_seconds=10)
    assert paused.vmi_exists and paused.paused


def test_state_of_a_stopped_vm(cluster: Cluster) -> None:
    state = cluster.vm_state(NS, "ephemeral")
    assert state.run_strategy == "Halted"
    assert not state.vmi_exists and not state.running and not state.agent_connected
    assert cluster.get_vmi(NS, "ephemeral") is None
    with pytest.raises(NotFound):
        cluster.vm_state(NS, "no-such-vm")


def test_freeze_and_unfreeze(cluster: Cluster, sim: Sim) -> None:
    running(cluster, "freezer")
    cluster.freeze(NS, "freezer", unfreeze_timeout_seconds=300)
    assert cluster.vm_state(NS, "freezer").fs_freeze_status == "frozen"
    cluster.freeze(NS, "freezer", unfreeze_timeout_seconds=300)  # idempotent
    cluster.unfreeze(NS, "freezer")
    assert cluster.vm_state(NS, "freezer").fs_freeze_status is None
    cluster.unfreeze(NS, "freezer")  # idempotent
    freezes = [e for e in sim.freeze_log() if e.get("vmi") == "freezer"]
    assert len(freezes) == 1, freezes  # the second freeze was a no-op
    assert freezes[0]["thawed_by"] == "unfreeze"


def test_a_sub_second_unfreeze_timeout_still_thaws_the_guest(cluster: Cluster,
                                                             sim: Sim) -> None:
    """KubeVirt keeps whole seconds: "300ms" would be 0, no self-thaw; the adapter sends 1s."""
    running(cluster, "self-thaw")
    started = time.monotonic()
    cluster.freeze(NS, "self-thaw", unfreeze_timeout_seconds=0.3)
    assert cluster.vm_state(NS, "self-thaw").fs_freeze_status == "frozen"
    thawed = cluster.wait_for_vm(NS, "self-thaw", lambda s: s.fs_freeze_status is None,
                                 timeout_seconds=5)
    assert thawed.fs_freeze_status is None
    assert 0.9 <= time.monotonic() - started < 3
    (entry,) = [e for e in sim.freeze_log() if e.get("vmi") == "self-thaw"]
    assert entry["thawed_by"] == "timeout"


def test_a_failing_freeze_is_invalid_with_the_server_message(cluster: Cluster) -> None:
    running(cluster, "freeze-fails")
    with pytest.raises(Invalid) as raised:
        cluster.freeze(NS, "freeze-fails", unfreeze_timeout_seconds=60)
    assert raised.value.status == 400
    assert "freeze" in raised.value.message.lower()
    assert cluster.vm_state(NS, "freeze-fails").fs_freeze_status is None


def test_freezing_a_vm_without_instance_is_refused(cluster: Cluster) -> None:
    with pytest.raises((NotFound, Conflict)):
        cluster.freeze(NS, "ephemeral", unfreeze_timeout_seconds=60)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True])
def test_a_freeze_without_self_thaw_is_never_sent(cluster: Cluster, sim: Sim,
                                                  bad: float) -> None:
    before = len(sim.requests_log())
    with pytest.raises(ValueError, match="unfreeze_timeout_seconds"):
        cluster.freeze(NS, "freezer", unfreeze_timeout_seconds=bad)
    assert len(sim.requests_log()) == before + 0


def test_stop_and_start_are_idempotent(cluster: Cluster) -> None:
    assert cluster.vm_state(NS, "switch").run_strategy == "Halted"
    assert cluster.stop_vm(NS, "switch") is False
    assert cluster.start_vm(NS, "switch") is True
    started = running(cluster, "switch")
    assert started.run_strategy == "Always"
    assert cluster.start_vm(NS, "switch") is False
    assert cluster.stop_vm(NS, "switch") is True
    stopped = cluster.wait_for_vm(NS, "switch", lambda s: not s.vmi_exists, timeout_seconds=10)
    assert stopped.run_strategy == "Halted"
    assert cluster.stop_vm(NS, "switch") is False


def test_start_of_a_missing_vm_is_not_found(cluster: Cluster) -> None:
    with pytest.raises(NotFound):
        cluster.start_vm(NS, "no-such-vm")


def test_wait_for_vm_times_out(cluster: Cluster) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="VirtualMachine adapter/ephemeral"):
        cluster.wait_for_vm(NS, "ephemeral", lambda s: s.running, timeout_seconds=0.3)
    assert time.monotonic() - started < 2


def test_merge_patch_with_and_without_resource_version(cluster: Cluster) -> None:
    vm = cluster.get_vm(NS, "editable")
    version = vm["metadata"]["resourceVersion"]
    patched = cluster.patch_vm(NS, "editable", {"metadata": {"labels": {"tier": "gold"}}},
                               resource_version=version)
    assert patched["metadata"]["labels"] == {"app": "editable", "tier": "gold"}
    assert patched["metadata"]["resourceVersion"] != version
    with pytest.raises(Conflict):
        cluster.patch_vm(NS, "editable", {"metadata": {"labels": {"tier": "silver"}}},
                         resource_version=version)
    assert cluster.get_vm(NS, "editable")["metadata"]["labels"]["tier"] == "gold"
    unconditional = cluster.patch_vm(NS, "editable", {"metadata": {"labels": {"tier": None}}})
    assert unconditional["metadata"]["labels"] == {"app": "editable"}


def test_json_patch_with_resource_version(cluster: Cluster) -> None:
    vm = cluster.get_vm(NS, "editable")
    version = vm["metadata"]["resourceVersion"]
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {"note": "json"}}]
    patched = cluster.patch_vm(NS, "editable", ops, patch_type="json", resource_version=version)
    assert patched["metadata"]["annotations"] == {"note": "json"}
    with pytest.raises(Conflict):
        cluster.patch_vm(NS, "editable", ops, patch_type="json", resource_version=version)
    with pytest.raises(ValueError, match="list of operations"):
        cluster.patch_vm(NS, "editable", {"a": 1}, patch_type="json")


def test_replace_needs_the_current_resource_version(cluster: Cluster) -> None:
    vm = cluster.get_vm(NS, "editable")
    stale = vm["metadata"]["resourceVersion"]
    vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "256Mi"
    replaced = cluster.replace_vm(NS, "editable", vm)
    assert replaced["spec"]["template"]["spec"]["domain"]["memory"]["guest"] == "256Mi"
    vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "512Mi"
    with pytest.raises(Conflict):
        cluster.replace_vm(NS, "editable", vm, resource_version=stale)
    assert cluster.get_vm(NS, "editable")["spec"]["template"]["spec"]["domain"]["memory"][
        "guest"] == "256Mi"
    del vm["metadata"]["resourceVersion"]
    with pytest.raises(ValueError, match="resourceVersion"):
        cluster.replace_vm(NS, "editable", vm)
    with pytest.raises(ValueError, match="not 'editable'"):
        cluster.replace_vm(NS, "editable", {"metadata": {"name": "other"}}, resource_version="1")


def test_create_and_delete_a_vm(cluster: Cluster) -> None:
    source = cluster.get_vm(NS, "ephemeral")
    body = {"metadata": {"name": "ephemeral-copy", "labels": {"copy": "yes"}},
            "spec": source["spec"]}
    created = cluster.create_vm(NS, body)
    assert created["metadata"]["uid"] != source["metadata"]["uid"]
    with pytest.raises(AlreadyExists):
        cluster.create_vm(NS, body)
    with pytest.raises(ValueError, match="namespace 'elsewhere'"):
        cluster.create_vm(NS, {**body, "metadata": {"name": "x", "namespace": "elsewhere"}})
    assert cluster.delete_vm(NS, "ephemeral-copy") is True
    assert cluster.delete_vm(NS, "no-such-vm") is False
