"""Storage that never cuts, never gets ready or fails, and guest agents that fail to freeze or
disconnect mid-snapshot: each run ends in its documented terminal state and leaves nothing
behind (checked on the simulator), all scenarios on one stack at once, in the background
(conftest) while the other tests run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.faults.conftest import (
    Background,
    FaultStack,
    Outcome,
    StartFaultStack,
    background_scenario,
    outcomes,
    request_matcher,
    wait_thawed,
)
from tests.faults.invariants import check_invariants, freeze_violations, snapshot_phases
from tests.faults.seeds import SIM, VmSeed

FAIL = SIM + "fail"
CUT_LATENCY = SIM + "cut-latency"

VMS = [
    VmSeed("never-cut", disks=2, disk_annotations={1: {FAIL: "never-cut"}}),
    VmSeed("never-ready", disks=2, disk_annotations={0: {FAIL: "never-ready"}}),
    VmSeed("storage-error", disks=2, disk_annotations={1: {FAIL: "error"}}),
    VmSeed("freeze-fails-auto", guest_agent="freeze-fails"),
    VmSeed("freeze-fails-required", guest_agent="freeze-fails"),
    VmSeed("agent-drops", disks=2, disk_annotations={0: {CUT_LATENCY: "4s"}}),
]


@dataclass
class StorageGuestRun:
    stack: FaultStack
    ends: dict[str, Outcome]


@background_scenario(__file__)
async def storage_and_guest_agent_faults(start: StartFaultStack) -> StorageGuestRun:
    stack = await asyncio.to_thread(start, VMS)
    runs = {
        "never-cut": await stack.start_snapshot("never-cut", "s", failure_deadline="3s"),
        "never-ready": await stack.start_snapshot("never-ready", "s", ready_deadline="3s"),
        "storage-error": await stack.start_snapshot("storage-error", "s", failure_deadline="3s"),
        "freeze-fails-auto": await stack.start_snapshot("freeze-fails-auto", "s"),
        "freeze-fails-required": await stack.start_snapshot(
            "freeze-fails-required", "s", quiesce="required"),
        "agent-drops": await stack.start_snapshot("agent-drops", "s", failure_deadline="10s"),
    }
    # The agent disconnects while the guest is frozen, waiting for the slow disk's cut.
    await stack.wait_for_request(request_matcher("update", "virtualmachineinstances",
                                                 "agent-drops", "freeze"))
    await asyncio.to_thread(stack.sim.kubectl, "-n", "agent-drops", "annotate", "--overwrite",
                            "vm/vm", f"{SIM}guest-agent=absent")
    return StorageGuestRun(stack, await outcomes(runs, timeout=45))


async def test_storage_and_guest_agent_faults(background: Background) -> None:
    run: StorageGuestRun = await background.result(storage_and_guest_agent_faults, timeout=240)
    stack, ends = run.stack, run.ends
    print({k: (v.status, v.error_type, v.message[:200]) for k, v in ends.items()})
    phases = snapshot_phases(stack.sim)

    assert (ends["never-cut"].status, ends["never-cut"].error_type) == (
        "failed", "SnapshotDeadlineExceeded"), ends["never-cut"]
    assert phases[("never-cut", "s")] == "Failed"
    assert (ends["never-ready"].status, ends["never-ready"].error_type) == (
        "failed", "SnapshotNotReady"), ends["never-ready"]
    assert phases[("never-ready", "s")] == "Succeeded"  # the cut is kept
    # status.error may clear again (the sidecar retries): the deadline decides, not the error.
    assert (ends["storage-error"].status, ends["storage-error"].error_type) == (
        "failed", "SnapshotDeadlineExceeded"), ends["storage-error"]
    assert phases[("storage-error", "s")] == "Failed"
    auto = ends["freeze-fails-auto"]
    assert auto.status == "completed" and auto.result is not None, auto
    assert "QuiesceFailed" in auto.result["indications"] and not auto.result["quiesced"]
    assert (ends["freeze-fails-required"].status, ends["freeze-fails-required"].error_type) == (
        "failed", "FreezeFailed"), ends["freeze-fails-required"]
    assert phases[("freeze-fails-required", "s")] == "Failed"
    # With the agent gone the unfreeze cannot succeed: the run fails and the guest thaws
    # itself at its unfreezeTimeout (bounded by the 10s deadline), which the freeze log shows.
    assert (ends["agent-drops"].status, ends["agent-drops"].error_type) == (
        "failed", "CutFailed"), ends["agent-drops"]
    assert phases[("agent-drops", "s")] == "Failed"
    [dropped] = [e for e in stack.sim.freeze_log() if e["namespace"] == "agent-drops"]
    assert 0 < dropped["unfreeze_timeout_seconds"] <= 10, dropped
    await wait_thawed(stack.sim, dropped["unfreeze_timeout_seconds"] + 3)
    [dropped] = [e for e in stack.sim.freeze_log() if e["namespace"] == "agent-drops"]
    assert dropped["thawed_by"] == "timeout", dropped
    assert not freeze_violations(stack.sim)
    check_invariants(stack.sim, expect_succeeded={("freeze-fails-auto", "s"): 1})
