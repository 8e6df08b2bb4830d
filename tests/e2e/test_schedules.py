"""Schedules end to end: the dev server (the time-skipping server has no schedules), a
simulator process, and a worker with every workflow, ScheduledVirtualMachineSnapshots
included, on the real activities. Runs are started with `trigger`, never by waiting
for the cron.

The worker runs in this process (built like worker.py's) so the test does not depend
on worker.py registering the scheduled workflow yet; once it does, the same
`build_worker` is used. CLI calls are real `vmsnap` processes, started without
blocking the event loop the worker runs on.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import worker as worker_module
from activities.liveness import WorkflowLiveness
from activities.retention import RetentionActivities
from cluster.client import Cluster
from contracts.snapshot import SnapshotVirtualMachineInput
from starter.local_stack import DevServerProcess
from starter.sdk import (
    ObjectNotFound,
    ScheduledSnapshotInput,
    ScheduleTiming,
    SnapshotFailed,
    VmsnapClient,
)
from tests.conftest import SEEDS, StartSim
from tests.support.sim import Sim
from workflows.scheduled import ScheduledVirtualMachineSnapshots

pytestmark = pytest.mark.e2e

T = TypeVar("T")
NS = "demo"
VMSNAP = Path(sys.executable).parent / "vmsnap"


def build_worker(client: Client, cluster: Cluster, task_queue: str,
                 pool: ThreadPoolExecutor) -> Worker:
    """worker.py's worker, with the scheduled workflow and its activities added if absent."""
    if ScheduledVirtualMachineSnapshots in worker_module.WORKFLOWS:
        return worker_module.build_worker(client, cluster, task_queue, pool)
    liveness = WorkflowLiveness(client, asyncio.get_running_loop())
    return Worker(
        client, task_queue=task_queue,
        workflows=[*worker_module.WORKFLOWS, ScheduledVirtualMachineSnapshots],
        activities=[*worker_module.activities_for(cluster, liveness),
                    *RetentionActivities(cluster).all()],
        activity_executor=pool, max_concurrent_activities=worker_module.MAX_CONCURRENT_ACTIVITIES,
        max_heartbeat_throttle_interval=worker_module.MAX_HEARTBEAT_THROTTLE)


@dataclass
class Env:
    sim: Sim
    client: Client
    task_queue: str
    vmsnap: VmsnapClient
    dev_server: DevServerProcess
    home: Path


@pytest.fixture(scope="module")
async def env(
    start_sim: StartSim, client: Client, dev_server: DevServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Env]:
    sim = start_sim(SEEDS / "demo.yaml", name="sched-sim")
    task_queue = f"vmsnap-sched-{uuid.uuid4().hex[:8]}"
    cluster = Cluster.from_environment(str(sim.kubeconfig))
    with ThreadPoolExecutor(worker_module.MAX_CONCURRENT_ACTIVITIES) as pool:
        async with build_worker(client, cluster, task_queue, pool), \
                worker_module.build_freeze_worker(client, cluster, task_queue):
            sdk = VmsnapClient(client, cluster=Cluster.from_environment(str(sim.kubeconfig)),
                               task_queue=task_queue)
            yield Env(sim, client, task_queue, sdk, dev_server,
                      tmp_path_factory.mktemp("cli-home"))
            sdk.close()
    cluster.close()
    sim.process.stop()


async def eventually(check: Callable[[], Awaitable[T | None]], what: str,
                     timeout: float = 20.0) -> T:
    """Poll `check` until it returns something (visibility is eventually consistent)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def idle(env: Env, name: str) -> None:
    """Wait until the schedule knows its last run has ended (so a trigger is not skipped)."""
    async def check() -> bool | None:
        return True if not (await env.vmsnap.get_schedule(NS, name, run_status=0)).running \
            else None
    await eventually(check, f"schedule {name} to be idle")


async def run_schedule(env: Env, name: str) -> Any:
    await idle(env, name)
    workflow_id = await env.vmsnap.trigger_schedule(NS, name)
    assert workflow_id is not None
    return await env.vmsnap.scheduled_run_result(workflow_id)


def volume_snapshots_of(env: Env, snapshot: str) -> list[str]:
    listed = json.loads(env.sim.kubectl("get", "volumesnapshots", "-n", NS, "-o", "json", "-l",
                                        f"vmsnap.io/snapshot={snapshot}").stdout)
    return [item["metadata"]["name"] for item in listed["items"]]


async def scheduled(env: Env, schedule: str, vm: str) -> list[str]:
    infos = await env.vmsnap.list_snapshots(NS, vm=vm, schedule=schedule)
    return [i.name for i in infos]


# ---- retention over several runs ----------------------------------------------------------


async def test_runs_snapshot_the_selected_vms_and_prune_beyond_keep(env: Env) -> None:
    sdk = env.vmsnap
    manual = await sdk.snapshot(SnapshotVirtualMachineInput(namespace=NS, vm="web-1",
                                                            name="web-1-manual"))
    assert manual.ready_to_use
    await sdk.create_schedule(
        ScheduledSnapshotInput(schedule="rotate", namespace=NS, selector="app in (web, db)",
                               keep=2),
        ScheduleTiming(cron="0 2 1 1 *"))

    first = await run_schedule(env, "rotate")
    assert [o.vm for o in first.vms] == ["db-1", "web-1"]
    assert all(o.phase == "Succeeded" and o.ready_to_use and not o.pruned for o in first.vms)
    by_vm = {o.vm: o for o in first.vms}
    assert by_vm["web-1"].indications == ["Online", "GuestAgent"]
    assert by_vm["db-1"].indications == ["Online", "NoGuestAgent"]
    made = {vm: [by_vm[vm].snapshot] for vm in by_vm}

    for _ in range(2):
        run = await run_schedule(env, "rotate")
        for outcome in run.vms:
            made[outcome.vm].append(outcome.snapshot)
    third = {o.vm: o for o in run.vms}
    for vm in ("web-1", "db-1"):  # the third run pruned the first snapshot, and only it
        assert third[vm].pruned == [made[vm][0]], third[vm]
        assert await scheduled(env, "rotate", vm) == made[vm][1:]
        assert volume_snapshots_of(env, made[vm][0]) == []
    assert (await sdk.get_snapshot(NS, "web-1-manual")).phase == "Succeeded"  # not the schedule's

    # A failed snapshot of the schedule (a run of it that requires a freeze, which db-1's
    # guest cannot give): kept while newer than the newest good one. A client cannot hand
    # a snapshot to a schedule: the label is reserved, and only a schedule's run names it.
    await asyncio.sleep(1.1)  # generated names carry whole seconds
    with pytest.raises(WorkflowFailureError) as failed:
        await env.client.execute_workflow(
            "ScheduledVirtualMachineSnapshots",
            {"schedule": "rotate", "namespace": NS, "vm": "db-1", "keep": 100,
             "quiesce": "required"},
            id=f"rotate-required-{uuid.uuid4().hex[:6]}", task_queue=env.task_queue)
    assert isinstance(failed.value.cause, ApplicationError)
    [outcome] = failed.value.cause.details[0]["vms"]
    assert outcome["error_type"] == "QuiesceRequired" and not outcome["pruned"]
    failed_snapshot = outcome["snapshot"]
    assert (await sdk.get_snapshot(NS, failed_snapshot)).phase == "Failed"
    with pytest.raises(SnapshotFailed):  # and a client naming the schedule is refused
        await (await sdk.start_snapshot(SnapshotVirtualMachineInput(
            namespace=NS, vm="db-1", name="db-1-handed-over", schedule="rotate"),
            check=False)).result()
    # Records keep whole seconds; in a tie retention keeps the failure (it cannot tell
    # which came first), so let the next snapshot be visibly newer.
    await asyncio.sleep(1.1)

    fourth = {o.vm: o for o in (await run_schedule(env, "rotate")).vms}
    for vm in ("web-1", "db-1"):
        made[vm].append(fourth[vm].snapshot)
    assert fourth["web-1"].pruned == [made["web-1"][1]]
    assert fourth["db-1"].pruned == [made["db-1"][1], failed_snapshot]  # oldest first
    for vm in ("web-1", "db-1"):
        assert await scheduled(env, "rotate", vm) == made[vm][2:]
    assert (await sdk.get_snapshot(NS, "web-1-manual")).ready_to_use

    # Every run, snapshot and deletion of db-1 is found by VM in Temporal visibility.
    async def db_runs() -> list[Any] | None:
        runs = await sdk.list_runs(NS, vm="db-1")
        ids = {r.workflow_id for r in runs}
        cluster = await sdk.cluster_id()
        wanted = {f"snapshot/{cluster}/{NS}/{s}" for s in made["db-1"]} | {
            f"delete-snapshot/{cluster}/{NS}/{made['db-1'][0]}",
            f"delete-snapshot/{cluster}/{NS}/{failed_snapshot}"}
        return runs if wanted <= ids else None

    runs = await eventually(db_runs, "db-1's runs in visibility")
    assert {r.vm for r in runs} == {"db-1"}
    assert {r.operation for r in runs} == {"snapshot", "delete"}
    await sdk.delete_schedule(NS, "rotate")


# ---- pause --------------------------------------------------------------------------------


async def test_a_paused_schedule_starts_nothing_until_unpaused(env: Env) -> None:
    sdk = env.vmsnap
    with pytest.raises(ObjectNotFound, match=r"^VirtualMachine demo/nope not found$"):
        await sdk.create_schedule(
            ScheduledSnapshotInput(schedule="ghost", namespace=NS, vm="nope", keep=1),
            ScheduleTiming(every=3600))
    request = ScheduledSnapshotInput(schedule="often", namespace=NS, vm="batch-1", keep=1)
    created = await sdk.create_schedule(request, ScheduleTiming(every=1), paused=True)
    assert created.paused and created.vm == "batch-1" and created.keep == 1
    await asyncio.sleep(2.5)
    assert (await sdk.get_schedule(NS, "often")).actions == 0

    await sdk.unpause_schedule(NS, "often")

    async def started() -> int | None:
        actions = (await sdk.get_schedule(NS, "often", run_status=0)).actions
        return actions or None

    await eventually(started, "a run after unpausing", timeout=15)
    await sdk.pause_schedule(NS, "often", note="maintenance")
    await idle(env, "often")
    paused = await sdk.get_schedule(NS, "often")
    assert paused.paused and paused.note == "maintenance"
    await asyncio.sleep(2.5)
    assert (await sdk.get_schedule(NS, "often")).actions == paused.actions
    await sdk.delete_schedule(NS, "often")
    assert await scheduled(env, "often", "batch-1")  # its snapshots outlive the schedule


# ---- the CLI ----------------------------------------------------------------------------------


async def vmsnap(env: Env, *args: str) -> tuple[int, str, str]:
    """A real `vmsnap` process against the dev server and the simulator."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("TEMPORAL_", "VMSNAP_", "KUBE"))}
    environ.update(HOME=str(env.home), KUBECONFIG=str(env.sim.kubeconfig),
                   TEMPORAL_ADDRESS=env.dev_server.address,
                   TEMPORAL_NAMESPACE=env.dev_server.namespace,
                   VMSNAP_TASK_QUEUE=env.task_queue)
    process = await asyncio.create_subprocess_exec(
        str(VMSNAP), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environ)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(), err.decode()


async def test_schedules_from_the_cli(env: Env) -> None:
    code, out, err = await vmsnap(env, "schedule", "create", "cli-nightly", "--vm", "legacy-1",
                                  "--cron", "0 2 * * *", "--jitter", "5m", "--keep", "1",
                                  "-n", NS)
    assert code == 0, err
    assert "schedule demo/cli-nightly created" in out and "keep 1" in out

    code, _, err = await vmsnap(env, "schedule", "create", "cli-nightly", "--vm", "legacy-1",
                                "--every", "1h", "--keep", "1", "-n", NS)
    assert (code, err.strip()) == (1, "error: schedule demo/cli-nightly already exists")

    async def listed() -> list[Any] | None:
        code, out, err = await vmsnap(env, "schedule", "list", "-n", NS, "-o", "json")
        assert code == 0, err
        found = [s for s in json.loads(out) if s["name"] == "cli-nightly"]
        return found or None

    [shown] = await eventually(listed, "the schedule in the list")
    assert shown["vm"] == "legacy-1" and shown["keep"] == 1 and not shown["paused"]
    assert shown["timing"] == {"cron": "0 2 * * *", "every": None, "jitter": 300.0,
                               "time_zone": None}

    for _ in range(2):
        code, out, err = await vmsnap(env, "schedule", "trigger", "cli-nightly", "--wait",
                                      "-n", NS, "-o", "json")
        assert code == 0, err
        result = json.loads(out)
        [outcome] = result["vms"]
        assert outcome["vm"] == "legacy-1" and outcome["phase"] == "Succeeded"
        assert outcome["indications"] == ["Online", "GuestAgent", "PartialSnapshot"]
        await idle(env, "cli-nightly")
    assert len(outcome["pruned"]) == 1  # keep 1: the second run pruned the first
    assert await scheduled(env, "cli-nightly", "legacy-1") == [outcome["snapshot"]]

    code, out, err = await vmsnap(env, "schedule", "pause", "cli-nightly", "-n", NS,
                                  "--note", "upgrade")
    assert code == 0 and "paused" in out, err
    code, out, err = await vmsnap(env, "schedule", "get", "cli-nightly", "-n", NS, "-o", "yaml")
    got = yaml.safe_load(out)
    assert got["paused"] is True and got["note"] == "upgrade" and got["actions"] == 2
    assert [r["status"] for r in got["recent_runs"]] == ["COMPLETED", "COMPLETED"]
    code, out, err = await vmsnap(env, "schedule", "delete", "cli-nightly", "-n", NS)
    assert code == 0 and "deleted" in out, err
    code, _, err = await vmsnap(env, "schedule", "get", "cli-nightly", "-n", NS)
    assert (code, err.strip()) == (1, "error: schedule demo/cli-nightly not found")


async def test_the_scheduled_workflow_takes_plain_json_from_the_temporal_cli(env: Env) -> None:
    document = {"schedule": "by-hand", "namespace": NS, "vm": "paused-1", "keep": 3,
                "failure_deadline": "2m", "quiesce": "auto"}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "temporal"), "workflow", "start",
        "--address", env.dev_server.address, "--namespace", env.dev_server.namespace,
        "--type", "ScheduledVirtualMachineSnapshots", "--task-queue", env.task_queue,
        "--workflow-id", "scheduled-snapshot/demo/by-hand-manual",
        "--input", json.dumps(document),
        # Started with vmsnap's attributes, the run keeps the others current (one started
        # without is left unfiltered: it cannot tell whether they are registered); the
        # cluster's is what `vmsnap runs` lists by.
        "--search-attribute", f'VmNamespace="{NS}"',
        "--search-attribute", f'VmsnapCluster="{await env.vmsnap.cluster_id()}"',
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result = await env.vmsnap.scheduled_run_result("scheduled-snapshot/demo/by-hand-manual")
    [outcome] = result.vms
    assert outcome.vm == "paused-1" and outcome.phase == "Succeeded"
    assert outcome.indications == ["Online", "GuestAgent", "Paused"]
    assert await scheduled(env, "by-hand", "paused-1") == [outcome.snapshot]

    async def found() -> list[Any] | None:
        runs = await env.vmsnap.list_runs(NS, vm="paused-1", operation="schedule")
        return runs or None

    [run] = await eventually(found, "the run by its search attributes")
    assert run.workflow_id == "scheduled-snapshot/demo/by-hand-manual"
