"""The orphan sweeper under real processes: it removes what a broken run leaves, and never
touches a live operation's objects.

A dev server, a simulator and a worker run as real processes. Objects are made by
hand with vmsnap's labels and no record (what a crashed or half-compensated run
leaves), then a snapshot is started on a disk whose cut the simulator holds for
seconds. While that snapshot waits for its cut, `vmsnap sweep` (the CLI, a real
process) removes exactly the hand-made orphans, with reasons; the simulator's own
request log shows that nothing of the live snapshot was deleted, and the snapshot
then completes with all its VolumeSnapshots ready. The worker's start-up schedule
and a Temporal CLI start are checked on the way.
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

from cluster.client import Cluster
from contracts.sweep import sweeper_schedule_id
from rules.naming import snapshot_selector, snapshot_workflow_id
from starter.local_stack import REPO_ROOT, DevServerProcess
from tests.conftest import Stack
from tests.support.background import Background, register
from tests.support.stacks import OwnStacks, own_stacks
from tests.workflows.test_sweeper import make_content, make_restore_pvc, make_volume_snapshot

pytestmark = pytest.mark.e2e

NS = "demo"
CUT_HOLD = "15s"  # the live snapshot waits this long for its cut: the sweep runs meanwhile
GRACE_SECONDS = 2
ORPHANS = {("VolumeSnapshot", "ghost-root"), ("VirtualMachineSnapshotContent", "ghost-content"),
           ("PersistentVolumeClaim", "ghost-restore-disk")}


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
    entries = stack.sim.request("GET", f"/sim/requests?since={since}")["items"]
    return {(str(e.get("resource")), str(e.get("name"))) for e in entries
            if e.get("verb") == "delete"}


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

        stack.sim.kubectl("annotate", "pvc", "-n", NS, "db-1-root",
                          f"sim.vmsnap.io/cut-latency={CUT_HOLD}")
        with Cluster.from_environment(str(stack.sim.kubeconfig)) as cluster:
            make_volume_snapshot(cluster, "ghost-root", "ghost", owned=True)
            make_content(cluster, "ghost-content", "ghost", "ghost-root")
            make_restore_pvc(cluster, "ghost-restore-disk", "web-9-restore-20260101-000000-ab")
            made_at = time.time()
            live = await client.start_workflow(
                "SnapshotVirtualMachine", {"namespace": NS, "vm": "db-1", "name": "live-snap"},
                id=snapshot_workflow_id(stack.cluster_id, NS, "live-snap"),
                task_queue=stack.task_queue)
            await wait_for(lambda: len(cluster.list_volume_snapshots(
                NS, snapshot_selector("live-snap"))) == 2, 30, "the live VolumeSnapshots")
            # Creation times are whole seconds: one more second makes "older than grace" sure.
            await wait_for(lambda: time.time() > made_at + GRACE_SECONDS + 1.5, 10, "the grace")
            mark = stack.sim.request("GET", "/sim/requests")["next"]

            swept = cli_sweep(stack, dev_server, "--grace", f"{GRACE_SECONDS}s", "-n", NS)

            assert (await live.describe()).status == WorkflowExecutionStatus.RUNNING, \
                "the snapshot finished before the sweep: the live case was not tested"
            removed = {(r["kind"], r["name"]): r for r in swept["removed"]}
            assert set(removed) == ORPHANS and all(r["removed"] for r in removed.values())
            assert "record of snapshot demo/ghost is gone" in \
                removed[("VolumeSnapshot", "ghost-root")]["reason"]
            kept = {v["name"]: v["reason"] for v in swept["kept"]}
            live_names = {s.name for s in cluster.list_volume_snapshots(
                NS, snapshot_selector("live-snap"))}
            for name in live_names:
                assert kept[name] == "live operation: workflow snapshot/demo/live-snap is running"
            # The simulator's word: exactly the orphans were deleted, nothing of the live run.
            assert deletes(stack, mark) == {
                ("volumesnapshots", "ghost-root"),
                ("vmsnapcontents", "ghost-content"),
                ("persistentvolumeclaims", "ghost-restore-disk")}

            result = await live.result()
            assert result["phase"] == "Succeeded" and result["ready_to_use"]
            assert {s.name for s in cluster.list_volume_snapshots(
                NS, snapshot_selector("live-snap")) if s.ready_to_use} == live_names

            # Afterwards its record claims them: a sweep with no grace still keeps them.
            after = temporal_cli_sweep(stack, dev_server,
                                       {"namespaces": [NS], "grace": 0, "dry_run": True})
            assert not after["removed"]  # the CLI prints an empty list as null
            reasons = {v["name"]: v["reason"] for v in after["kept"]}
            assert all(reasons[n].startswith("owned by VirtualMachineSnapshot demo/live-snap")
                       for n in live_names)
    finally:
        await schedule.delete()
        stack.worker.stop()
        stack.sim.process.stop()


async def test_sweeper_removes_hand_made_orphans_and_spares_a_live_snapshot(
    background: Background,
) -> None:
    await background.result(sweep_beside_a_live_snapshot, timeout=280)
