"""An API server that fails 10% of requests (500, 429, timeouts) and answers writes with
conflicts, over many snapshots: none lost, none made twice, nothing left behind, no guest
left frozen."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.faults.conftest import (
    Background,
    FaultStack,
    Outcome,
    StartFaultStack,
    background_scenario,
    outcome,
    outcomes,
    scale,
    wait_thawed,
)
from tests.faults.invariants import check_invariants, freeze_violations, snapshot_phases
from tests.faults.seeds import VmSeed

VMS = scale(10, 50)
PER_VM = scale(1, 2)  # one after the other on each VM (the lock allows one at a time)
DISKS = 2
VM_SEEDS = [VmSeed(f"api-{i}", disks=DISKS) for i in range(VMS)]

FAULTS: dict[str, Any] = {"seed": 10, "rules": [
    {"error": 500, "rate": 0.034},
    {"error": 429, "rate": 0.034, "retryAfter": "1s"},
    {"error": "timeout", "hold": "1s", "rate": 0.034},
    # write conflicts, on object writes (a freeze/unfreeze PUT is not an object write)
    {"verb": "patch", "subresource": "", "error": 409, "rate": 0.1},
    {"verb": "update", "subresource": "", "error": 409, "rate": 0.1},
    {"verb": "patch", "subresource": "status", "error": 409, "rate": 0.1},
]}  # fmt: skip


@dataclass
class ApiFaultRun:
    stack: FaultStack
    ends: dict[tuple[str, str], Outcome]
    elapsed: float
    fired: list[dict[str, Any]]


@background_scenario(__file__)
async def snapshots_under_api_faults(start: StartFaultStack) -> ApiFaultRun:
    stack = await asyncio.to_thread(start, VM_SEEDS)
    await asyncio.to_thread(stack.sim.set_faults, FAULTS)
    started = time.monotonic()
    ends = {}
    for index in range(PER_VM):
        handles = {(vm.namespace, f"s{index}"): await stack.start_snapshot(vm.namespace,
                                                                           f"s{index}")
                   for vm in VM_SEEDS}
        ends.update(await outcomes(handles, timeout=240))
    elapsed = time.monotonic() - started
    fired = (await asyncio.to_thread(stack.sim.request, "GET", "/sim/faults"))["rules"]
    await asyncio.to_thread(stack.sim.clear_faults)
    return ApiFaultRun(stack, ends, elapsed, fired)


async def test_snapshots_under_api_faults(background: Background) -> None:
    run: ApiFaultRun = await background.result(snapshots_under_api_faults, timeout=300)
    stack, ends, fired = run.stack, run.ends, run.fired
    print(f"{len(ends)} snapshots in {run.elapsed:.1f}s; faults fired/matched:",
          [(r.get("error"), r.get("verb"), r["fired"], r["matched"]) for r in fired])
    print(Counter((e.status, e.error_type) for e in ends.values()))
    assert all(r["fired"] > 0 for r in fired[:3]), fired
    failed = {key: end for key, end in ends.items() if end.status != "completed"}
    assert not failed, failed
    phases = snapshot_phases(stack.sim)
    assert {key: phases.get(key) for key in ends} == dict.fromkeys(ends, "Succeeded")
    await wait_thawed(stack.sim, 3)
    check_invariants(stack.sim, expect_succeeded=dict.fromkeys(ends, DISKS))


async def test_a_conflict_on_the_unfreeze_leaves_no_guest_frozen(
    start_fault_stack: StartFaultStack
) -> None:
    stack = start_fault_stack([VmSeed("unfreeze-409")])
    stack.sim.set_faults({"rules": [{"resource": "virtualmachineinstances",
                                     "subresource": "unfreeze", "error": 409, "count": 1}]})
    end = await outcome(await stack.start_snapshot("unfreeze-409", "s"), timeout=60)
    stack.sim.clear_faults()
    assert end.status == "completed", end
    await wait_thawed(stack.sim, 3)
    assert not freeze_violations(stack.sim)
    check_invariants(stack.sim, expect_succeeded={("unfreeze-409", "s"): 1})
