"""The snapshot workflows end to end: dev server, simulator and `python worker.py` processes.

One simulator (seed `snapshot_seeds/snapshot.yaml`) and one worker serve the
module; each test uses its own VM of the seed, so tests do not see each
other's snapshots. The simulator's request and freeze logs are read through
kubectl, as any admin would.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.delete_snapshot import DeleteVirtualMachineSnapshotResult
from contracts.snapshot import SnapshotProgress, SnapshotVirtualMachineResult
from rules.naming import delete_snapshot_workflow_id, snapshot_workflow_id
from starter.local_stack import REPO_ROOT, DevServerProcess
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"
TEMPORAL = REPO_ROOT / ".venv" / "bin" / "temporal"


@pytest.fixture(scope="module")
def snap_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


# ---- helpers ------------------------------------------------------------------------------


def raw(stack: Stack, path: str) -> Any:
    """An admin endpoint of the simulator, read with kubectl (TLS and token from kubeconfig)."""
    answer = json.loads(stack.sim.kubectl("get", "--raw", path).stdout)
    return answer["items"] if isinstance(answer, dict) and "items" in answer else answer


def kube_json(stack: Stack, *args: str) -> Any:
    return json.loads(stack.sim.kubectl("get", "-n", NS, "-o", "json", *args).stdout)


def freezes(stack: Stack, vmi: str) -> list[dict[str, Any]]:
    return [e for e in raw(stack, "/sim/freeze-log") if e.get("vmi") == vmi]


def freeze_requests(stack: Stack, vmi: str) -> list[dict[str, Any]]:
    return [r for r in raw(stack, "/sim/requests")
            if r.get("subresource") in ("freeze", "unfreeze") and r.get("name") == vmi]


def volume_snapshots(stack: Stack, snapshot: str) -> list[dict[str, Any]]:
    return list(kube_json(stack, "volumesnapshots", "-l",
                          f"vmsnap.io/snapshot={snapshot}")["items"])


def record(stack: Stack, name: str) -> dict[str, Any]:
    return dict(kube_json(stack, "vmsnapsnapshots.vmsnap.io", name))


def lock_annotation(stack: Stack, vm: str) -> str | None:
    vm_obj = kube_json(stack, "virtualmachines", vm)
    return (vm_obj["metadata"].get("annotations") or {}).get("vmsnap.io/lock")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def snapshot(stack: Stack, vm: str, **fields: Any) -> SnapshotVirtualMachineResult:
    name = fields.pop("name", f"{vm}-{uuid.uuid4().hex[:6]}")
    return await stack.client.execute_workflow(
        "SnapshotVirtualMachine", {"namespace": NS, "vm": vm, "name": name, **fields},
        id=snapshot_workflow_id(stack.cluster_id, NS, name), task_queue=stack.task_queue,
        result_type=SnapshotVirtualMachineResult)


async def snapshot_failure(stack: Stack, vm: str, **fields: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await snapshot(stack, vm, **fields)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


# ---- the cases ------------------------------------------------------------------------------


async def test_a_snapshot_started_from_the_temporal_cli_succeeds(
    snap_stack: Stack, dev_server: DevServerProcess, client: Client
) -> None:
    document = {"namespace": NS, "vm": "eight", "name": "from-cli"}
    started = subprocess.run(
        [str(TEMPORAL), "workflow", "start", "--address", dev_server.address,
         "--namespace", dev_server.namespace, "--type", "SnapshotVirtualMachine",
         "--task-queue", snap_stack.task_queue, "--workflow-id", "snapshot/snap/from-cli",
         "--input", json.dumps(document)],
        capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    handle = client.get_workflow_handle("snapshot/snap/from-cli",
                                        result_type=SnapshotVirtualMachineResult)
    result = await handle.result()
    assert result.phase == "Succeeded" and result.ready_to_use
    assert result.indications == ["Online", "GuestAgent"]
    assert len(result.volume_snapshots) == 8 and result.quiesced

    # exactly one freeze and one thaw, by unfreeze, right after the last cut
    [window] = freezes(snap_stack, "eight")
    assert window["thawed_by"] == "unfreeze"
    assert [r["subresource"] for r in freeze_requests(snap_stack, "eight")] == [
        "freeze", "unfreeze"]
    cuts = [when(vs["status"]["creationTime"]) for vs in volume_snapshots(snap_stack, "from-cli")]
    thawed, frozen = when(window["thawed_at"]), when(window["frozen_at"])
    assert len(cuts) == 8 and frozen < min(cuts) and max(cuts) <= thawed
    assert (thawed - max(cuts)).total_seconds() < 0.25  # thawed right after the last cut
    assert (thawed - frozen).total_seconds() < 1.6  # one-by-one would take 8 x 200 ms

    # the record, as kubectl shows it, and what it owns
    shown = snap_stack.sim.kubectl("get", "vmsnap", "-n", NS, "from-cli").stdout
    assert "Succeeded" in shown and "true" in shown and "eight" in shown
    status = record(snap_stack, "from-cli")["status"]
    assert status["phase"] == "Succeeded" and status["readyToUse"] is True
    assert status["virtualMachineSnapshotContentName"] == "from-cli-content"
    assert 0 < status["freezeWindowMilliseconds"] < 1600
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Progressing": "False", "Ready": "True"}
    uid = record(snap_stack, "from-cli")["metadata"]["uid"]
    for vs in volume_snapshots(snap_stack, "from-cli"):
        assert vs["metadata"]["ownerReferences"][0]["uid"] == uid
    content = kube_json(snap_stack, "vmsnapcontents.vmsnap.io",
                        "from-cli-content")
    assert content["status"]["readyToUse"] is True
    assert len(content["spec"]["volumeBackups"]) == 8
    assert content["spec"]["source"]["virtualMachine"]["metadata"]["name"] == "eight"
    assert lock_annotation(snap_stack, "eight") is None


async def test_without_guest_agent_there_is_no_freeze_call(snap_stack: Stack) -> None:
    result = await snapshot(snap_stack, "agentless")
    assert result.phase == "Succeeded"
    assert result.indications == ["Online", "NoGuestAgent"] and not result.quiesced
    assert freeze_requests(snap_stack, "agentless") == []


@pytest.mark.parametrize(("vm", "indications"),
                         [("stopped", []), ("paused", ["Online", "GuestAgent", "Paused"])])
async def test_stopped_and_paused_vms_are_not_frozen(
    snap_stack: Stack, vm: str, indications: list[str]
) -> None:
    result = await snapshot(snap_stack, vm)
    assert result.phase == "Succeeded" and result.indications == indications
    assert freeze_requests(snap_stack, vm) == []


async def test_hot_plugged_disk_included_and_disk_without_snapshot_class_excluded(
    snap_stack: Stack,
) -> None:
    result = await snapshot(snap_stack, "hotplug", name="hotplug-1")
    assert sorted(v.volume_name for v in result.included_volumes) == ["hot", "root"]
    assert [v.volume_name for v in result.excluded_volumes] == ["scratch"]
    assert "has no VolumeSnapshotClass" in result.excluded_volumes[0].reason
    assert result.indications == ["Online", "GuestAgent", "PartialSnapshot"]
    status = record(snap_stack, "hotplug-1")["status"]
    assert status["snapshotVolumes"]["excludedVolumes"] == ["scratch"]
    assert "has no VolumeSnapshotClass" in status["excludedVolumeReasons"][0]["reason"]


async def test_no_eligible_disk_is_refused_before_any_freeze(snap_stack: Stack) -> None:
    error = await snapshot_failure(snap_stack, "nodisk", name="nodisk-1")
    assert error.type == "NoEligibleVolume"
    assert freeze_requests(snap_stack, "nodisk") == []
    status = record(snap_stack, "nodisk-1")["status"]
    assert status["phase"] == "Failed" and "can be snapshotted" in status["error"]["message"]
    assert lock_annotation(snap_stack, "nodisk") is None


async def test_a_failing_freeze_under_each_quiesce_mode(snap_stack: Stack) -> None:
    auto = await snapshot(snap_stack, "frozen-fails", quiesce="auto")
    assert auto.phase == "Succeeded" and "QuiesceFailed" in auto.indications
    assert not auto.quiesced
    freeze_calls = [r for r in freeze_requests(snap_stack, "frozen-fails")
                    if r["subresource"] == "freeze"]
    assert len(freeze_calls) == 3  # retried a few times before going on

    error = await snapshot_failure(snap_stack, "frozen-fails", quiesce="required",
                                   name="ff-required")
    assert error.type == "FreezeFailed"
    assert volume_snapshots(snap_stack, "ff-required") == []
    assert record(snap_stack, "ff-required")["status"]["phase"] == "Failed"

    skip = await snapshot(snap_stack, "frozen-fails", quiesce="skip")
    assert "QuiesceSkipped" in skip.indications
    calls = [r["subresource"] for r in freeze_requests(snap_stack, "frozen-fails")]
    assert calls.count("freeze") == 6  # 3 for auto, 3 for required, none for skip


async def test_a_short_deadline_thaws_cleans_up_and_keeps_a_failed_record(
    snap_stack: Stack,
) -> None:
    error = await snapshot_failure(snap_stack, "stuck", name="stuck-1", failure_deadline="3s")
    assert error.type == "SnapshotDeadlineExceeded"
    assert error.message == "snapshot deadline exceeded (3s)"
    [window] = freezes(snap_stack, "stuck")
    assert window["thawed_at"] is not None and window["unfreeze_timeout_seconds"] <= 3
    assert volume_snapshots(snap_stack, "stuck-1") == []
    status = record(snap_stack, "stuck-1")["status"]
    assert status["phase"] == "Failed"
    assert status["error"]["message"] == "snapshot deadline exceeded (3s)"
    assert next(c for c in status["conditions"] if c["type"] == "Failure")["status"] == "True"
    assert lock_annotation(snap_stack, "stuck") is None
    kubectl = snap_stack.sim.kubectl("get", "vmsnapcontent", "-n", NS, "stuck-1-content",
                                     check=False)
    assert kubectl.returncode != 0 and "NotFound" in kubectl.stderr


async def test_a_second_snapshot_of_a_busy_vm_waits_or_is_refused_and_cancel_cleans_up(
    snap_stack: Stack,
) -> None:
    client = snap_stack.client
    first = await client.start_workflow(
        "SnapshotVirtualMachine",
        {"namespace": NS, "vm": "stuck", "name": "stuck-long", "failure_deadline": "2m"},
        id=snapshot_workflow_id(snap_stack.cluster_id, NS, "stuck-long"),
        task_queue=snap_stack.task_queue)
    for _ in range(200):
        progress = await first.query("progress", result_type=SnapshotProgress)
        if progress.step == "cut" and volume_snapshots(snap_stack, "stuck-long"):
            break
        await asyncio.sleep(0.05)
    assert lock_annotation(snap_stack, "stuck") is not None
    error = await snapshot_failure(snap_stack, "stuck", name="stuck-second",
                                   fail_if_locked=True)
    assert error.type == "VmLocked"
    assert f"snapshot/{snap_stack.cluster_id}/snap/stuck-long" in error.message
    assert record(snap_stack, "stuck-second")["status"]["phase"] == "Failed"
    # Without fail_if_locked it waits, within its own deadline, and so never cuts.
    waited = await snapshot_failure(snap_stack, "stuck", name="stuck-third",
                                    failure_deadline="3s")
    assert waited.type == "SnapshotDeadlineExceeded"
    assert volume_snapshots(snap_stack, "stuck-third") == []

    await first.cancel()
    with pytest.raises(WorkflowFailureError):
        await first.result()
    assert freezes(snap_stack, "stuck")[-1]["thawed_by"] == "unfreeze"
    assert volume_snapshots(snap_stack, "stuck-long") == []
    assert record(snap_stack, "stuck-long")["status"]["error"]["message"] == "canceled"
    assert lock_annotation(snap_stack, "stuck") is None


async def test_a_lock_left_by_a_closed_workflow_is_taken_over(snap_stack: Stack) -> None:
    done = await snapshot(snap_stack, "locked", name="locked-1")
    assert done.workflow_id is not None
    closed = await snap_stack.client.get_workflow_handle(done.workflow_id).describe()
    stale = json.dumps({"workflowId": done.workflow_id, "runId": closed.run_id,
                        "operation": "restore", "since": "2030-01-01T00:00:00Z"})
    snap_stack.sim.kubectl("annotate", "vm", "-n", NS, "locked", f"vmsnap.io/lock={stale}")
    result = await snapshot(snap_stack, "locked", name="locked-2")
    assert result.phase == "Succeeded"
    assert lock_annotation(snap_stack, "locked") is None


async def test_the_same_snapshot_started_twice_is_one_snapshot(snap_stack: Stack) -> None:
    from temporalio.common import WorkflowIDConflictPolicy

    document = {"namespace": NS, "vm": "twice", "name": "twice-1"}
    handles = [await snap_stack.client.start_workflow(
        "SnapshotVirtualMachine", document, id=snapshot_workflow_id(snap_stack.cluster_id, NS,
                                                                    "twice-1"),
        task_queue=snap_stack.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING) for _ in range(2)]
    assert handles[0].first_execution_run_id == handles[1].first_execution_run_id
    await handles[0].result()
    assert len(volume_snapshots(snap_stack, "twice-1")) == 1
    assert len(freezes(snap_stack, "twice")) == 1


async def test_kubectl_delete_of_the_record_garbage_collects_what_it_owns(
    snap_stack: Stack,
) -> None:
    await snapshot(snap_stack, "gc", name="gc-1")
    assert volume_snapshots(snap_stack, "gc-1")
    snap_stack.sim.kubectl("delete", "vmsnap", "-n", NS, "gc-1")
    for _ in range(100):
        left = volume_snapshots(snap_stack, "gc-1")
        contents = kube_json(snap_stack, "vmsnapcontent")["items"]
        if not left and all(c["metadata"]["name"] != "gc-1-content" for c in contents):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"left behind: {[v['metadata']['name'] for v in left]}")


async def test_delete_workflow_removes_snapshot_and_retain_keeps_volume_snapshots(
    snap_stack: Stack,
) -> None:
    await snapshot(snap_stack, "agentless", name="del-1")
    await snapshot(snap_stack, "agentless", name="del-2", deletion_policy="Retain")
    results = []
    for name in ("del-1", "del-2"):
        results.append(await snap_stack.client.execute_workflow(
            "DeleteVirtualMachineSnapshot", {"namespace": NS, "name": name},
            id=delete_snapshot_workflow_id(snap_stack.cluster_id, NS, name),
            task_queue=snap_stack.task_queue,
            result_type=DeleteVirtualMachineSnapshotResult))
    assert results[0].deleted_volume_snapshots == ["del-1-root"]
    assert results[1].retained_volume_snapshots == ["del-2-root"]
    assert all(r.record_deleted and r.content_deleted for r in results)
    assert volume_snapshots(snap_stack, "del-1") == []
    assert [v["metadata"]["name"] for v in volume_snapshots(snap_stack, "del-2")] == ["del-2-root"]
    names = [r["metadata"]["name"] for r in kube_json(snap_stack, "vmsnap")["items"]]
    assert "del-1" not in names and "del-2" not in names


async def test_transient_api_errors_are_retried_and_the_guest_frozen_once(
    snap_stack: Stack, tmp_path: Path
) -> None:
    rules: list[dict[str, Any]] = [
        {"verb": "create", "resource": "volumesnapshots", "error": 500, "count": 2},
        {"verb": "update", "resource": "virtualmachineinstances", "subresource": "unfreeze",
         "name": "faulty", "error": 503, "count": 1},
        {"verb": "patch", "resource": "vmsnapsnapshots", "subresource": "status",
         "error": 500, "count": 2},
        {"verb": "patch", "resource": "virtualmachines", "name": "faulty", "error": 409,
         "count": 1},
        # the inspection's read of the VM (its PVCs come from the worker's watch-fed cache)
        {"verb": "get", "resource": "virtualmachines", "name": "faulty", "error": 429,
         "count": 1},
    ]
    spec = tmp_path / "faults.json"
    spec.write_text(json.dumps({"seed": 3, "rules": rules}))
    snap_stack.sim.kubectl("replace", "--raw", "/sim/faults", "-f", str(spec))
    try:
        result = await snapshot(snap_stack, "faulty", name="faulty-1")
        fired = raw(snap_stack, "/sim/faults")["rules"]
    finally:
        snap_stack.sim.kubectl("delete", "--raw", "/sim/faults")
    assert [rule["fired"] for rule in fired] == [rule["count"] for rule in rules]
    assert result.phase == "Succeeded" and result.ready_to_use and result.quiesced
    [window] = freezes(snap_stack, "faulty")
    assert window["thawed_by"] == "unfreeze"
    calls = [r["subresource"] for r in freeze_requests(snap_stack, "faulty")]
    assert calls.count("freeze") == 1 and calls.count("unfreeze") == 2  # one 503, retried
    assert len(volume_snapshots(snap_stack, "faulty-1")) == 2
    assert record(snap_stack, "faulty-1")["status"]["phase"] == "Succeeded"
    assert lock_annotation(snap_stack, "faulty") is None
