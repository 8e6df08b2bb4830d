"""Two clusters, one Temporal namespace and the same VM names: nothing crosses.

Two simulators (one per cluster, each with its own kube-system uid, so its own derived
cluster id) and two workers on the session's dev server, each polling its cluster's
own task queue as a deployed worker does. Snapshots and restores of the same VM names
run in both at once through the SDK; each cluster then holds only its own records,
objects and locks, named by its own workflows, and each task queue only its own runs.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from temporalio.client import Client

from contracts.restore import RestoreVirtualMachineInput
from contracts.snapshot import SnapshotVirtualMachineInput
from rules.cluster_identity import task_queue_for
from starter.sdk import VmsnapClient
from tests.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

NS = "demo"
VM = "web-1"


@pytest.fixture(scope="module")
def clusters(start_stack: StartStack) -> tuple[Stack, Stack]:
    """Two stacks, started side by side (each is mostly a worker's imports)."""
    with ThreadPoolExecutor(2) as pool:
        first, second = (pool.submit(start_stack, cluster_task_queue=True) for _ in range(2))
        return first.result(), second.result()


def kubectl_json(stack: Stack, *args: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(stack.sim.kubectl(*args, "-o", "json").stdout)
    return loaded


def sdk(stack: Stack) -> VmsnapClient:
    """The client a user of that cluster has: its kubeconfig, no task queue named."""
    return VmsnapClient(stack.client, kubeconfig=str(stack.sim.kubeconfig))


async def test_the_same_names_in_two_clusters_never_cross(clusters: tuple[Stack, Stack],
                                                          client: Client) -> None:
    east, west = clusters
    assert east.cluster_id != west.cluster_id
    async with sdk(east) as on_east, sdk(west) as on_west:
        clients = ((east, on_east), (west, on_west))
        snapshots = await asyncio.gather(*(c.start_snapshot(SnapshotVirtualMachineInput(
            namespace=NS, vm=VM, name="same")) for _, c in clients))
        assert [h.workflow_id for h in snapshots] == [
            f"snapshot/{s.cluster_id}/{NS}/same" for s, _ in clients]
        assert [c.task_queue for _, c in clients] == [
            task_queue_for(s.cluster_id) for s, _ in clients]
        taken = await asyncio.gather(*(h.result() for h in snapshots))
        assert [r.phase for r in taken] == ["Succeeded", "Succeeded"]

        restores = await asyncio.gather(*(c.start_restore(RestoreVirtualMachineInput(
            namespace=NS, snapshot="same", target="same-copy"))
            for _, c in clients))
        assert [h.workflow_id for h in restores] == [
            f"restore/{s.cluster_id}/{NS}/same-copy" for s, _ in clients]
        restored = await asyncio.gather(*(h.result() for h in restores))
        assert [r.phase for r in restored] == ["Succeeded", "Succeeded"]

    for stack, result in zip((east, west), taken, strict=True):
        record = kubectl_json(stack, "get", "vmsnap", "-n", NS, "same")
        annotations = record["metadata"]["annotations"]
        assert annotations["vmsnap.io/workflow-id"] == f"snapshot/{stack.cluster_id}/{NS}/same"
        assert record["metadata"]["labels"]["vmsnap.io/cluster"] == stack.cluster_id
        assert record["status"]["sourceUID"] == result.vm_uid  # this cluster's VM
        volume_snapshots = kubectl_json(stack, "get", "volumesnapshots", "-n", NS, "-l",
                                        "vmsnap.io/snapshot=same")["items"]
        assert len(volume_snapshots) == len(result.included_volumes)
        assert {v["metadata"]["labels"]["vmsnap.io/cluster"] for v in volume_snapshots} == {
            stack.cluster_id}
        copy = kubectl_json(stack, "get", "vm", "-n", NS, "same-copy")
        assert copy["metadata"]["name"] == "same-copy"
        vm = kubectl_json(stack, "get", "vm", "-n", NS, VM)
        assert "vmsnap.io/lock" not in (vm["metadata"].get("annotations") or {})

    for stack in (east, west):
        ids = [r.id async for r in client.list_workflows(f'TaskQueue = "{stack.task_queue}"')]
        assert ids and all(f"/{stack.cluster_id}/" in i for i in ids), ids
