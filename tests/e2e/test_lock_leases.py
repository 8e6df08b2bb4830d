"""The VM lock's lease with the real worker: a foreign holder, an expired one, a stuck one.

A lock names its holder's deployment (cluster id and Temporal namespace) and the end of
its lease (`cluster.lock`). Written here with kubectl as another deployment or a stuck
run would leave it, then met by snapshots through the SDK.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cluster.lock import LOCK_ANNOTATION, LockHolder
from contracts.restore import RestoreVirtualMachineInput
from contracts.snapshot import SnapshotVirtualMachineInput
from starter.sdk import RestoreFailed, SnapshotFailed, VmsnapClient
from tests.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

NS = "demo"


@pytest.fixture(scope="module")
def lease_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack()
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


@pytest.fixture
async def sdk(lease_stack: Stack) -> AsyncIterator[VmsnapClient]:
    async with VmsnapClient(lease_stack.client, kubeconfig=str(lease_stack.sim.kubeconfig),
                            task_queue=lease_stack.task_queue) as client:
        yield client


def holder(workflow_id: str, run_id: str, cluster: str, temporal_namespace: str,
           lease: timedelta) -> LockHolder:
    now = datetime.now(UTC).replace(microsecond=0)
    return LockHolder(workflow_id=workflow_id, run_id=run_id, operation="snapshot",
                      since=now - timedelta(minutes=1), cluster=cluster,
                      temporal_namespace=temporal_namespace, expires=now + lease)


def lock(stack: Stack, vm: str, who: LockHolder | None) -> None:
    value = f"{LOCK_ANNOTATION}={who.to_annotation()}" if who else f"{LOCK_ANNOTATION}-"
    stack.sim.kubectl("annotate", "vm", "-n", NS, vm, "--overwrite", value)


def lock_of(stack: Stack, vm: str) -> LockHolder | None:
    vm_object = json.loads(stack.sim.kubectl("get", "vm", "-n", NS, vm, "-o", "json").stdout)
    text = (vm_object["metadata"].get("annotations") or {}).get(LOCK_ANNOTATION)
    return None if text is None else LockHolder.from_annotation(text)


def request(vm: str, name: str, **fields: object) -> SnapshotVirtualMachineInput:
    return SnapshotVirtualMachineInput.model_validate(
        {"namespace": NS, "vm": vm, "name": name, **fields})


async def test_a_foreign_holder_holds_until_its_lease_ends_then_the_waiting_snapshot_runs(
    lease_stack: Stack, sdk: VmsnapClient
) -> None:
    foreign = holder("snapshot/elsewhere/demo/theirs", "run-x", "elsewhere", "default",
                     timedelta(minutes=10))
    lock(lease_stack, "web-1", foreign)
    with pytest.raises(SnapshotFailed) as refused:
        await sdk.snapshot(request("web-1", "fast-fail", fail_if_locked=True))
    assert refused.value.error_type == "VmLocked"
    assert "of cluster elsewhere" in refused.value.message

    waiting = await sdk.start_snapshot(request("web-1", "patient", failure_deadline="5m"))
    for _ in range(100):
        if (await waiting.progress()).step == "waiting for the VM lock":
            break
        await asyncio.sleep(0.1)
    assert (await waiting.progress()).step == "waiting for the VM lock"
    assert lock_of(lease_stack, "web-1") == foreign  # never stolen while its lease runs
    lock(lease_stack, "web-1", foreign.model_copy(
        update={"expires": datetime.now(UTC) - timedelta(seconds=1)}))  # the lease ends
    result = await waiting.result()
    assert result.phase == "Succeeded"
    assert lock_of(lease_stack, "web-1") is None  # taken over, then released


async def test_a_stuck_holder_of_this_deployment_loses_the_vm_when_its_lease_ends(
    lease_stack: Stack, sdk: VmsnapClient
) -> None:
    # A run that is open in this Temporal namespace: a snapshot waiting for a foreign lock.
    lock(lease_stack, "batch-1", holder("snapshot/elsewhere/demo/x", "run-y", "elsewhere",
                                        "default", timedelta(minutes=10)))
    blocker = await sdk.start_snapshot(request("batch-1", "blocked", failure_deadline="5m"))
    description = await blocker.handle.describe()
    cluster_id = await sdk.cluster_id()
    stuck = holder(description.id, description.run_id, cluster_id, "default",
                   timedelta(minutes=10))
    lock(lease_stack, "db-1", stuck)
    with pytest.raises(SnapshotFailed) as refused:  # alive: its run is open, its lease too
        await sdk.snapshot(request("db-1", "while-held", fail_if_locked=True))
    assert refused.value.error_type == "VmLocked"

    lock(lease_stack, "db-1", stuck.model_copy(
        update={"expires": datetime.now(UTC) - timedelta(seconds=1)}))
    result = await sdk.snapshot(request("db-1", "after-the-lease", fail_if_locked=True))
    assert result.phase == "Succeeded"  # the run is still open, but its claim has ended
    await blocker.cancel()
    lock(lease_stack, "batch-1", None)


async def test_a_waiting_snapshot_runs_as_soon_as_the_holder_releases(
    lease_stack: Stack, sdk: VmsnapClient
) -> None:
    lock(lease_stack, "paused-1", holder("snapshot/elsewhere/demo/y", "run-z", "elsewhere",
                                         "default", timedelta(minutes=10)))
    waiting = await sdk.start_snapshot(request("paused-1", "seen", failure_deadline="5m"))
    description = await waiting.handle.describe()
    lock(lease_stack, "paused-1", None)  # the foreign holder releases
    result = await waiting.result()
    assert result.phase == "Succeeded"
    assert description.id == f"snapshot/{await sdk.cluster_id()}/{NS}/seen"


async def test_a_restore_plans_under_the_lock_and_a_held_vm_is_refused_before_any_record(
    lease_stack: Stack, sdk: VmsnapClient
) -> None:
    taken = await sdk.snapshot(request("legacy-1", "before-restore"))
    assert taken.phase == "Succeeded"
    lock(lease_stack, "legacy-1", holder("restore/elsewhere/demo/legacy-1", "run-r",
                                         "elsewhere", "default", timedelta(minutes=10)))
    handle = await sdk.start_restore(RestoreVirtualMachineInput.model_validate(
        {"namespace": NS, "snapshot": "before-restore", "running_vm_policy": "stop"}))
    with pytest.raises(RestoreFailed) as refused:
        await handle.result()
    assert refused.value.error_type == "VmLocked"
    assert refused.value.message.startswith("prepare: ")
    records = json.loads(lease_stack.sim.kubectl(
        "get", "vmsnaprestores", "-n", NS, "-o", "json").stdout)["items"]
    assert records == []  # refused before anything was recorded or planned
    lock(lease_stack, "legacy-1", None)
    again = await sdk.start_restore(RestoreVirtualMachineInput.model_validate(
        {"namespace": NS, "snapshot": "before-restore", "running_vm_policy": "stop"}))
    assert (await again.result()).phase == "Succeeded"
    assert lock_of(lease_stack, "legacy-1") is None
