"""kill -9 of the worker at each step boundary, then a new worker: every run ends correctly.

It runs in the background (see conftest) while the other fault tests run. All boundaries
are taken in one go, to keep the wall time down: every scenario runs in its
own namespace on one stack and is held open at its boundary (a simulator latency fault or a
slow disk), the test waits until the simulator shows each one there, checks that none has
left its boundary yet, and kills the worker once. A new worker is started at once; recovery
then waits on the activities' timeouts (lock step: 30 s start-to-close, no heartbeat; cut:
10 s heartbeat; readiness: 15 s heartbeat; restore/clone waits: 30 s heartbeat).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.naming import clone_workflow_id, restore_workflow_id
from tests.faults.conftest import (
    FAULTS_CLUSTER,
    Background,
    FaultStack,
    Outcome,
    StartFaultStack,
    background_scenario,
    outcome,
    outcomes,
    request_matcher,
    wait_thawed,
)
from tests.faults.invariants import check_invariants, list_all, snapshot_phases
from tests.faults.seeds import SIM, VmSeed

CUT = SIM + "cut-latency"
READY = SIM + "ready-latency"
HOLD = "8s"  # how long a boundary stays open: long enough for every scenario to reach its own

VMS = [
    VmSeed("k-record"),
    VmSeed("k-freeze", disks=2),
    VmSeed("k-partial", disks=4, disk_annotations={2: {CUT: "10s"}, 3: {CUT: "10s"}}),
    VmSeed("k-cut", disks=2, disk_annotations={0: {CUT: "10s"}, 1: {CUT: "10s"}}),
    VmSeed("k-ready", disks=2, disk_annotations={0: {READY: "12s"}, 1: {READY: "12s"}}),
    VmSeed("k-restore", storage_class="slowbind"),
    VmSeed("k-clone", storage_class="slowbind"),
]

HOLDS = [
    # the lock (a write to the VM) right after the record
    {"group": "kubevirt.io", "resource": "virtualmachines", "namespace": "k-record",
     "verb": "patch", "subresource": "", "latency": HOLD, "count": 1},
    {"group": "kubevirt.io", "resource": "virtualmachines", "namespace": "k-record",
     "verb": "update", "subresource": "", "latency": HOLD, "count": 1},
    # the VolumeSnapshot creates right after the freeze
    {"verb": "create", "resource": "volumesnapshots", "namespace": "k-freeze",
     "latency": HOLD, "count": 2},
]  # fmt: skip


def volume_snapshots(stack: FaultStack, namespace: str) -> list[dict[str, Any]]:
    return [vs for vs in list_all(stack.sim, "volumesnapshots")
            if vs["metadata"]["namespace"] == namespace]


def cut(vs: dict[str, Any]) -> bool:
    return bool((vs.get("status") or {}).get("creationTime"))


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        await asyncio.sleep(0.05)


@dataclass
class KillRun:
    stack: FaultStack
    ends: dict[str, Outcome]
    recovered_in: float


@background_scenario(__file__)
async def kill_at_every_boundary(start: StartFaultStack) -> KillRun:
    stack = await asyncio.to_thread(start, VMS)
    # Restore and clone need a ready snapshot first (their PVCs then bind slowly).
    for namespace in ("k-restore", "k-clone"):
        base = await outcome(await stack.start_snapshot(namespace, "base"), timeout=60)
        assert base.status == "completed", base
    await asyncio.to_thread(stack.sim.set_faults, {"seed": 6, "rules": HOLDS})

    runs = {
        namespace: await stack.start_snapshot(namespace, "s")
        for namespace in ("k-record", "k-freeze", "k-partial", "k-cut", "k-ready")
    }
    runs["k-restore"] = await stack.start(
        "RestoreVirtualMachine", restore_workflow_id(FAULTS_CLUSTER, "k-restore", "copy"),
        {"namespace": "k-restore", "snapshot": "base", "target": "copy"})
    runs["k-clone"] = await stack.start(
        "CloneVirtualMachine", clone_workflow_id(FAULTS_CLUSTER, "k-clone", "copy"),
        {"namespace": "k-clone", "source_snapshot": "base", "target": "copy"})

    def at_ready() -> bool:
        return snapshot_phases(stack.sim).get(("k-ready", "s")) == "Succeeded"

    boundaries: list[Awaitable[Any]] = [
        stack.wait_for_request(request_matcher("create", "vmsnapsnapshots", "k-record")),
        stack.wait_for_request(request_matcher("update", "virtualmachineinstances", "k-freeze",
                                               "freeze")),
        until(lambda: sum(map(cut, volume_snapshots(stack, "k-partial"))) == 2, "2 of 4 cut"),
        until(lambda: len(volume_snapshots(stack, "k-cut")) == 2, "k-cut creates"),
        until(at_ready, "k-ready Succeeded"),
        stack.wait_for_request(request_matcher("create", "persistentvolumeclaims", "k-restore")),
        stack.wait_for_request(request_matcher("create", "persistentvolumeclaims", "k-clone")),
    ]
    await asyncio.gather(*boundaries)
    await asyncio.to_thread(assert_inside_every_boundary, stack)
    killed_at = time.monotonic()
    stack.kill_workers()
    await asyncio.to_thread(stack.start_worker)
    ends = await outcomes(runs, timeout=120)
    recovered_in = time.monotonic() - killed_at
    await asyncio.to_thread(stack.sim.clear_faults)
    return KillRun(stack, ends, recovered_in)


def assert_inside_every_boundary(stack: FaultStack) -> None:
    """No scenario has left its boundary yet, as the simulator sees it (just before the kill)."""
    log = stack.sim.requests_log()
    assert not any(request_matcher("patch", "virtualmachines", "k-record")(e) or
                   request_matcher("update", "virtualmachines", "k-record")(e) for e in log)
    assert not any(request_matcher("create", "volumesnapshots", "k-freeze")(e) for e in log)
    assert sum(map(cut, volume_snapshots(stack, "k-partial"))) == 2
    assert not any(map(cut, volume_snapshots(stack, "k-cut")))
    assert not any((vs.get("status") or {}).get("readyToUse")
                   for vs in volume_snapshots(stack, "k-ready"))
    for namespace in ("k-restore", "k-clone"):
        restored = [p for p in list_all(stack.sim, "pvcs")
                    if p["metadata"]["namespace"] == namespace
                    and p["metadata"]["name"] != "vm-disk0"]
        assert restored and all((p.get("status") or {}).get("phase") != "Bound"
                                for p in restored), restored


async def test_kill_the_worker_at_every_step_boundary(background: Background) -> None:
    run: KillRun = await background.result(kill_at_every_boundary, timeout=240)
    stack, ends = run.stack, run.ends
    print(f"all runs ended {run.recovered_in:.1f}s after the kill")
    not_ok = {k: v for k, v in ends.items() if v.status != "completed"}
    assert not not_ok, not_ok
    for namespace in ("k-record", "k-freeze", "k-partial", "k-cut", "k-ready"):
        result = ends[namespace].result
        assert result is not None and result["phase"] == "Succeeded", (namespace, result)
        assert result["ready_to_use"], (namespace, result)
    for namespace in ("k-restore", "k-clone"):
        result = ends[namespace].result
        assert result is not None and result["phase"] == "Succeeded", (namespace, result)
        vm = stack.sim.request("GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/"
                                      "virtualmachines/copy")
        claims = [v["persistentVolumeClaim"]["claimName"]
                  for v in vm["spec"]["template"]["spec"]["volumes"]]
        assert claims and all(c != "vm-disk0" for c in claims), claims
    await wait_thawed(stack.sim, 5)
    for entry in stack.sim.freeze_log():  # what the guests paid for the kill, for the report
        print(entry["namespace"], entry["frozen_at"], entry["thawed_at"], entry["thawed_by"],
              entry["unfreeze_timeout_seconds"])
    check_invariants(stack.sim, expect_succeeded={
        ("k-record", "s"): 1, ("k-freeze", "s"): 2, ("k-partial", "s"): 4, ("k-cut", "s"): 2,
        ("k-ready", "s"): 2, ("k-restore", "base"): 1, ("k-clone", "base"): 1})


async def test_the_reported_freeze_window_covers_a_kill_while_frozen(
    background: Background
) -> None:
    run: KillRun = await background.result(kill_at_every_boundary, timeout=240)
    frozen = {e["namespace"]: e for e in run.stack.sim.freeze_log()}
    for namespace in ("k-freeze", "k-partial", "k-cut"):
        entry, result = frozen[namespace], run.ends[namespace].result
        assert result is not None and entry["thawed_at"] is not None
        paid = (datetime.fromisoformat(entry["thawed_at"].replace("Z", "+00:00"))
                - datetime.fromisoformat(entry["frozen_at"].replace("Z", "+00:00")))
        reported = result["freeze_window_ms"]
        assert reported is not None and reported >= paid.total_seconds() * 1000 - 50, (
            namespace, reported, paid)
