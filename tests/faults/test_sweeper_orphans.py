"""The orphan sweeper under real processes: it removes what a broken run leaves, and never
touches a live operation's objects, nor anything it did not make or that is in use.

A dev server, a simulator and a worker run as real processes. Objects are made as a
crashed or half-compensated run of this cluster leaves them (vmsnap's labels and
creation mark, no record), then a snapshot is started of a VM whose two disks are cut
as one VolumeGroupSnapshot that the simulator holds for seconds. While that snapshot
waits for its cut, `vmsnap sweep` (the CLI, a real process) removes exactly those
orphans, with reasons; it keeps the live group and its PVCs' cut labels, a PVC
a user labelled as vmsnap's (no mark), one marked by another cluster, and a marked
orphan a Pod mounts; and the one it is about to delete when, meanwhile, it is deleted
and made again under the same name (the simulator holds that delete) survives: the
delete's uid precondition names the old one. The simulator's own request log shows
that nothing else was deleted, and the snapshot then completes with all its
members ready, which its record then claims. Last, an orphan made before the sweeper's schedule was
(re)created is only reported until the sweep includes older objects. The worker's
start-up schedule and a Temporal CLI start are checked on the way.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)

import worker as worker_module
from cluster.client import Cluster
from contracts.sweep import sweeper_schedule_id
from rules.creation_marks import CreationMark
from rules.naming import (
    cut_label_key,
    restore_workflow_id,
    snapshot_selector,
    snapshot_workflow_id,
)
from starter.local_stack import REPO_ROOT, DevServerProcess
from tests.conftest import Stack
from tests.support.background import Background, register
from tests.support.enforced import WORKER_USER
from tests.support.stacks import OwnStacks, own_stacks
from tests.workflows.test_sweeper import (
    GHOST_RUN,
    make_content,
    make_pod,
    make_restore_pvc,
    make_volume_snapshot,
    restore_pvc_body,
)

pytestmark = pytest.mark.e2e

NS = "demo"
CUT_HOLD = "15s"  # the live snapshot waits this long for its cut: the sweep runs meanwhile
GRACE_SECONDS = 2
RESTORE = "web-9-restore-20260101-000000-ab"
ORPHANS = {("VolumeSnapshot", "ghost-root"), ("VirtualMachineSnapshotContent", "ghost-content"),
           ("PersistentVolumeClaim", "ghost-restore-disk")}
HELD_DELETE = "3s"  # the sweeper's delete of `recreated-disk` waits this long: it is made again


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def cli_sweep(stack: Stack, server: DevServerProcess, *args: str) -> dict[str, Any]:
    """`vmsnap sweep ARGS -o json` as its own process; its JSON result."""
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address,
           "TEMPORAL_NAMESPACE": server.namespace, "KUBECONFIG": str(stack.sim.kubeconfig),
           "VMSNAP_TASK_QUEUE": stack.task_queue}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vmsnap"), "sweep", *args, "-o", "json"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def temporal_cli_sweep(stack: Stack, server: DevServerProcess, document: dict[str, Any]
                       ) -> dict[str, Any]:
    """`temporal workflow execute --type SweepOrphans --input ...`: the JSON contract."""
    done = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "temporal"), "workflow", "execute",
         "--address", server.address, "--namespace", server.namespace,
         "--task-queue", stack.task_queue, "--type", "SweepOrphans",
         "--workflow-id", f"sweep-orphans/cli-{uuid.uuid4().hex[:6]}",
         "--input", json.dumps(document), "-o", "json"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    close = json.loads(done.stdout)["closeEvent"]
    return dict(close["workflowExecutionCompletedEventAttributes"]["result"][0])


def deletes(stack: Stack, since: int) -> set[tuple[str, str]]:
    """What the worker deleted (successfully) since the mark."""
    entries = stack.sim.request("GET", f"/sim/requests?since={since}")["items"]
    return {(str(e.get("resource")), str(e.get("name"))) for e in entries
            if e.get("verb") == "delete" and e.get("user") == WORKER_USER
            and int(e.get("status") or 0) < 300}


def recreate(cluster: Cluster, name: str) -> str:
    """Delete a PVC as someone else would and make it again, alike but for its uid; the new
    uid."""
    cluster.delete_pvc(NS, name)
    deadline = time.monotonic() + 20
    while cluster.get_pvc(NS, name) is not None:
        assert time.monotonic() < deadline, f"{name} was not deleted"
        time.sleep(0.05)
    return make_restore_pvc(cluster, name, RESTORE)


@register(__file__, own_stacks)
async def sweep_beside_a_live_snapshot(stacks: OwnStacks) -> None:
    """The whole scenario, run in the background from the session's start on a thread of its
    own (tests/support/background.py): it mostly waits for the held cut. Its assertion
    errors fail the test below."""
    dev_server, client = stacks.server, stacks.client
    # the worker sets up the sweeper schedule (on by default; test workers turn it off)
    stack = await asyncio.to_thread(stacks.start,
                                    extra_env={"VMSNAP_SWEEPER_SCHEDULE": "on"})
    schedule = client.get_schedule_handle(sweeper_schedule_id(stack.task_queue))
    try:
        described = await schedule.describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "SweepOrphans"
        assert described.schedule.spec.intervals[0].every == timedelta(hours=1)
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP

        # Creation times are whole seconds: what is made in the schedule's second would
        # count as older than the sweeper's install.
        installed = described.info.created_at.timestamp()
        await wait_for(lambda: time.time() > installed + 1.1, 5, "a second after the install")

        # db-1's two disks are cut as one group (the demo's default group class): the
        # class holds the cut, so the sweep meets a live group and its PVCs' cut labels.
        stack.sim.kubectl("annotate", "volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io",
                          "csi-hostpath-groupsnapclass", f"sim.vmsnap.io/cut-latency={CUT_HOLD}",
                          "--overwrite")
        with Cluster.from_environment(str(stack.sim.kubeconfig)) as cluster:
            assert cluster.cluster_id == stack.cluster_id
            make_volume_snapshot(cluster, "ghost-root", "ghost", owned=True)
            make_content(cluster, "ghost-content", "ghost", "ghost-root")
            make_restore_pvc(cluster, "ghost-restore-disk", RESTORE)
            make_restore_pvc(cluster, "users-disk", RESTORE, marked=False)
            west = CreationMark(cluster="west", run_id=GHOST_RUN,
                                workflow_id=restore_workflow_id("west", NS, "web-9")).text()
            cluster.create_pvc(NS, restore_pvc_body("west-disk", RESTORE, "west", mark=west))
            make_restore_pvc(cluster, "mounted-disk", RESTORE)
            make_pod(cluster, "virt-launcher-web-9-x", "mounted-disk")
            first_uid = make_restore_pvc(cluster, "recreated-disk", RESTORE)
            made_at = time.time()
            live = await client.start_workflow(
                "SnapshotVirtualMachine", {"namespace": NS, "vm": "db-1", "name": "live-snap"},
                id=snapshot_workflow_id(stack.cluster_id, NS, "live-snap"),
                task_queue=stack.task_queue)
            await wait_for(lambda: len(cluster.list_group_snapshots(
                NS, snapshot_selector("live-snap"))) == 1, 30, "the live VolumeGroupSnapshot")
            [live_group] = [g["metadata"]["name"] for g in cluster.list_group_snapshots(
                NS, snapshot_selector("live-snap"))]
            live_labels = {p["metadata"]["name"] for p in cluster.pvcs_labelled(
                NS, cut_label_key(NS, live_group))}
            assert live_labels == {"db-1-root", "db-1-data"}, live_labels
            # Creation times are whole seconds: one more second makes "older than grace" sure.
            await wait_for(lambda: time.time() > made_at + GRACE_SECONDS + 1.5, 10, "the grace")
            mark = stack.sim.request("GET", "/sim/requests")["next"]
            stack.sim.set_faults({"rules": [{
                "verb": "delete", "resource": "persistentvolumeclaims", "namespace": NS,
                "name": "recreated-disk", "latency": HELD_DELETE, "count": 1}]})

            sweeping = asyncio.create_task(asyncio.to_thread(
                cli_sweep, stack, dev_server, "--grace", f"{GRACE_SECONDS}s", "-n", NS))
            await wait_for(lambda: stack.sim.request("GET", "/sim/faults")["rules"][0]["fired"],
                           60, "the sweeper's delete of recreated-disk")
            second_uid = await asyncio.to_thread(recreate, cluster, "recreated-disk")
            swept = await sweeping
            stack.sim.clear_faults()

            assert (await live.describe()).status == WorkflowExecutionStatus.RUNNING, \
                "the snapshot finished before the sweep: the live case was not tested"
            removed = {(r["kind"], r["name"]): r for r in swept["removed"]}
            assert set(removed) == ORPHANS and all(r["removed"] for r in removed.values())
            assert "record of snapshot demo/ghost is gone" in \
                removed[("VolumeSnapshot", "ghost-root")]["reason"]
            kept = {v["name"]: v["reason"] for v in swept["kept"]}
            live_workflow = f"snapshot/{stack.cluster_id}/demo/live-snap"
            assert kept[live_group] == f"live operation: workflow {live_workflow} is running"
            labels_kept = {v["pvc"]: (v["action"], v["reason"]) for v in swept["cut_labels"]}
            assert labels_kept == dict.fromkeys(
                live_labels, ("keep", f"live cut: workflow {live_workflow} is running"))
            assert kept["users-disk"].startswith(
                "not made by vmsnap in this cluster: it has no creation mark")
            assert kept["west-disk"].startswith(
                "not made by vmsnap in this cluster: its creation mark names cluster 'west'")
            assert kept["mounted-disk"] == "in use: Pod demo/virt-launcher-web-9-x mounts it"
            assert kept["recreated-disk"] == ("replaced by a new object of the same name since "
                                              "the sweep looked (uid precondition)")
            survivor = cluster.get_pvc(NS, "recreated-disk")
            assert survivor is not None and second_uid != first_uid
            assert survivor["metadata"]["uid"] == second_uid
            for name in ("users-disk", "west-disk", "mounted-disk"):
                assert cluster.get_pvc(NS, name) is not None, name
            # The simulator's word: exactly the orphans were deleted, nothing of the live run,
            # and the sweeper's delete of the old recreated-disk was refused (409).
            assert deletes(stack, mark) == {
                ("volumesnapshots", "ghost-root"),
                ("vmsnapcontents", "ghost-content"),
                ("persistentvolumeclaims", "ghost-restore-disk")}
            refused = [e for e in stack.sim.request("GET", f"/sim/requests?since={mark}")["items"]
                       if e.get("verb") == "delete" and e.get("name") == "recreated-disk"
                       and e.get("user") == WORKER_USER]
            assert [e["status"] for e in refused] == [409]

            result = await live.result()
            assert result["phase"] == "Succeeded" and result["ready_to_use"]
            assert result["volume_consistency"] == "group"
            live_names = {s.name for s in cluster.list_volume_snapshots(
                NS, snapshot_selector("live-snap")) if s.ready_to_use}
            assert live_names == set(result["volume_snapshots"]) and len(live_names) == 2

            # Afterwards its record claims them: a sweep with no grace still keeps them.
            after = temporal_cli_sweep(stack, dev_server,
                                       {"namespaces": [NS], "grace": 0, "dry_run": True})
            # (recreated-disk, made again alike, is an orphan of its own: a later sweep's)
            assert [r["name"] for r in after["removed"]] == ["recreated-disk"]
            reasons = {v["name"]: v["reason"] for v in after["kept"]}
            assert reasons[live_group].startswith("owned by VirtualMachineSnapshot "
                                                  "demo/live-snap"), reasons[live_group]
            assert all(reasons[n].startswith(f"a member of VolumeGroupSnapshot demo/{live_group}")
                       for n in live_names)
            assert not after["cut_labels"]  # the cut took its labels off

            # An orphan older than the sweeper's install (its schedule made again after it)
            # is only reported, until the sweep includes older objects.
            make_restore_pvc(cluster, "older-disk", RESTORE)
            await asyncio.sleep(1.1)
            await schedule.delete()
            assert await worker_module.ensure_sweeper_schedule(
                client, stack.task_queue, stack.cluster_id, {"VMSNAP_SWEEPER_SCHEDULE": "on"})
            reported = cli_sweep(stack, dev_server, "--grace", "0s", "-n", NS)
            assert not reported["removed"]
            older = {v["name"]: v["reason"] for v in reported["reported"]}
            assert "made before the sweeper was installed" in older["older-disk"], older
            assert cluster.get_pvc(NS, "older-disk") is not None
            asked = cli_sweep(stack, dev_server, "--grace", "0s", "-n", NS,
                              "--include-older-than-install")
            assert {(r["name"], r["removed"]) for r in asked["removed"]} >= {
                ("older-disk", True)}
            assert cluster.get_pvc(NS, "older-disk") is None
    finally:
        await schedule.delete()
        stack.worker.stop()
        stack.sim.process.stop()


async def test_sweeper_removes_hand_made_orphans_and_spares_a_live_snapshot(
    background: Background,
) -> None:
    await background.result(sweep_beside_a_live_snapshot, timeout=280)
