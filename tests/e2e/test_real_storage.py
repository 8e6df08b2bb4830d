"""Restores and clones on storage as real clusters have it: WaitForFirstConsumer and
Immediate classes, DataVolume templates and plain PVCs, disks a snapshot leaves out,
VMs owned by a pool (through the Temporal CLI, as a user starts them, against the
simulator).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.client import Cluster
from contracts.restore import RestoreVirtualMachineInput
from starter.sdk import AlreadyRunning, VmsnapClient
from tests.e2e.conftest import Stack, StartStack
from tests.e2e.test_whole_vm import execute_from_the_cli, kubectl_json

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "storage_seeds" / "storage.yaml"
NS = "storage"
POPULATED_FOR = "cdi.kubevirt.io/storage.populatedFor"


@pytest.fixture(scope="module")
def storage_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


def eventually(what: str, check: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def vmi_phase(stack: Stack, vm: str) -> str | None:
    vmi = stack.sim.kubectl("get", "vmi", "-n", NS, vm, "-o", "json", check=False)
    if vmi.returncode:
        return None
    phase: str | None = (json.loads(vmi.stdout).get("status") or {}).get("phase")
    return phase


def running(stack: Stack, vm: str) -> None:
    eventually(f"VM {vm} never ran", lambda: vmi_phase(stack, vm) == "Running")


def claims(stack: Stack, vm: str) -> dict[str, str]:
    """Volume name -> the PVC (or DataVolume) the VM's spec names."""
    spec = kubectl_json(stack, "get", "vm", "-n", NS, vm)["spec"]["template"]["spec"]
    found: dict[str, str] = {}
    for volume in spec.get("volumes") or []:
        source = volume.get("persistentVolumeClaim") or volume.get("dataVolume")
        if source:
            found[volume["name"]] = source.get("claimName") or source["name"]
    return found


def pvc(stack: Stack, name: str) -> dict[str, Any]:
    return kubectl_json(stack, "get", "pvc", "-n", NS, name)


def snapshot(stack: Stack, vm: str, name: str) -> dict[str, Any]:
    result = execute_from_the_cli(stack, "SnapshotVirtualMachine", f"snapshot/{NS}/{name}",
                                  {"namespace": NS, "vm": vm, "name": name})["result"]
    assert result["phase"] == "Succeeded", result
    return result


def restore(stack: Stack, document: dict[str, Any], ok: bool = True) -> dict[str, Any]:
    target = document.get("target") or document["snapshot"].rsplit("-", 1)[0]
    return execute_from_the_cli(stack, "RestoreVirtualMachine", f"restore/{NS}/{target}",
                                {"namespace": NS, **document}, ok=ok)


def clone(stack: Stack, document: dict[str, Any], ok: bool = True) -> dict[str, Any]:
    return execute_from_the_cli(stack, "CloneVirtualMachine",
                                f"clone/{NS}/{document['target']}",
                                {"namespace": NS, **document}, ok=ok)


def starts_on_its_restored_disks(stack: Stack, vm: str, restored: dict[str, Any]) -> None:
    """The VM runs, its spec names the restored claims, and each one is Bound."""
    running(stack, vm)
    named = claims(stack, vm)
    for volume in restored["volumes"]:
        assert named[volume["volume_name"]] == volume["pvc_name"]
        eventually(f"{volume['pvc_name']} never bound", lambda name=volume["pvc_name"]: (
            pvc(stack, name).get("status") or {}).get("phase") == "Bound")


@pytest.mark.parametrize("vm", ["dv-imm", "dv-wffc", "pvc-imm", "pvc-wffc"])
def test_restore_and_clone_on_each_kind_of_storage(storage_stack: Stack, vm: str) -> None:
    running(storage_stack, vm)
    taken = snapshot(storage_stack, vm, f"{vm}-snap")
    assert "PartialSnapshot" not in taken["indications"]

    from_snapshot = clone(storage_stack, {"source_snapshot": f"{vm}-snap",
                                          "target": f"{vm}-twin", "run_strategy": "Always"})
    assert from_snapshot["result"]["phase"] == "Succeeded"
    starts_on_its_restored_disks(storage_stack, f"{vm}-twin", from_snapshot["result"])

    from_vm = clone(storage_stack, {"source_vm": vm, "target": f"{vm}-copy"})["result"]
    assert from_vm["phase"] == "Succeeded"
    # Halted: a WaitForFirstConsumer disk waits for the VM's first start, and that is ready.
    for volume in from_vm["volumes"]:
        assert pvc(storage_stack, volume["pvc_name"])["status"]["phase"] in {"Bound", "Pending"}
    # A PVC waiting for the first start needs the temporary snapshot (a provisioner
    # refuses a VolumeSnapshot being deleted): its deletion waits for the start.
    waiting = from_vm["temporary_snapshot_kept_until_bound"]
    assert bool(waiting) == vm.endswith("-wffc")
    assert [v["pvc_name"] for v in from_vm["volumes"]] == (waiting or [
        v["pvc_name"] for v in from_vm["volumes"]])
    temporary = from_vm["snapshot"]
    if waiting:
        time.sleep(1)
        assert storage_stack.sim.kubectl("get", "vmsnap", "-n", NS, temporary,
                                         check=False).returncode == 0
    storage_stack.sim.kubectl("patch", "vm", "-n", NS, f"{vm}-copy", "--type", "merge",
                              "-p", '{"spec": {"runStrategy": "Always"}}')
    starts_on_its_restored_disks(storage_stack, f"{vm}-copy", from_vm)
    eventually("the temporary snapshot outlived its use", lambda: storage_stack.sim.kubectl(
        "get", "vmsnap", "-n", NS, temporary, check=False).returncode != 0, seconds=60)

    to_new = restore(storage_stack, {"snapshot": f"{vm}-snap", "target": f"{vm}-new"})
    assert to_new["result"]["created_vm"]
    storage_stack.sim.kubectl("patch", "vm", "-n", NS, f"{vm}-new", "--type", "merge",
                              "-p", '{"spec": {"runStrategy": "Always"}}')
    starts_on_its_restored_disks(storage_stack, f"{vm}-new", to_new["result"])

    before = claims(storage_stack, vm)
    in_place = restore(storage_stack, {"snapshot": f"{vm}-snap", "running_vm_policy": "stop"})
    result = in_place["result"]
    assert result["phase"] == "Succeeded" and result["stopped_vm"] and result["restarted_vm"]
    starts_on_its_restored_disks(storage_stack, vm, result)
    assert claims(storage_stack, vm) != before
    if vm.startswith("dv-"):
        vm_spec = kubectl_json(storage_stack, "get", "vm", "-n", NS, vm)["spec"]
        [template] = vm_spec["dataVolumeTemplates"]
        [restored] = result["volumes"]
        assert template["metadata"]["name"] == restored["pvc_name"]
        annotations = pvc(storage_stack, restored["pvc_name"])["metadata"]["annotations"]
        assert annotations[POPULATED_FOR] == restored["pvc_name"]
        # CDI adopts the restored claim: the DataVolume succeeds without importing again.
        eventually("the DataVolume never adopted its claim", lambda: (kubectl_json(
            storage_stack, "get", "datavolumes", "-n", NS, restored["pvc_name"]).get(
            "status") or {}).get("phase") == "Succeeded")


def test_a_disk_the_snapshot_left_out_is_refused_or_dropped(storage_stack: Stack) -> None:
    running(storage_stack, "partial")
    taken = snapshot(storage_stack, "partial", "partial-snap")
    assert "PartialSnapshot" in taken["indications"]

    for refused in (clone(storage_stack, {"source_snapshot": "partial-snap",
                                          "target": "partial-twin"}, ok=False),
                    restore(storage_stack, {"snapshot": "partial-snap",
                                            "target": "partial-new"}, ok=False)):
        assert "VolumesNotInSnapshot" in json.dumps(refused) and "scratch" in json.dumps(refused)
    for absent in ("partial-twin", "partial-new"):
        assert storage_stack.sim.kubectl("get", "vm", "-n", NS, absent,
                                         check=False).returncode
    assert not kubectl_json(storage_stack, "get", "pvc", "-n", NS, "-l",
                            "vmsnap.io/restore")["items"] or all(
        not p["metadata"]["name"].startswith(("partial-twin", "partial-new"))
        for p in kubectl_json(storage_stack, "get", "pvc", "-n", NS)["items"])

    dropped = clone(storage_stack, {"source_snapshot": "partial-snap", "target": "partial-twin",
                                    "missing_volumes": "drop"})["result"]
    assert dropped["phase"] == "Succeeded"
    assert set(claims(storage_stack, "partial-twin")) == {"root"}
    twin_spec = kubectl_json(storage_stack, "get", "vm", "-n", NS, "partial-twin")["spec"]
    assert [d["name"] for d in twin_spec["template"]["spec"]["domain"]["devices"][
        "disks"]] == ["root"]
    new = restore(storage_stack, {"snapshot": "partial-snap", "target": "partial-new",
                                  "missing_volumes": "drop"})["result"]
    assert new["dropped_volumes"] == ["scratch"]

    in_place = restore(storage_stack, {"snapshot": "partial-snap",
                                       "running_vm_policy": "stop"})["result"]
    assert in_place["kept_volumes"] == ["scratch"]
    assert claims(storage_stack, "partial")["scratch"] == "partial-scratch"


def test_a_pooled_vm_keeps_its_owner_and_finalizers(storage_stack: Stack) -> None:
    running(storage_stack, "pooled")
    pool_uid = kubectl_json(storage_stack, "get", "vm", "-n", NS, "pool")["metadata"]["uid"]
    owner = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "pool",
             "uid": pool_uid, "controller": True, "blockOwnerDeletion": True}
    storage_stack.sim.kubectl("patch", "vm", "-n", NS, "pooled", "--type", "merge", "-p",
                              json.dumps({"metadata": {"ownerReferences": [owner],
                                                       "finalizers": ["pool.test/keep"],
                                                       "labels": {"pool": "member"}}}))
    snapshot(storage_stack, "pooled", "pooled-snap")
    result = restore(storage_stack, {"snapshot": "pooled-snap",
                                     "running_vm_policy": "stop"})["result"]
    assert result["phase"] == "Succeeded"
    metadata = kubectl_json(storage_stack, "get", "vm", "-n", NS, "pooled")["metadata"]
    assert [(o["name"], o["uid"]) for o in metadata["ownerReferences"]] == [("pool", pool_uid)]
    assert "pool.test/keep" in metadata["finalizers"]
    assert metadata["labels"]["pool"] == "member"
    running(storage_stack, "pooled")


async def test_a_second_restore_asking_for_another_snapshot_is_refused(
    storage_stack: Stack,
) -> None:
    await asyncio.to_thread(snapshot, storage_stack, "pooled", "pooled-a")
    await asyncio.to_thread(snapshot, storage_stack, "pooled", "pooled-b")
    await asyncio.to_thread(running, storage_stack, "pooled")
    cluster = Cluster.from_environment(str(storage_stack.sim.kubeconfig))
    async with VmsnapClient(storage_stack.client, cluster=cluster,
                            task_queue=storage_stack.task_queue) as sdk:
        first = await sdk.start_restore(RestoreVirtualMachineInput(
            namespace=NS, snapshot="pooled-a", running_vm_policy="stop"))
        with pytest.raises(AlreadyRunning, match="snapshot='pooled-a'"):
            await sdk.start_restore(RestoreVirtualMachineInput(
                namespace=NS, snapshot="pooled-b", running_vm_policy="stop"))
        same = await sdk.start_restore(RestoreVirtualMachineInput(
            namespace=NS, snapshot="pooled-a", running_vm_policy="stop"))
        assert same.workflow_id == first.workflow_id
        assert (await first.result()).snapshot == "pooled-a"
    cluster.close()
