"""VolumeGroupSnapshots end to end: the worker cuts a VM's disks as one group on the
simulator's group snapshot controller, and restores and clones from the members.

Seeds: the demo cluster (web-1: three disks on the hostpath driver, which has a default
VolumeGroupSnapshotClass), the misbehaving storage (groups that fail, never cut) and
tests/e2e/storage_seeds/groups.yaml (two-disk VMs: one whose driver's group class answers
with an error, one on storage that cuts groups).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.client import Cluster
from contracts.clone import CloneVirtualMachineInput
from contracts.restore import RestoreVirtualMachineInput
from contracts.snapshot import (
    GROUP_SNAPSHOT_FALLBACK,
    QUIESCE_TIMEOUT,
    SnapshotVirtualMachineInput,
)
from rules.naming import cut_label_key, group_snapshot_name
from starter.sdk import SnapshotFailed, VmsnapClient
from tests.conftest import SEEDS
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

NS = "demo"
GROUPS = "groups"
GROUP_SEED = Path(__file__).parent / "storage_seeds" / "groups.yaml"


@pytest.fixture(scope="module")
def group_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEEDS / "demo.yaml", SEEDS / "storage-faults.yaml", GROUP_SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


@pytest.fixture(scope="module")
async def sdk(group_stack: Stack) -> AsyncIterator[VmsnapClient]:
    cluster = Cluster.from_environment(str(group_stack.sim.kubeconfig))
    async with VmsnapClient(group_stack.client, cluster=cluster,
                            task_queue=group_stack.task_queue) as client:
        yield client
    cluster.close()


def kube(stack: Stack, *args: str, namespace: str = NS) -> Any:
    return json.loads(stack.sim.kubectl("get", *args, "-n", namespace, "-o", "json").stdout)


def items(stack: Stack, kind: str, namespace: str = NS) -> list[dict[str, Any]]:
    return list(kube(stack, kind, namespace=namespace)["items"])


def cut_labels(stack: Stack, namespace: str) -> list[str]:
    return [f"{p['metadata']['name']}:{key}" for p in items(stack, "pvc", namespace)
            for key in (p["metadata"].get("labels") or {}) if key.startswith("vmsnap.io/cut-")]


async def test_three_disks_one_group_restore_clone_and_delete(
    sdk: VmsnapClient, group_stack: Stack
) -> None:
    result = await sdk.snapshot(SnapshotVirtualMachineInput(
        namespace=NS, vm="web-1", name="web-grouped"))
    assert result.ready_to_use and result.volume_consistency == "group", result
    assert len(result.groups) == 1 and len(result.included_volumes) == 3
    group = result.groups[0]
    assert group.group_class == "csi-hostpath-groupsnapclass"
    assert sorted(group.volumes) == sorted(v.volume_name for v in result.included_volumes)
    members = {v["metadata"]["name"]: v for v in items(group_stack, "volumesnapshots")
               if (v.get("status") or {}).get("volumeGroupSnapshotName") == group.name}
    assert set(result.volume_snapshots) == set(members) and len(members) == 3
    assert all(v.group == group.name and v.volume_snapshot.startswith("snapshot-")
               for v in result.included_volumes)
    assert {m["status"]["creationTime"] for m in members.values()} == {
        kube(group_stack, "volumegroupsnapshots", group.name)["status"]["creationTime"]}
    assert all(m["metadata"]["labels"]["vmsnap.io/snapshot"] == "web-grouped"
               for m in members.values())
    content = kube(group_stack, "vmsnapcontents.vmsnap.io", result.content_name or "")
    assert {b["volumeSnapshotName"] for b in content["spec"]["volumeBackups"]} == set(members)
    record = kube(group_stack, "vmsnapsnapshots.vmsnap.io", "web-grouped")["status"]
    assert record["volumeConsistency"] == "group"
    assert record["volumeGroupSnapshots"][0]["name"] == group.name
    assert cut_labels(group_stack, NS) == []
    shown = await sdk.get_snapshot(NS, "web-grouped")
    assert shown.volume_consistency == "group" and shown.groups[0].name == group.name

    clone = await (await sdk.start_clone(CloneVirtualMachineInput(
        namespace=NS, source_snapshot="web-grouped", target="web-grouped-copy"))).result()
    assert clone.phase == "Succeeded", clone
    restored = await (await sdk.start_restore(RestoreVirtualMachineInput(
        namespace=NS, snapshot="web-grouped", running_vm_policy="stop"))).result()
    assert restored.phase == "Succeeded", restored

    deleted = await sdk.delete_snapshot(NS, "web-grouped")
    assert sorted(deleted.deleted_volume_snapshots) == sorted(members)
    assert [g for g in items(group_stack, "volumegroupsnapshots")
            if g["metadata"]["name"] == group.name] == []
    assert not set(members) & {v["metadata"]["name"]
                               for v in items(group_stack, "volumesnapshots")}


async def test_a_failing_group_required_fails_and_leaves_nothing(
    sdk: VmsnapClient, group_stack: Stack
) -> None:
    with pytest.raises(SnapshotFailed) as failed:
        await sdk.snapshot(SnapshotVirtualMachineInput(
            namespace="faults", vm="failing-1", name="failing-group",
            group_snapshot="required", failure_deadline=20))
    assert failed.value.error_type == "GroupSnapshotFailed", failed.value
    assert items(group_stack, "volumegroupsnapshots", "faults") == []
    assert [v for v in items(group_stack, "volumesnapshots", "faults")
            if (v["metadata"].get("labels") or {}).get("vmsnap.io/snapshot")
            == "failing-group"] == []
    assert cut_labels(group_stack, "faults") == []


async def test_a_group_that_never_cuts_fails_at_the_deadline_and_leaves_nothing(
    sdk: VmsnapClient, group_stack: Stack
) -> None:
    with pytest.raises(SnapshotFailed) as failed:
        await sdk.snapshot(SnapshotVirtualMachineInput(
            namespace="faults", vm="stuck-1", name="stuck-group", group_snapshot="required",
            failure_deadline=3, freeze_budget=1))
    assert failed.value.error_type == "SnapshotDeadlineExceeded", failed.value
    assert items(group_stack, "volumegroupsnapshots", "faults") == []
    assert cut_labels(group_stack, "faults") == []


def eventually(what: str, check: Callable[[], list[Any]], timeout: float = 10.0) -> None:
    """Until `check` finds nothing (the controllers delete a group's members and content
    after the group)."""
    deadline = time.monotonic() + timeout
    while found := check():
        assert time.monotonic() < deadline, f"{what} left: {found}"
        time.sleep(0.1)


def nothing_of_group(stack: Stack, namespace: str, group: str) -> None:
    """No group, member, group content or cut label of `group` is left."""
    eventually("group", lambda: [g["metadata"]["name"] for g in items(
        stack, "volumegroupsnapshots", namespace) if g["metadata"]["name"] == group])
    eventually("members", lambda: [v["metadata"]["name"] for v in items(
        stack, "volumesnapshots", namespace)
        if (v.get("status") or {}).get("volumeGroupSnapshotName") == group])
    eventually("group contents", lambda: [c["metadata"]["name"] for c in json.loads(
        stack.sim.kubectl("get", "volumegroupsnapshotcontents", "-o", "json").stdout)["items"]
        if (c["spec"].get("volumeGroupSnapshotRef") or {}).get("name") == group])
    assert cut_labels(stack, namespace) == []


async def test_auto_falls_back_per_disk_when_the_driver_refuses_the_group(
    sdk: VmsnapClient, group_stack: Stack
) -> None:
    result = await sdk.snapshot(SnapshotVirtualMachineInput(
        namespace=GROUPS, vm="split-1", name="split-auto"))
    assert result.phase == "Succeeded" and result.ready_to_use, result
    assert GROUP_SNAPSHOT_FALLBACK in result.indications, result.indications
    assert result.groups == [] and result.volume_consistency == "per-disk"
    assert result.quiesced, "the fallback is cut inside the freeze window"
    assert sorted(result.volume_snapshots) == ["split-auto-datadisk", "split-auto-rootdisk"]
    assert all(v.group is None for v in result.included_volumes)
    nothing_of_group(group_stack, GROUPS, group_snapshot_name("split-auto",
                                                              "split.csi.vmsnap.io"))
    await sdk.delete_snapshot(GROUPS, "split-auto")


@pytest.mark.parametrize("mode", ["auto", "required"])
async def test_a_foreign_pvc_taken_by_the_group_is_noticed_and_left_as_it_was(
    sdk: VmsnapClient, group_stack: Stack, mode: str
) -> None:
    name = f"pair-foreign-{mode}"
    group = group_snapshot_name(name, "fast.csi.vmsnap.io")
    own = {"app": "foreign", cut_label_key(GROUPS, group): group}
    with Cluster.from_environment(str(group_stack.sim.kubeconfig)) as cluster:
        cluster.create_pvc(GROUPS, {
            "metadata": {"name": f"foreign-{mode}", "labels": own},
            "spec": {"storageClassName": "fast-csi", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}})
        cluster.watch_pvcs(GROUPS, [f"foreign-{mode}"], 10)  # bound: the group can cut it
        request = SnapshotVirtualMachineInput(namespace=GROUPS, vm="pair-1", name=name,
                                              group_snapshot=mode)  # type: ignore[arg-type]
        try:
            if mode == "auto":
                result = await sdk.snapshot(request)
                assert result.phase == "Succeeded", result
                assert GROUP_SNAPSHOT_FALLBACK in result.indications, result.indications
                assert result.groups == [] and result.volume_consistency == "per-disk"
                # Noticed after the thaw, among the members: its disks were cut after it.
                assert QUIESCE_TIMEOUT in result.indications and not result.quiesced
                assert sorted(result.volume_snapshots) == [f"{name}-datadisk",
                                                           f"{name}-rootdisk"]
            else:
                with pytest.raises(SnapshotFailed) as failed:
                    await sdk.snapshot(request)
                assert failed.value.error_type == "GroupSnapshotFailed", failed.value
                assert f"also took foreign-{mode}" in str(failed.value)
                assert [v for v in items(group_stack, "volumesnapshots", GROUPS)
                        if (v["metadata"].get("labels") or {}).get("vmsnap.io/snapshot")
                        == name] == []
            foreign = cluster.get_pvc(GROUPS, f"foreign-{mode}") or {}
            assert foreign["metadata"]["labels"] == own
            cluster.delete_pvc(GROUPS, f"foreign-{mode}")
            nothing_of_group(group_stack, GROUPS, group)
        finally:
            cluster.delete_pvc(GROUPS, f"foreign-{mode}")
        if mode == "auto":
            await sdk.delete_snapshot(GROUPS, name)
