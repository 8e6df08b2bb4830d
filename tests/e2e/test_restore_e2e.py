"""RestoreVirtualMachine end to end: dev server, simulator (snapshot seed) and a worker process.

Each test snapshots its own VM first through the snapshot workflow, then restores.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from activities.restore import PVC_WAIT_PROGRESS_SECONDS
from contracts.common import CANCELED
from contracts.restore import RestoreProgress, RestoreVirtualMachineResult
from contracts.snapshot import SnapshotVirtualMachineResult
from rules.naming import restore_workflow_id, snapshot_workflow_id
from starter.local_stack import REPO_ROOT, DevServerProcess
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"
TEMPORAL = REPO_ROOT / ".venv" / "bin" / "temporal"


@pytest.fixture(scope="module")
def restore_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


def kube_json(stack: Stack, *args: str) -> Any:
    return json.loads(stack.sim.kubectl("get", "-n", NS, "-o", "json", *args).stdout)


def vm(stack: Stack, name: str) -> dict[str, Any]:
    return dict(kube_json(stack, "virtualmachines", name))


def claims(vm_obj: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in vm_obj["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v}


def restored_pvcs(stack: Stack, restore: str) -> list[dict[str, Any]]:
    return list(kube_json(stack, "pvc", "-l", f"vmsnap.io/restore={restore}")["items"])


async def take_snapshot(stack: Stack, vm_name: str) -> str:
    name = f"{vm_name}-{uuid.uuid4().hex[:6]}"
    result = await stack.client.execute_workflow(
        "SnapshotVirtualMachine", {"namespace": NS, "vm": vm_name, "name": name},
        id=snapshot_workflow_id(stack.cluster_id, NS, name), task_queue=stack.task_queue,
        result_type=SnapshotVirtualMachineResult)
    assert result.phase == "Succeeded" and result.ready_to_use
    return name


async def restore(stack: Stack, snapshot: str, **fields: Any) -> RestoreVirtualMachineResult:
    target = fields.get("target") or fields.pop("_vm")
    return await stack.client.execute_workflow(
        "RestoreVirtualMachine", {"namespace": NS, "snapshot": snapshot, **fields},
        id=restore_workflow_id(stack.cluster_id, NS, target), task_queue=stack.task_queue,
        result_type=RestoreVirtualMachineResult)


async def restore_failure(stack: Stack, snapshot: str, **fields: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await restore(stack, snapshot, **fields)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


def set_memory(stack: Stack, name: str, memory: str) -> None:
    patch = {"spec": {"template": {"spec": {"domain": {"resources": {
        "requests": {"memory": memory}}}}}}}
    stack.sim.kubectl("patch", "-n", NS, "virtualmachine", name, "--type", "merge",
                      "-p", json.dumps(patch))


def memory(vm_obj: dict[str, Any]) -> str:
    return str(vm_obj["spec"]["template"]["spec"]["domain"]["resources"]["requests"]["memory"])


async def test_restore_in_place_of_a_stopped_vm_from_the_temporal_cli(
    restore_stack: Stack, dev_server: DevServerProcess, client: Client
) -> None:
    snapshot = await take_snapshot(restore_stack, "stopped")
    before = vm(restore_stack, "stopped")
    old_pvc = kube_json(restore_stack, "pvc", "stopped-root")
    set_memory(restore_stack, "stopped", "128Mi")

    workflow_id = restore_workflow_id(restore_stack.cluster_id, NS, "stopped")
    started = subprocess.run(
        [str(TEMPORAL), "workflow", "start", "--address", dev_server.address,
         "--namespace", dev_server.namespace, "--type", "RestoreVirtualMachine",
         "--task-queue", restore_stack.task_queue, "--workflow-id", workflow_id,
         "--input", json.dumps({"namespace": NS, "snapshot": snapshot})],
        capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    result = await client.get_workflow_handle(
        workflow_id, result_type=RestoreVirtualMachineResult).result()
    assert result.phase == "Succeeded" and result.target == "stopped"
    assert not result.stopped_vm and not result.created_vm

    after = vm(restore_stack, "stopped")
    assert memory(after) == memory(before) == "64Mi"  # the spec is the snapshot's again
    assert after["spec"]["runStrategy"] == "Halted"
    [pvc] = restored_pvcs(restore_stack, result.name)
    assert claims(after) == {"root": pvc["metadata"]["name"]}
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io",
                                         "kind": "VolumeSnapshot", "name": f"{snapshot}-root"}
    assert pvc["spec"]["dataSourceRef"] == pvc["spec"]["dataSource"]
    assert pvc["spec"]["storageClassName"] == old_pvc["spec"]["storageClassName"]
    assert pvc["metadata"]["annotations"]["vmsnap.io/workflow-id"] == workflow_id  # sweeper
    # the old PVC is untouched, the lock released, the snapshot no longer in use
    assert kube_json(restore_stack, "pvc", "stopped-root")["metadata"]["uid"] == (
        old_pvc["metadata"]["uid"])
    assert "vmsnap.io/lock" not in (after["metadata"].get("annotations") or {})
    users = kube_json(restore_stack, "vmsnapsnapshots.vmsnap.io", snapshot)
    assert "vmsnap.io/users" not in (users["metadata"].get("annotations") or {}) or not (
        json.loads(users["metadata"]["annotations"]["vmsnap.io/users"]))
    # the record, as kubectl shows it
    shown = restore_stack.sim.kubectl("get", "vmsnaprestore", "-n", NS, result.name).stdout
    header, row = shown.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "SNAPSHOT", "TARGET", "PHASE"]
    assert row.split()[:4] == [result.name, snapshot, "stopped", "Succeeded"]
    # an Event on the VM, as KubeVirt records its own restores
    events = json.loads(restore_stack.sim.kubectl(
        "get", "events", "-n", NS, "--field-selector", "involvedObject.name=stopped",
        "-o", "json").stdout)["items"]
    assert [e["type"] for e in events if e["reason"] == "RestoreSucceeded"] == ["Normal"]

    # a second restore from the same snapshot makes its own PVCs
    second = await restore(restore_stack, snapshot, _vm="stopped")
    assert second.phase == "Succeeded" and second.name != result.name
    assert second.volumes[0].pvc_name != result.volumes[0].pvc_name
    assert claims(vm(restore_stack, "stopped")) == {"root": second.volumes[0].pvc_name}
    assert [p["status"]["phase"] for p in restored_pvcs(restore_stack, result.name)] == [
        "Bound"]  # the first restore's PVC is kept: a restore deletes no PVC it did not fail


async def test_a_running_vm_is_refused_or_stopped_and_restarted(restore_stack: Stack) -> None:
    snapshot = await take_snapshot(restore_stack, "eight")
    before = vm(restore_stack, "eight")
    refused = await restore_failure(restore_stack, snapshot, _vm="eight")
    assert refused.type == "VmRunning"
    after = vm(restore_stack, "eight")
    assert claims(after) == claims(before)
    assert not kube_json(restore_stack, "pvc", "-l", "vmsnap.io/restore")["items"] or all(
        not p["metadata"]["labels"]["vmsnap.io/restore"].startswith("eight-")
        for p in kube_json(restore_stack, "pvc", "-l", "vmsnap.io/restore")["items"])
    assert "vmsnap.io/lock" not in (after["metadata"].get("annotations") or {})

    result = await restore(restore_stack, snapshot, _vm="eight", running_vm_policy="stop")
    assert result.phase == "Succeeded" and result.stopped_vm and result.restarted_vm
    restored = vm(restore_stack, "eight")
    assert restored["spec"]["runStrategy"] == before["spec"]["runStrategy"]
    assert sorted(claims(restored).values()) == sorted(v.pvc_name for v in result.volumes)
    assert len(result.volumes) == 8


async def test_missing_or_failed_snapshot_refused(restore_stack: Stack) -> None:
    missing = await restore_failure(restore_stack, "no-such-snapshot", _vm="stopped")
    assert missing.type == "SnapshotNotFound"
    failed_snapshot = "nodisk-failed"
    with pytest.raises(WorkflowFailureError):
        await restore_stack.client.execute_workflow(
            "SnapshotVirtualMachine", {"namespace": NS, "vm": "nodisk", "name": failed_snapshot},
            id=snapshot_workflow_id(restore_stack.cluster_id, NS, failed_snapshot),
            task_queue=restore_stack.task_queue,
            result_type=SnapshotVirtualMachineResult)
    refused = await restore_failure(restore_stack, failed_snapshot, _vm="nodisk")
    assert refused.type == "SnapshotNotReady" and "phase Failed" in refused.message


async def test_restore_to_a_new_vm(restore_stack: Stack) -> None:
    snapshot = await take_snapshot(restore_stack, "twice")
    result = await restore(restore_stack, snapshot, target="twice-copy")
    assert result.phase == "Succeeded" and result.created_vm
    copy_vm = vm(restore_stack, "twice-copy")
    assert copy_vm["spec"]["runStrategy"] == "Halted"
    assert sorted(claims(copy_vm).values()) == sorted(v.pvc_name for v in result.volumes)
    assert claims(vm(restore_stack, "twice")) != claims(copy_vm)
    again = await restore_failure(restore_stack, snapshot, target="twice-copy")
    assert again.type == "TargetExists"


async def test_a_pvc_that_never_binds_leaves_nothing_behind(restore_stack: Stack) -> None:
    """gc runs: stopped for the restore, its spec put back and started again on failure."""
    snapshot = await take_snapshot(restore_stack, "gc")
    before = vm(restore_stack, "gc")
    restore_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                              "sim.vmsnap.io/bind-latency=1h", "--overwrite")
    try:
        failure = await restore_failure(restore_stack, snapshot, _vm="gc", bound_wait=1.5,
                                        running_vm_policy="stop")
    finally:
        restore_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                                  "sim.vmsnap.io/bind-latency-")
    assert failure.type == "RestoredPvcNotBound", failure
    details = RestoreVirtualMachineResult.model_validate(failure.details[0])
    assert details.phase == "Failed" and not details.cleanup_errors and details.stopped_vm
    assert details.volumes and all(
        p["metadata"].get("deletionTimestamp") for p in restored_pvcs(restore_stack, details.name))
    after = vm(restore_stack, "gc")
    assert after["spec"] == before["spec"]
    assert "vmsnap.io/lock" not in (after["metadata"].get("annotations") or {})
    assert kube_json(restore_stack, "vmi", "gc")["status"]["phase"] in ("Scheduling", "Running")
    record = kube_json(restore_stack, "vmsnaprestores.vmsnap.io", details.name)
    assert record["status"]["phase"] == "Failed"
    assert "not Bound" in record["status"]["error"]["message"]


async def test_a_restore_while_a_snapshot_of_the_vm_runs_is_refused(
    restore_stack: Stack
) -> None:
    """The running snapshot holds the VM's lock (its VolumeSnapshot create is held by a
    simulator fault): the restore is refused with VmLocked and changes nothing, and the
    snapshot still completes."""
    earlier = await take_snapshot(restore_stack, "agentless")
    before = vm(restore_stack, "agentless")
    hold = {"verb": "create", "group": "snapshot.storage.k8s.io",
            "resource": "volumesnapshots", "namespace": NS, "latency": "4s", "count": 1}
    restore_stack.sim.set_faults({"rules": [hold]})
    try:
        running = f"agentless-{uuid.uuid4().hex[:6]}"
        snapshot = await restore_stack.client.start_workflow(
            "SnapshotVirtualMachine", {"namespace": NS, "vm": "agentless", "name": running},
            id=snapshot_workflow_id(restore_stack.cluster_id, NS, running),
            task_queue=restore_stack.task_queue,
            result_type=SnapshotVirtualMachineResult)
        deadline = asyncio.get_running_loop().time() + 60
        while not restore_stack.sim.request("GET", "/sim/faults")["rules"][0]["fired"]:
            assert asyncio.get_running_loop().time() < deadline, "the snapshot never cut"
            await asyncio.sleep(0.05)
        refused = await restore_failure(restore_stack, earlier, _vm="agentless",
                                        running_vm_policy="stop")
        assert (await snapshot.describe()).status == WorkflowExecutionStatus.RUNNING
        taken = await snapshot.result()
    finally:
        restore_stack.sim.clear_faults()
    assert refused.type == "VmLocked", refused
    details = RestoreVirtualMachineResult.model_validate(refused.details[0])
    assert not details.stopped_vm and not details.cleanup_errors
    assert restored_pvcs(restore_stack, details.name) == []
    assert taken.phase == "Succeeded" and taken.ready_to_use
    after = vm(restore_stack, "agentless")
    assert after["spec"] == before["spec"]
    assert "vmsnap.io/lock" not in (after["metadata"].get("annotations") or {})
    assert kube_json(restore_stack, "vmi", "agentless")["status"]["phase"] == "Running"


async def test_a_cancelled_restore_leaves_the_vm_as_it_was(restore_stack: Stack) -> None:
    """Cancelled while its PVCs wait to bind: the PVCs go, the spec is the old one, the VM
    runs again, the lock and the snapshot registration are released, the record Failed."""
    snapshot = await take_snapshot(restore_stack, "faulty")
    before = vm(restore_stack, "faulty")
    restore_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                              "sim.vmsnap.io/bind-latency=1h", "--overwrite")
    try:
        handle = await restore_stack.client.start_workflow(
            "RestoreVirtualMachine",
            {"namespace": NS, "snapshot": snapshot, "running_vm_policy": "stop",
             "bound_wait": 120},
            id=restore_workflow_id(restore_stack.cluster_id, NS, "faulty"),
            task_queue=restore_stack.task_queue,
            result_type=RestoreVirtualMachineResult)
        deadline = asyncio.get_running_loop().time() + 60
        progress = await handle.query("progress", result_type=RestoreProgress)
        while progress.step != "wait for PVCs":
            assert asyncio.get_running_loop().time() < deadline, "never waited for PVCs"
            await asyncio.sleep(0.1)
            progress = await handle.query("progress", result_type=RestoreProgress)
        cancelled_at = time.monotonic()
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        # The wait heartbeats every PVC_WAIT_PROGRESS_SECONDS, so the cancel gets through
        # at once; the rest is the compensation's own steps.
        assert time.monotonic() - cancelled_at < PVC_WAIT_PROGRESS_SECONDS + 3
    finally:
        restore_stack.sim.kubectl("annotate", "volumesnapshotclass", "csi-snap",
                                  "sim.vmsnap.io/bind-latency-")
    assert isinstance(caught.value.cause, CancelledError), caught.value.cause  # Canceled
    details = (await handle.query("progress", result_type=RestoreProgress)).result
    assert details.phase == "Failed" and details.error_type == CANCELED, details
    assert details.stopped_vm and not details.cleanup_errors and details.volumes
    assert all(p["metadata"].get("deletionTimestamp")
               for p in restored_pvcs(restore_stack, details.name))
    after = vm(restore_stack, "faulty")
    assert after["spec"] == before["spec"]
    assert "vmsnap.io/lock" not in (after["metadata"].get("annotations") or {})
    assert kube_json(restore_stack, "vmi", "faulty")["status"]["phase"] in (
        "Scheduling", "Running")
    users = kube_json(restore_stack, "vmsnapsnapshots.vmsnap.io", snapshot)
    assert not json.loads((users["metadata"].get("annotations") or {}).get(
        "vmsnap.io/users", "[]"))
    record = kube_json(restore_stack, "vmsnaprestores.vmsnap.io", details.name)
    assert record["status"]["phase"] == "Failed"
