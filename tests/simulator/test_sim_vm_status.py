"""KubeVirt's VM status rules as the simulator applies them, on plain objects."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.controllers.vm_status import (
    RunStrategyError,
    VolumeReadiness,
    merge_conditions,
    printable_status,
    run_strategy,
    snapshot_class_for,
    volume_readiness,
    volume_snapshot_statuses,
)

READY = VolumeReadiness((), ())


def vm(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "vm"}, "spec": spec}


def vmi(phase: str, *conditions: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "vm"}
    if deleting:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase, "conditions": list(conditions)}}


def test_run_strategy_from_the_spec() -> None:
    assert run_strategy(vm(runStrategy="Manual")) == "Manual"
    assert run_strategy(vm(running=True)) == "Always"
    assert run_strategy(vm(running=False)) == "Halted"
    assert run_strategy(vm()) == "Halted"
    with pytest.raises(RunStrategyError, match="mutually exclusive"):
        run_strategy(vm(running=True, runStrategy="Always"))
    with pytest.raises(RunStrategyError, match="unknown run strategy"):
        run_strategy(vm(runStrategy="Sometimes"))


@pytest.mark.parametrize(
    ("the_vmi", "strategy", "readiness", "wants", "expected"),
    [
        (None, "Halted", READY, False, "Stopped"),
        (None, "Always", READY, True, "Starting"),
        (vmi("Pending"), "Always", READY, True, "Starting"),
        (vmi("Pending"), "Always", VolumeReadiness(("a",), ()), True, "ErrorPvcNotFound"),
        (vmi("Pending"), "Always", VolumeReadiness((), ("a",)), True, "WaitingForVolumeBinding"),
        (vmi("Running"), "Always", READY, True, "Running"),
        (vmi("Running", {"type": "Paused", "status": "True"}), "Always", READY, True, "Paused"),
        (vmi("Running"), "Halted", READY, False, "Stopping"),
        (vmi("Running", deleting=True), "Always", READY, True, "Stopping"),
        (vmi("Succeeded"), "Halted", READY, False, "Stopped"),
    ],
)
def test_printable_status(
    the_vmi: dict[str, Any] | None,
    strategy: str,
    readiness: VolumeReadiness,
    wants: bool,
    expected: str,
) -> None:
    assert printable_status(vm(), the_vmi, strategy, readiness, wants) == expected


def test_a_deleting_vm_is_terminating() -> None:
    deleting = vm()
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert printable_status(deleting, vmi("Running"), "Always", READY, True) == "Terminating"


def test_volume_readiness_sorts_missing_and_unbound_claims() -> None:
    spec = {
        "volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "bound"}},
            {"name": "b", "dataVolume": {"name": "pending"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "gone"}},
            {"name": "d", "containerDisk": {"image": "x"}},
        ]
    }
    claims = {
        "bound": {"metadata": {}, "status": {"phase": "Bound"}},
        "pending": {"metadata": {}, "status": {"phase": "Pending"}},
    }
    readiness = volume_readiness(spec, claims.get)
    assert readiness == VolumeReadiness(("gone",), ("pending",))
    assert not readiness.ready


def _class(name: str, driver: str, default: bool = False) -> dict[str, Any]:
    notes = {"snapshot.storage.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "annotations": notes}, "driver": driver}


def test_snapshot_class_choice_as_kubevirt_makes_it() -> None:
    storage_class = {"metadata": {"name": "sc"}, "provisioner": "d"}
    assert snapshot_class_for(storage_class, []) == (None, None)
    assert snapshot_class_for(storage_class, [_class("one", "d")]) == ("one", None)
    assert snapshot_class_for(storage_class, [_class("a", "d"), _class("b", "d", True)]) == (
        "b",
        None,
    )
    assert snapshot_class_for(storage_class, [_class("a", "d"), _class("b", "d")]) == (
        None,
        "2 matching VolumeSnapshotClasses for sc",
    )


def test_volume_snapshot_statuses_give_kubevirts_reasons() -> None:
    the_vm = vm(
        template={
            "spec": {
                "volumes": [
                    {"name": "root", "persistentVolumeClaim": {"claimName": "root"}},
                    {"name": "local", "persistentVolumeClaim": {"claimName": "local"}},
                    {"name": "dv", "dataVolume": {"name": "missing"}},
                    {"name": "cloudinit", "cloudInitNoCloud": {"userData": ""}},
                ]
            }
        }
    )
    claims = {
        "root": {"spec": {"storageClassName": "csi"}},
        "local": {"spec": {"storageClassName": "local-path"}},
    }
    classes = {
        "csi": {"metadata": {"name": "csi"}, "provisioner": "d"},
        "local-path": {"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"},
    }
    statuses = volume_snapshot_statuses(the_vm, claims.get, classes.get, [_class("snap", "d")])
    assert statuses == [
        {"name": "root", "enabled": True},
        {
            "name": "local",
            "enabled": False,
            "reason": "No VolumeSnapshotClass: Volume snapshots are not configured for this "
            "StorageClass [local-path] [local]",
        },
        {"name": "dv", "enabled": False, "reason": 'datavolume "missing" not found'},
        {
            "name": "cloudinit",
            "enabled": False,
            "reason": "Snapshot is not supported for this volumeSource type [cloudinit]",
        },
    ]


def test_merge_conditions_keeps_transition_times_while_the_status_holds() -> None:
    before = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "t0", "lastProbeTime": None}
    ]
    same = merge_conditions(before, [{"type": "Ready", "status": "True"}], "t1")
    assert same[0]["lastTransitionTime"] == "t0"
    flipped = merge_conditions(before, [{"type": "Ready", "status": "False"}], "t1")
    assert flipped[0]["lastTransitionTime"] == "t1"
    fixed = merge_conditions(
        before, [{"type": "X", "status": "True", "lastTransitionTime": None}], "t1"
    )
    assert fixed == [
        {"type": "X", "status": "True", "lastTransitionTime": None, "lastProbeTime": None}
    ]
