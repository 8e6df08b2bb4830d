"""The SDK's restores and clones end to end: start, progress, await, cancel, failures.

Dev server, simulator (the snapshot seed, namespace snap) and `python worker.py` as
processes; one stack for the module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cluster.client import Cluster
from contracts.clone import CloneVirtualMachineInput
from contracts.restore import RestoreVirtualMachineInput
from contracts.snapshot import SnapshotVirtualMachineInput
from starter.sdk import (
    AlreadyExists,
    CloneFailed,
    ObjectNotFound,
    RestoreFailed,
    VmsnapClient,
)
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"


@pytest.fixture(scope="module")
def sdk_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


@pytest.fixture(scope="module")
async def sdk(sdk_stack: Stack) -> AsyncIterator[VmsnapClient]:
    cluster = Cluster.from_environment(str(sdk_stack.sim.kubeconfig))
    async with VmsnapClient(sdk_stack.client, cluster=cluster,
                            task_queue=sdk_stack.task_queue) as client:
        yield client
    cluster.close()


@pytest.fixture(scope="module")
async def snapshot(sdk: VmsnapClient) -> str:
    result = await sdk.snapshot(SnapshotVirtualMachineInput(
        namespace=NS, vm="stopped", name="stopped-sdk"))
    assert result.ready_to_use
    return result.name


def vms(stack: Stack) -> set[str]:
    listed = json.loads(stack.sim.kubectl("get", "virtualmachines", "-n", NS, "-o",
                                          "json").stdout)
    return {item["metadata"]["name"] for item in listed["items"]}


async def test_restore_and_clone_start_follow_and_await(
    sdk: VmsnapClient, snapshot: str, sdk_stack: Stack
) -> None:
    restore = await sdk.start_restore(RestoreVirtualMachineInput(namespace=NS,
                                                                  snapshot=snapshot))
    assert restore.workflow_id == f"restore/{sdk_stack.cluster_id}/snap/stopped"
    assert restore.target == "stopped"
    progress = await restore.progress()
    assert progress.result.snapshot == snapshot and progress.step
    result = await restore.result()
    assert result.phase == "Succeeded" and result.target == "stopped"
    assert (await restore.progress()).result.phase == "Succeeded"

    clone = await sdk.start_clone(CloneVirtualMachineInput(
        namespace=NS, source_snapshot=snapshot, target="stopped-sdk-copy"))
    assert clone.workflow_id == f"clone/{sdk_stack.cluster_id}/snap/stopped-sdk-copy"
    cloned = await clone.result()
    assert cloned.phase == "Succeeded" and cloned.source_snapshot == snapshot
    assert "stopped-sdk-copy" in vms(sdk_stack)


async def test_cancel_a_clone_rolls_it_back(sdk: VmsnapClient, sdk_stack: Stack) -> None:
    clone = await sdk.start_clone(CloneVirtualMachineInput(
        namespace=NS, source_vm="agentless", target="agentless-canceled"))
    await clone.cancel()
    with pytest.raises(CloneFailed) as failed:
        await clone.result()
    assert failed.value.error_type == "Canceled"
    progress = await clone.progress()
    assert progress.result.phase == "Failed"
    assert "agentless-canceled" not in vms(sdk_stack)


async def test_failures_map_to_sdk_errors(sdk: VmsnapClient, snapshot: str) -> None:
    with pytest.raises(ObjectNotFound, match="snapshot snap/nope not found"):
        await sdk.start_restore(RestoreVirtualMachineInput(namespace=NS, snapshot="nope"))
    with pytest.raises(AlreadyExists, match="agentless already exists"):
        await sdk.start_clone(CloneVirtualMachineInput(
            namespace=NS, source_snapshot=snapshot, target="agentless"))
    # unchecked, the workflow refuses it: a non-retryable cause, typed
    restore = await sdk.start_restore(RestoreVirtualMachineInput(
        namespace=NS, snapshot="nope", target="nope-target"), check=False)
    with pytest.raises(RestoreFailed) as failed:
        await asyncio.wait_for(restore.result(), 30)
    assert failed.value.error_type == "SnapshotNotFound", failed.value
    assert "nope" in failed.value.message
