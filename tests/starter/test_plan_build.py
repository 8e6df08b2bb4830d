"""`starter.plan.build_plan`: the dry run's answer from a VM's state and its volumes,
with the same rules as the workflow (real `select_volumes` on API-shaped objects)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cluster.lock import LockHolder
from cluster.vms import vm_state_from
from rules.volumes import select_volumes
from starter.plan import build_plan

CSI = {"metadata": {"name": "csi"}, "provisioner": "hostpath.csi.k8s.io"}
LOCAL = {"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}
SNAPCLASS = {"metadata": {"name": "csi-snap"}, "driver": "hostpath.csi.k8s.io"}


def vm(volumes: list[dict[str, Any]], run_strategy: str = "Always") -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "demo", "uid": "u1"},
            "spec": {"runStrategy": run_strategy,
                     "template": {"spec": {"volumes": volumes}}},
            "status": {"printableStatus": "Running" if run_strategy == "Always" else "Stopped"}}


def vmi(*conditions: tuple[str, str], phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "demo"},
            "status": {"phase": phase,
                       "conditions": [{"type": t, "status": s} for t, s in conditions]}}


def pvc(name: str, storage_class: str = "csi") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "demo"},
            "spec": {"storageClassName": storage_class}, "status": {"phase": "Bound"}}


VOLUMES = [
    {"name": "root", "persistentVolumeClaim": {"claimName": "web-1-root"}},
    {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config"}},
    {"name": "scratch", "persistentVolumeClaim": {"claimName": "web-1-scratch"}},
    {"name": "data", "dataVolume": {"name": "web-1-data", "hotpluggable": True}},
]
PVCS = {"web-1-root": pvc("web-1-root"), "web-1-scratch": pvc("web-1-scratch", "local-path"),
        "web-1-data": pvc("web-1-data")}
CLASSES = {"csi": CSI, "local-path": LOCAL}


def plan_for(vm_obj: dict[str, Any], vmi_obj: dict[str, Any] | None, quiesce: Any = "auto",
             lock: LockHolder | None = None) -> Any:
    state = vm_state_from(vm_obj, vmi_obj)
    selection = select_volumes(vm_obj, PVCS, CLASSES, [SNAPCLASS])
    order = [v["name"] for v in vm_obj["spec"]["template"]["spec"]["volumes"]]
    return build_plan(state, selection, quiesce, lock, order)


def test_running_vm_with_agent_is_frozen_and_disks_are_in_spec_order() -> None:
    plan = plan_for(vm(VOLUMES), vmi(("AgentConnected", "True"), ("Ready", "True")))
    assert plan.state == "Running" and plan.guest_agent is True
    assert plan.will_freeze and plan.consistency == "application"
    assert [d.volume_name for d in plan.disks] == ["root", "cloudinit", "scratch", "data"]
    included = {d.volume_name: d for d in plan.disks if d.included}
    assert set(included) == {"root", "data"}
    assert included["root"].snapshot_class == "csi-snap"
    assert included["data"].hotpluggable
    excluded = {d.volume_name: d.reason for d in plan.disks if not d.included}
    assert "no VolumeSnapshotClass" in (excluded["scratch"] or "")
    assert "not backed by a PVC" in (excluded["cloudinit"] or "")
    assert plan.indications == ["Online", "GuestAgent", "PartialSnapshot"]
    assert plan.possible and plan.problems == [] and plan.warnings == []


def test_running_vm_without_agent_is_crash_consistent() -> None:
    plan = plan_for(vm(VOLUMES[:1]), vmi(("Ready", "True")))
    assert plan.guest_agent is False and not plan.will_freeze
    assert plan.indications == ["Online", "NoGuestAgent"]
    assert plan.consistency == "crash" and plan.possible
    assert any("crash-consistent" in w for w in plan.warnings)


def test_paused_vm_is_never_frozen() -> None:
    plan = plan_for(vm(VOLUMES[:1]), vmi(("AgentConnected", "True"), ("Paused", "True")))
    assert plan.state == "Paused" and not plan.will_freeze
    assert plan.indications == ["Online", "GuestAgent", "Paused"]


def test_stopped_vm_has_no_indications_and_needs_no_freeze() -> None:
    plan = plan_for(vm(VOLUMES[:1], run_strategy="Halted"), None)
    assert plan.state == "Stopped" and plan.guest_agent is None
    assert plan.indications == [] and not plan.will_freeze
    assert plan.consistency == "application" and plan.possible


def test_no_eligible_disk_is_not_possible() -> None:
    plan = plan_for(vm([VOLUMES[1], VOLUMES[2]]), vmi(("AgentConnected", "True")))
    assert not plan.possible
    assert plan.problems[0].startswith("no eligible disk")


def test_quiesce_required_without_agent_is_not_possible() -> None:
    plan = plan_for(vm(VOLUMES[:1]), vmi(), quiesce="required")
    assert not plan.possible
    assert plan.problems == ["quiesce is required but the guest cannot be frozen: "
                             "no guest agent is connected"]


def test_quiesce_skip_says_so() -> None:
    plan = plan_for(vm(VOLUMES[:1]), vmi(("AgentConnected", "True")), quiesce="skip")
    assert not plan.will_freeze and "QuiesceSkipped" in plan.indications


def test_a_held_lock_is_a_warning_not_a_refusal() -> None:
    holder = LockHolder(workflow_id="snapshot/demo/x", run_id="r", operation="snapshot",
                        since=datetime(2026, 11, 26, tzinfo=UTC))
    plan = plan_for(vm(VOLUMES[:1]), vmi(("AgentConnected", "True")), lock=holder)
    assert plan.possible and plan.lock == holder
    assert "locked by snapshot workflow snapshot/demo/x" in plan.warnings[0]
