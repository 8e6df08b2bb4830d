"""Record a history of every case in tests/replay/cases.py through the real worker.

    .venv/bin/python -m tests.replay.record_histories [--out DIR]

Starts a Temporal dev server, a simulator on tests/replay/seed.yaml and `worker.py` as
real processes, starts each case the way vmsnap's SDK does (with its search attributes;
a schedule's run through a Temporal Schedule), waits for it to close, and writes its
history as JSON (default: tests/replay/histories/). A case that ends otherwise than
cases.py says fails the recording and nothing is written. Each history is compared
with the one it replaces: the shape (the sequence of event types) should only change
when a workflow was changed on purpose.

Run it after an intended change to a workflow's commands, review the shape changes it
prints, and commit the histories with the change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecution,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

import contracts.clone as clone
import contracts.delete_snapshot as delete_snapshot
import contracts.restore as restore
import contracts.schedule as schedule
import contracts.snapshot as snapshot
import contracts.sweep as sweep
import rules.naming as naming
from starter.connection import connect, load_connection_settings
from starter.local_stack import (
    ManagedProcess,
    start_dev_server,
    start_simulator,
    start_worker,
)
from tests.replay.cases import CASES, CLOSING_EVENTS, HISTORIES, Case, load, summary
from workflows.scheduled import child_search_attributes

SEED = Path(__file__).parent / "seed.yaml"
NS = "replay"
TASK_QUEUE = "vmsnap"
CLUSTER = "replay"  # the worker's VMSNAP_CLUSTER_ID: in every workflow ID
WAIT = 120.0  # seconds for any one run, or for a run to reach a step


@dataclass(frozen=True)
class Run:
    """One workflow execution to export."""

    workflow_id: str
    run_id: str | None


class Recorder:
    """Starts the cases against one stack as vmsnap's SDK and CLI start them (the
    workflow IDs of rules.naming, USE_EXISTING, the search attributes the workflows
    then keep current); each case returns the run to export."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def handle(self, run: Run) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(run.workflow_id, run_id=run.run_id)

    async def closed(self, run: Run) -> Run:
        """Wait until the run has closed, whichever way."""
        with contextlib.suppress(WorkflowFailureError):
            await asyncio.wait_for(self.handle(run).result(), WAIT)
        return run

    async def start(self, workflow: str, request: BaseModel, workflow_id: str, vm: str,
                    operation: str) -> Run:
        handle = await self.client.start_workflow(
            workflow, request, id=workflow_id, task_queue=TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=child_search_attributes(NS, vm, operation))
        return Run(handle.id, handle.first_execution_run_id)

    async def start_snapshot(self, vm: str, name: str, **fields: object) -> Run:
        request = snapshot.SnapshotVirtualMachineInput.model_validate(
            {"namespace": NS, "vm": vm, "name": name, **fields})
        return await self.start(snapshot.WORKFLOW, request,
                                snapshot.snapshot_workflow_id(CLUSTER, NS, name), vm, "snapshot")

    async def snapshot(self, vm: str, name: str, **fields: object) -> Run:
        return await self.closed(await self.start_snapshot(vm, name, **fields))

    async def start_restore(self, snapshot: str, vm: str, **fields: object) -> Run:
        """A restore of `snapshot` (taken of `vm`): in place, or to `target` if given."""
        request = restore.RestoreVirtualMachineInput.model_validate(
            {"namespace": NS, "snapshot": snapshot, **fields})
        target = request.target or vm
        return await self.start(restore.WORKFLOW, request,
                                naming.restore_workflow_id(CLUSTER, NS, target), target, "restore")

    async def clone(self, target: str, vm: str, **fields: object) -> Run:
        request = clone.CloneVirtualMachineInput.model_validate(
            {"namespace": NS, "target": target, **fields})
        return await self.closed(await self.start(
            clone.WORKFLOW, request, naming.clone_workflow_id(CLUSTER, NS, target), vm, "clone"))

    async def cancel_in_activity(self, run: Run, activity: str) -> Run:
        """Cancel the run once `activity` has started and sent a heartbeat, so that the
        history always shows the same thing: a started activity told to stop."""
        handle = self.handle(run)
        deadline = time.monotonic() + WAIT
        while not await self._activity_started(handle, activity):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{run.workflow_id} never started {activity}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # past the first heartbeat (throttled to one a second)
        await handle.cancel()
        return await self.closed(run)

    async def trigger(self, schedule: ScheduleHandle) -> Run:
        """Run the schedule now, once its last run has ended; the run it started."""
        deadline = time.monotonic() + WAIT
        while (described := await schedule.describe()).info.running_actions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"schedule {schedule.id} never went idle")
            await asyncio.sleep(0.2)
        seen = set(_runs(a.action for a in described.info.recent_actions))
        await schedule.trigger(overlap=ScheduleOverlapPolicy.SKIP)
        while True:
            info = (await schedule.describe()).info
            started = _runs([*info.running_actions, *(a.action for a in info.recent_actions)])
            new = [run for run in started if run not in seen]
            if new:
                return await self.closed(new[0])
            if time.monotonic() > deadline:
                raise RuntimeError(f"schedule {schedule.id} started no run")
            await asyncio.sleep(0.2)

    @staticmethod
    async def _activity_started(handle: WorkflowHandle[Any, Any], activity: str) -> bool:
        described = await handle.describe()
        return any(p.activity_type.name == activity
                   and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                   for p in described.raw_description.pending_activities)


def _runs(actions: Iterable[ScheduleActionExecution]) -> list[Run]:
    """The runs a schedule started (by run too: runs triggered within one second share
    their workflow ID)."""
    return [Run(a.workflow_id, a.first_execution_run_id) for a in actions
            if isinstance(a, ScheduleActionExecutionStartWorkflow)]


# ---- the cases, in the order of cases.CASES ---------------------------------------------------


async def snapshot_succeeded(r: Recorder) -> Run:
    return await r.snapshot("web", "web-1")


async def restore_in_place_succeeded(r: Recorder) -> Run:
    return await r.closed(await r.start_restore("web-1", "web", running_vm_policy="stop"))


async def restore_new_vm_succeeded(r: Recorder) -> Run:
    return await r.closed(await r.start_restore("web-1", "web", target="web-restored"))


async def clone_from_snapshot_succeeded(r: Recorder) -> Run:
    return await r.clone("web-clone", "web", source_snapshot="web-1",
                         new_smbios_serial="serial-2")


async def clone_from_vm_succeeded(r: Recorder) -> Run:
    return await r.clone("web-clone-vm", "web", source_vm="web")


async def clone_failed_unknown_interface(r: Recorder) -> Run:
    """A MAC for an interface the VM lacks is refused at the VM step, after the PVCs."""
    return await r.clone("web-clone-bad", "web", source_snapshot="web-1",
                         new_mac_addresses={"nosuch": "02:00:00:00:00:01"})


async def delete_snapshot_succeeded(r: Recorder) -> Run:
    request = delete_snapshot.DeleteVirtualMachineSnapshotInput(namespace=NS, name="web-1")
    return await r.closed(await r.start(
        delete_snapshot.WORKFLOW, request, naming.delete_snapshot_workflow_id(CLUSTER, NS, "web-1"),
        "web", "delete"))


async def scheduled_run_succeeded(r: Recorder) -> Run:
    """The second run of a paused schedule, triggered: it snapshots and prunes (keep 1)."""
    request = schedule.ScheduledSnapshotInput(schedule="nightly", namespace=NS, vm="web",
                                              keep=1)
    handle = await r.client.create_schedule(
        schedule.schedule_id(CLUSTER, NS, "nightly"),
        Schedule(
            action=ScheduleActionStartWorkflow(
                schedule.WORKFLOW, request, id=schedule.scheduled_workflow_id(CLUSTER, NS,
                                                                              "nightly"),
                task_queue=TASK_QUEUE,
                typed_search_attributes=child_search_attributes(NS, "web", "schedule")),
            spec=ScheduleSpec(cron_expressions=["0 3 * * *"]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(paused=True, note="runs only when triggered")))
    await r.trigger(handle)
    # A run's snapshots are named after its start to the second: the next run starts
    # in a later second, or its snapshot would find the first one's name taken.
    await asyncio.sleep(1.1)
    return await r.trigger(handle)


async def snapshot_failed_no_eligible_volume(r: Recorder) -> Run:
    return await r.snapshot("scratch", "scratch-1")


async def snapshot_failed_freeze(r: Recorder) -> Run:
    return await r.snapshot("quiet", "quiet-1", quiesce="required")


async def snapshot_deadline_exceeded(r: Recorder) -> Run:
    return await r.snapshot("stuck", "stuck-1", failure_deadline="3s")


async def snapshot_canceled_while_cutting(r: Recorder) -> Run:
    run = await r.start_snapshot("stuck", "stuck-2", failure_deadline="0")
    return await r.cancel_in_activity(run, snapshot.FREEZE_AND_CUT.name)


async def restore_failed_pvcs_not_bound(r: Recorder) -> Run:
    """`slow`'s class binds new PVCs after an hour: the wait gives up, the saga undoes."""
    await r.snapshot("slow", "slow-1")
    return await r.closed(await r.start_restore("slow-1", "slow", running_vm_policy="stop",
                                                bound_wait=2))


async def restore_canceled_while_pvcs_bind(r: Recorder) -> Run:
    run = await r.start_restore("slow-1", "slow", running_vm_policy="stop", bound_wait=120)
    return await r.cancel_in_activity(run, restore.WAIT_RESTORED_PVCS_BOUND.name)


async def sweep_succeeded(r: Recorder) -> Run:
    handle = await r.client.start_workflow(
        sweep.WORKFLOW, sweep.SweepOrphansInput(namespaces=[NS]),
        id=sweep.sweep_workflow_id(CLUSTER, [NS], False), task_queue=TASK_QUEUE)
    return await r.closed(Run(handle.id, handle.first_execution_run_id))


RECORDINGS: dict[str, Callable[[Recorder], Awaitable[Run]]] = {
    "snapshot-succeeded": snapshot_succeeded,
    "restore-in-place-succeeded": restore_in_place_succeeded,
    "restore-new-vm-succeeded": restore_new_vm_succeeded,
    "clone-from-snapshot-succeeded": clone_from_snapshot_succeeded,
    "clone-from-vm-succeeded": clone_from_vm_succeeded,
    "clone-failed-unknown-interface": clone_failed_unknown_interface,
    "delete-snapshot-succeeded": delete_snapshot_succeeded,
    "scheduled-run-succeeded": scheduled_run_succeeded,
    "snapshot-failed-no-eligible-volume": snapshot_failed_no_eligible_volume,
    "snapshot-failed-freeze": snapshot_failed_freeze,
    "snapshot-deadline-exceeded": snapshot_deadline_exceeded,
    "snapshot-canceled-while-cutting": snapshot_canceled_while_cutting,
    "restore-failed-pvcs-not-bound": restore_failed_pvcs_not_bound,
    "restore-canceled-while-pvcs-bind": restore_canceled_while_pvcs_bind,
    "sweep-succeeded": sweep_succeeded,
}


# ---- recording ------------------------------------------------------------------------------


def render(exported: str) -> str:
    """The history as the SDK exports it, one event a line: small, and a diff shows
    which events changed."""
    events = json.loads(exported)["events"]
    lines = ",\n".join(json.dumps(e, separators=(",", ":")) for e in events)
    return f'{{"events": [\n{lines}\n]}}\n'


def check(case: Case, history: str) -> None:
    """The run ended as the case says, else the recording is wrong (not the workflow)."""
    workflow_type, closing, error_type = summary(json.loads(history))
    expected = (case.workflow_type, CLOSING_EVENTS[case.outcome], case.error_type)
    if (workflow_type, closing, error_type) != expected:
        raise RuntimeError(f"{case.name}: ended as {(workflow_type, closing, error_type)}, "
                           f"expected {expected}")


def shape_change(history: str, previous: Path) -> str:
    """How the new history's event types compare with the one it replaces."""
    new = [e["eventType"] for e in json.loads(history)["events"]]
    if not previous.exists():
        return f"new, {len(new)} events"
    old = [e["eventType"] for e in load(previous)["events"]]
    if old == new:
        return f"same shape, {len(new)} events"
    return f"shape changed: {len(old)} -> {len(new)} events"


async def record(out: Path, state: Path) -> None:
    """Run every case on a fresh stack; write the histories only when all ended right."""
    if set(RECORDINGS) != {c.name for c in CASES}:
        raise RuntimeError("cases.CASES and RECORDINGS name different cases")
    processes: list[ManagedProcess] = []
    server = start_dev_server(state / "temporal")
    processes.append(server.process)
    try:
        sim = start_simulator(state / "sim", [SEED], name="sim")
        processes.append(sim.process)
        worker = start_worker(state / "worker", server.address, sim.kubeconfig,
                              task_queue=TASK_QUEUE,
                              extra_env={"VMSNAP_SWEEPER_SCHEDULE": "off",
                                         "VMSNAP_CLUSTER_ID": CLUSTER})
        processes.append(worker)
        client = await connect(load_connection_settings(address=server.address,
                                                        namespace=server.namespace))
        recorder = Recorder(client)
        recorded: dict[str, str] = {}
        for case in CASES:
            began = time.monotonic()
            run = await RECORDINGS[case.name](recorder)
            history = render((await recorder.handle(run).fetch_history()).to_json())
            check(case, history)
            recorded[case.name] = history
            print(f"{case.name}: {time.monotonic() - began:.1f}s, "
                  f"{shape_change(history, out / f'{case.name}.json')}", flush=True)
    except (RuntimeError, RPCError, TimeoutError):
        for process in processes:
            print(f"--- {process.name} ({process.log_path})\n{process.log_tail(20)}",
                  file=sys.stderr)
        raise
    finally:
        for process in reversed(processes):
            process.stop()
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(set(out.glob("*.json")) - {out / f"{n}.json" for n in recorded}):
        print(f"removed {stale.name}: no such case")
        stale.unlink()
    for name, history in recorded.items():
        (out / f"{name}.json").write_text(history)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HISTORIES,
                        help="where to write the histories (default: %(default)s)")
    args = parser.parse_args(argv)
    # Sealed payloads would make the histories unreadable without the key.
    for variable in ("VMSNAP_CODEC_KEY", "VMSNAP_CODEC_KEY_FILE"):
        os.environ.pop(variable, None)
    state = Path(tempfile.mkdtemp(prefix="vmsnap-record-"))
    asyncio.run(record(args.out, state))
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
