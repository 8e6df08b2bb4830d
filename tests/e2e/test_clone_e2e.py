"""CloneVirtualMachine end to end: dev server, simulator (snapshot seed) and a worker process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from contracts.clone import CloneProgress, CloneVirtualMachineResult
from contracts.common import CANCELED
from contracts.snapshot import SnapshotVirtualMachineResult
from rules.naming import clone_workflow_id, snapshot_workflow_id
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"


@pytest.fixture(scope="module")
def clone_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


def kube_json(stack: Stack, *args: str) -> Any:
    return json.loads(stack.sim.kubectl("get", "-n", NS, "-o", "json", *args).stdout)


def vm(stack: Stack, name: str) -> dict[str, Any]:
    return dict(kube_json(stack, "virtualmachines", name))


def vm_missing(stack: Stack, name: str) -> bool:
    return not stack.sim.kubectl("get", "-n", NS, "virtualmachine", name, "--ignore-not-found",
                                 "-o", "name").stdout.strip()


def claims(vm_obj: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in vm_obj["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v}


def live_pvcs(stack: Stack, clone: str) -> list[dict[str, Any]]:
    return [p for p in kube_json(stack, "pvc", "-l", f"vmsnap.io/clone={clone}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def domain(vm_obj: dict[str, Any]) -> dict[str, Any]:
    return dict(vm_obj["spec"]["template"]["spec"]["domain"])


async def take_snapshot(stack: Stack, vm_name: str) -> str:
    name = f"{vm_name}-{uuid.uuid4().hex[:6]}"
    result = await stack.client.execute_workflow(
        "SnapshotVirtualMachine", {"namespace": NS, "vm": vm_name, "name": name},
        id=snapshot_workflow_id(stack.cluster_id, NS, name), task_queue=stack.task_queue,
        result_type=SnapshotVirtualMachineResult)
    assert result.phase == "Succeeded" and result.ready_to_use
    return name


async def clone(stack: Stack, **fields: Any) -> CloneVirtualMachineResult:
    return await stack.client.execute_workflow(
        "CloneVirtualMachine", {"namespace": NS, **fields},
        id=clone_workflow_id(stack.cluster_id, NS, fields["target"]), task_queue=stack.task_queue,
        result_type=CloneVirtualMachineResult)


async def clone_failure(stack: Stack, **fields: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await clone(stack, **fields)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def test_clone_from_a_snapshot_with_new_identity_filters_and_patches(
    clone_stack: Stack
) -> None:
    snapshot = await take_snapshot(clone_stack, "stopped")
    source = vm(clone_stack, "stopped")
    result = await clone(
        clone_stack, source_snapshot=snapshot, target="stopped-clone",
        new_smbios_serial="serial-2", annotation_filters=["!sim.vmsnap.io/*"],
        patches=[json.dumps({"op": "add", "path": "/metadata/labels/tier", "value": "gold"})])
    assert result.phase == "Succeeded" and not result.temporary_snapshot
    made = vm(clone_stack, "stopped-clone")
    assert made["spec"]["runStrategy"] == "Halted"
    assert domain(made)["firmware"] == {"serial": "serial-2"}
    assert domain(made)["devices"] == domain(source)["devices"]  # same hardware
    assert made["metadata"]["labels"]["tier"] == "gold"
    assert made["metadata"]["labels"]["vmsnap.io/clone"] == result.name
    assert not any(k.startswith("sim.vmsnap.io/")
                   for k in (made["metadata"].get("annotations") or {}))
    [pvc] = live_pvcs(clone_stack, result.name)
    assert claims(made) == {"root": pvc["metadata"]["name"]}
    assert pvc["status"]["phase"] == "Bound"
    assert claims(vm(clone_stack, "stopped")) == {"root": "stopped-root"}
    record = kube_json(clone_stack, "vmsnapclones.vmsnap.io", result.name)
    assert record["status"]["phase"] == "Succeeded"
    shown = clone_stack.sim.kubectl("get", "vmsnapclone", "-n", NS, result.name).stdout
    assert "Succeeded" in shown and "stopped-clone" in shown

    # a clone of the clone, from the VM, through a temporary snapshot
    second = await clone(clone_stack, source_vm="stopped-clone", target="stopped-clone-2")
    assert second.phase == "Succeeded" and second.temporary_snapshot
    assert second.temporary_snapshot_deleted
    assert not clone_stack.sim.kubectl(
        "get", "-n", NS, "vmsnapsnapshots.vmsnap.io", "--ignore-not-found", "-o",
        "name", second.snapshot or "").stdout.strip()
    again = vm(clone_stack, "stopped-clone-2")
    assert "serial" not in domain(again).get("firmware", {})
    assert claims(again)["root"] != claims(made)["root"]

    refused = await clone_failure(clone_stack, source_snapshot=snapshot, target="stopped-clone")
    assert refused.type == "TargetExists"


async def test_a_patch_outside_the_allowed_paths_is_refused(clone_stack: Stack) -> None:
    refused = await clone_failure(
        clone_stack, source_vm="stopped", target="bad-patch",
        patches=[json.dumps({"op": "replace", "path": "/metadata/name", "value": "x"})])
    assert refused.type == "PatchNotAllowed" and "/metadata/name" in refused.message
    assert vm_missing(clone_stack, "bad-patch")


async def test_a_running_vm_is_cloned_through_a_temporary_snapshot(clone_stack: Stack) -> None:
    result = await clone(clone_stack, source_vm="twice", target="twice-clone",
                         run_strategy="Always")
    assert result.phase == "Succeeded" and result.temporary_snapshot_deleted
    made = vm(clone_stack, "twice-clone")
    assert made["spec"]["runStrategy"] == "Always"
    assert sorted(claims(made).values()) == sorted(v.pvc_name for v in result.volumes)


async def test_a_source_vm_with_a_disk_that_cannot_be_snapshotted_is_refused(
    clone_stack: Stack
) -> None:
    refused = await clone_failure(clone_stack, source_vm="hotplug", target="hotplug-clone")
    assert refused.type == "SourceNotEligible" and "scratch" in refused.message
    assert vm_missing(clone_stack, "hotplug-clone")


async def test_a_failing_vm_step_removes_the_pvcs_and_the_temporary_snapshot(
    clone_stack: Stack
) -> None:
    """The VM step fails (a MAC for an interface the VM lacks): the saga undoes the rest."""
    failure = await clone_failure(clone_stack, source_vm="stopped", target="no-eth",
                                  new_mac_addresses={"eth9": "02:00:00:00:00:09"})
    assert failure.type == "InvalidCloneSpec" and "eth9" in failure.message
    details = CloneVirtualMachineResult.model_validate(failure.details[0])
    assert details.volumes and live_pvcs(clone_stack, details.name) == []
    assert details.temporary_snapshot_deleted and not details.cleanup_errors
    assert vm_missing(clone_stack, "no-eth")


async def test_a_clone_whose_pvc_never_binds_leaves_nothing_behind(clone_stack: Stack) -> None:
    clone_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                            "sim.vmsnap.io/bind-latency=1h", "--overwrite")
    try:
        failure = await clone_failure(clone_stack, source_vm="gc", target="gc-clone",
                                      bound_wait=1.5)
    finally:
        clone_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                                "sim.vmsnap.io/bind-latency-")
    assert failure.type == "RestoredPvcNotBound", failure
    details = CloneVirtualMachineResult.model_validate(failure.details[0])
    assert details.phase == "Failed" and not details.cleanup_errors
    assert details.volumes and live_pvcs(clone_stack, details.name) == []
    assert details.temporary_snapshot_deleted
    assert vm_missing(clone_stack, "gc-clone")
    assert details.snapshot and not clone_stack.sim.kubectl(
        "get", "-n", NS, "vmsnapsnapshots.vmsnap.io", "--ignore-not-found", "-o",
        "name", details.snapshot).stdout.strip()
    record = kube_json(clone_stack, "vmsnapclones.vmsnap.io", details.name)
    assert record["status"]["phase"] == "Failed"


async def test_a_clone_of_a_clone(clone_stack: Stack) -> None:
    """The first clone is a VM like any other: cloning it copies its disks again, under new
    names and a new identity, and leaves the first clone as it was."""
    first = await clone(clone_stack, source_vm="agentless", target="agentless-c1")
    made = vm(clone_stack, "agentless-c1")
    second = await clone(clone_stack, source_vm="agentless-c1", target="agentless-c2")
    assert first.phase == second.phase == "Succeeded" and second.temporary_snapshot_deleted
    again = vm(clone_stack, "agentless-c2")
    assert sorted(claims(again).values()) == sorted(v.pvc_name for v in second.volumes)
    assert set(claims(again).values()).isdisjoint(claims(made).values())
    assert claims(vm(clone_stack, "agentless-c1")) == claims(made)
    serial = domain(made).get("firmware", {}).get("serial")
    assert serial is None or domain(again).get("firmware", {}).get("serial") != serial
    assert [p["status"]["phase"] for p in live_pvcs(clone_stack, second.name)] == (
        ["Bound"] * len(second.volumes))


async def test_a_cancelled_clone_leaves_nothing_behind(clone_stack: Stack) -> None:
    """Cancelled while its PVCs wait to bind: the saga deletes them and the temporary
    snapshot, makes no VM, and marks the record Failed."""
    clone_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                            "sim.vmsnap.io/bind-latency=1h", "--overwrite")
    try:
        handle = await clone_stack.client.start_workflow(
            "CloneVirtualMachine",
            {"namespace": NS, "source_vm": "faulty", "target": "faulty-clone",
             "bound_wait": 120},
            id=clone_workflow_id(clone_stack.cluster_id, NS, "faulty-clone"),
            task_queue=clone_stack.task_queue,
            result_type=CloneVirtualMachineResult)
        deadline = asyncio.get_running_loop().time() + 60
        progress = await handle.query("progress", result_type=CloneProgress)
        while not (progress.step == "restore PVCs"
                   and live_pvcs(clone_stack, progress.result.name)):
            assert asyncio.get_running_loop().time() < deadline, "no PVC was ever made"
            await asyncio.sleep(0.1)
            progress = await handle.query("progress", result_type=CloneProgress)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    finally:
        clone_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                                "sim.vmsnap.io/bind-latency-")
    assert isinstance(caught.value.cause, CancelledError), caught.value.cause  # Canceled
    outcome = (await handle.query("progress", result_type=CloneProgress)).result
    assert outcome.phase == "Failed" and outcome.error_type == CANCELED, outcome
    assert not outcome.cleanup_errors
    name = progress.result.name
    assert live_pvcs(clone_stack, name) == [] and vm_missing(clone_stack, "faulty-clone")
    assert progress.result.snapshot and not clone_stack.sim.kubectl(
        "get", "-n", NS, "vmsnapsnapshots.vmsnap.io", "--ignore-not-found", "-o",
        "name", progress.result.snapshot).stdout.strip()
    record = kube_json(clone_stack, "vmsnapclones.vmsnap.io", name)
    assert record["status"]["phase"] == "Failed"
    assert "vmsnap.io/lock" not in (vm(clone_stack, "faulty")["metadata"].get(
        "annotations") or {})
