"""Snapshot records follow their VolumeSnapshots after the workflow has stopped looking.

The worker's record reconciler (cluster/record_reconciler.py) against the simulator: a
VolumeSnapshot that becomes ready after `ready_deadline` turns the record ready; one that
is deleted turns it not ready within seconds; a status that is gone is rebuilt from the
content; and while nothing changes, the reconciler sends nothing but its watches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from contracts.common import SNAPSHOT_NOT_READY
from contracts.snapshot import SnapshotVirtualMachineResult, snapshot_workflow_id
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "truth_seeds" / "slow-ready.yaml"
NS = "truth"


@pytest.fixture(scope="module")
def truth_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


def record(stack: Stack, name: str) -> dict[str, Any]:
    out = stack.sim.kubectl("get", "vmsnapsnapshots", "-n", NS, name, "-o", "json").stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def eventually(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


async def start_past_its_ready_deadline(
    stack: Stack, name: str
) -> WorkflowHandle[Any, SnapshotVirtualMachineResult]:
    """Start a snapshot whose VolumeSnapshot is not ready within its 1 s ready deadline."""
    return await stack.client.start_workflow(
        "SnapshotVirtualMachine",
        {"namespace": NS, "vm": "archive", "name": name, "ready_deadline": "1s"},
        id=snapshot_workflow_id(stack.cluster_id, NS, name), task_queue=stack.task_queue,
        result_type=SnapshotVirtualMachineResult,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


async def not_ready_in_time(handle: WorkflowHandle[Any, SnapshotVirtualMachineResult]) -> None:
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert getattr(failed.value.cause, "type", None) == SNAPSHOT_NOT_READY


async def snapshot_past_its_ready_deadline(stack: Stack, name: str) -> None:
    """A snapshot whose VolumeSnapshot is not ready within its 1 s ready deadline."""
    await not_ready_in_time(await start_past_its_ready_deadline(stack, name))


@pytest.fixture(scope="module")
async def amnesia(truth_stack: Stack) -> WorkflowHandle[Any, SnapshotVirtualMachineResult]:
    """The lost-status test's snapshot, started with the module (the first test asks for
    it): a record without a status is rebuilt only once it is STATUSLESS_GRACE old, and the
    other tests run meanwhile."""
    return await start_past_its_ready_deadline(truth_stack, "amnesia")


async def test_late_readiness_turns_the_record_ready(
    truth_stack: Stack, amnesia: WorkflowHandle[Any, SnapshotVirtualMachineResult],
) -> None:
    await snapshot_past_its_ready_deadline(truth_stack, "late")
    status = record(truth_stack, "late")["status"]
    assert status["phase"] == "Succeeded" and status["readyToUse"] is False
    assert "not ready to use within" in status["error"]["message"]
    eventually(lambda: record(truth_stack, "late")["status"]["readyToUse"] is True,
               "the record to turn ready")
    status = record(truth_stack, "late")["status"]
    assert "error" not in status or status["error"] is None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


async def test_a_deleted_volume_snapshot_turns_the_record_not_ready(
    truth_stack: Stack,
) -> None:
    await snapshot_past_its_ready_deadline(truth_stack, "gone")
    eventually(lambda: record(truth_stack, "gone")["status"]["readyToUse"] is True,
               "the record to turn ready")
    [volume_snapshot] = record(truth_stack, "gone")["status"]["volumeSnapshots"]
    deleted_at = time.monotonic()
    truth_stack.sim.kubectl("delete", "volumesnapshot", "-n", NS, volume_snapshot,
                            "--wait=false")
    eventually(lambda: record(truth_stack, "gone")["status"]["readyToUse"] is False,
               "the record to turn not ready", seconds=10)
    assert time.monotonic() - deleted_at < 5
    message = record(truth_stack, "gone")["status"]["error"]["message"]
    assert volume_snapshot in message and "deleted" in message


async def test_a_lost_status_is_rebuilt_from_the_content(
    truth_stack: Stack, amnesia: WorkflowHandle[Any, SnapshotVirtualMachineResult],
) -> None:
    await not_ready_in_time(amnesia)
    eventually(lambda: record(truth_stack, "amnesia")["status"]["readyToUse"] is True,
               "the record to turn ready")
    before = record(truth_stack, "amnesia")["status"]
    truth_stack.sim.kubectl("patch", "vmsnapsnapshots", "-n", NS, "amnesia",
                            "--subresource", "status", "--type", "json",
                            "-p", '[{"op": "remove", "path": "/status"}]')
    eventually(lambda: bool(record(truth_stack, "amnesia").get("status")),
               "the status to be rebuilt")
    after = record(truth_stack, "amnesia")["status"]
    assert after["phase"] == "Succeeded" and after["readyToUse"] is True
    assert after["volumeSnapshots"] == before["volumeSnapshots"]
    assert after["creationTime"] == before["creationTime"]


async def test_nothing_changing_costs_nothing_but_watches(truth_stack: Stack) -> None:
    # Once every VolumeSnapshot of the module is ready (3 s after its cut), nothing changes.
    path = f"/apis/snapshot.storage.k8s.io/v1/namespaces/{NS}/volumesnapshots"
    settled_by = time.monotonic() + 8
    while time.monotonic() < settled_by and not all(
            (item.get("status") or {}).get("readyToUse")
            for item in truth_stack.sim.request("GET", path)["items"]):
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # the records' last writes after the last readiness
    mark = truth_stack.sim.request("GET", "/sim/requests")["next"]
    await asyncio.sleep(5)
    sent = truth_stack.sim.request("GET", f"/sim/requests?since={mark}")["items"]
    assert [r for r in sent if r["verb"] != "watch"] == [], sent
