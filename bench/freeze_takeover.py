"""Freeze takeover benchmark: kill -9 of the worker holding a frozen guest, N times.

A 6-second cut (the simulator's `cut-latency` on the VM's disk) keeps the guest frozen
long enough to kill the worker that holds the cut at a random point of the freeze; a
second worker is already polling and takes the cut over (activities/cut.py). The figure
is the extra frozen time: how long the guest stayed frozen, as the simulator's guest
agent logged it (frozen to thawed), minus the cut. Each killed worker is replaced before
the next round, so two workers poll every time.

Runs a fresh stack of its own (dev server, simulator, two workers). The procedure
(`kill_during_freeze`) is shared with the fault suite (tests/faults/test_freeze_takeover.py).

    .venv/bin/python -m bench.freeze_takeover --kills 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from bench.aims import TAKEOVER_AIM_SECONDS
from bench.freeze_window import BENCH_CLUSTER, NS, seed_documents, vm_for
from bench.render.takeover import KEY, figures_table
from bench.report import record
from bench.stopping import stop_on_sigterm_as_on_ctrl_c
from rules.naming import snapshot_workflow_id
from starter.local_stack import ManagedProcess
from tests.support.sim import Sim

CUT_SECONDS = 6.0
CUT = "6s"
RESULT_TIMEOUT = 60.0


@dataclass
class Workers:
    """The worker processes serving the task queue, and how to start one more."""

    start: Callable[[], ManagedProcess]
    running: list[ManagedProcess] = field(default_factory=list)

    def ensure(self, count: int) -> None:
        self.running = [w for w in self.running if w.running()]
        while len(self.running) < count:
            self.running.append(self.start())

    def kill(self, pid: int) -> ManagedProcess:
        """kill -9 of the worker with this PID (one of ours, never by name)."""
        for worker in self.running:
            if worker.pid == pid:
                worker.kill()
                self.running.remove(worker)
                return worker
        raise LookupError(f"no worker of this stack has PID {pid}")

    def stop(self) -> None:
        for worker in self.running:
            worker.stop()


@dataclass
class Takeover:
    """One kill: when, after the freeze; what the guest paid; how the snapshot ended."""

    killed_after_s: float
    frozen_s: float | None  # the guest agent's freeze log: frozen to thawed
    extra_s: float | None  # frozen_s - the cut
    thawed_by: str | None
    phase: str | None
    indications: list[str]
    reported_window_ms: int | None


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _freeze_entry(sim: Sim, vm: str, after: int, timeout: float) -> dict[str, Any]:
    """The guest agent's log entry of the next freeze of `vm` (the log had `after` entries)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [e for e in (await asyncio.to_thread(sim.freeze_log))[after:]
                   if e["vmi"] == vm]
        if entries:
            return entries[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{vm} was not frozen within {timeout}s")
        await asyncio.sleep(0.01)


async def _cut_holder(handle: WorkflowHandle[Any, Any], timeout: float = 10.0) -> int:
    """The PID of the worker running the cut, from its identity (`pid@host`)."""
    deadline = time.monotonic() + timeout
    while True:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            identity = pending.last_worker_identity
            if pending.activity_type.name == "freeze_and_cut" and identity:
                return int(identity.split("@", 1)[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle.id}: no worker holds the cut")
        await asyncio.sleep(0.02)


async def kill_during_freeze(client: Client, sim: Sim, workers: Workers, task_queue: str,
                             namespace: str, vm: str, name: str, kill_after: float,
                             cut_seconds: float = CUT_SECONDS) -> Takeover:
    """Snapshot `vm`, kill -9 the cut's worker `kill_after` seconds into the freeze (two
    workers polling), measure what the guest paid, and replace the killed worker once the
    snapshot ends: the other worker takes over, and a replacement starting meanwhile on the
    same two cores (two processes importing at once) would only measure the host."""
    workers.ensure(2)
    before = len(await asyncio.to_thread(sim.freeze_log))
    handle = await client.start_workflow(
        "SnapshotVirtualMachine", {"namespace": namespace, "vm": vm, "name": name},
        id=snapshot_workflow_id(BENCH_CLUSTER, namespace, name), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    entry = await _freeze_entry(sim, vm, before, timeout=30)
    holder = await _cut_holder(handle)
    frozen_at = _when(entry["frozen_at"]).timestamp()
    await asyncio.sleep(max(0.0, frozen_at + kill_after - time.time()))
    await asyncio.to_thread(workers.kill, holder)
    killed_after = time.time() - frozen_at
    result: dict[str, Any] | None = None
    try:
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    except (WorkflowFailureError, TimeoutError):
        result = None
    await asyncio.to_thread(workers.ensure, 2)
    entry = next(e for e in (await asyncio.to_thread(sim.freeze_log))[before:]
                 if e["vmi"] == vm)
    frozen_s = extra_s = None
    if entry.get("thawed_at"):
        frozen_s = (_when(entry["thawed_at"]) - _when(entry["frozen_at"])).total_seconds()
        extra_s = frozen_s - cut_seconds
    return Takeover(killed_after_s=killed_after, frozen_s=frozen_s, extra_s=extra_s,
                    thawed_by=entry.get("thawed_by"),
                    phase=None if result is None else result.get("phase"),
                    indications=[] if result is None else list(result.get("indications", [])),
                    reported_window_ms=None if result is None
                    else result.get("freeze_window_ms"))


def describe(run: Takeover) -> str:
    extra = "never thawed" if run.extra_s is None else f"extra {run.extra_s * 1000:5.0f} ms"
    return (f"killed {run.killed_after_s:4.2f} s into the freeze: frozen "
            f"{(run.frozen_s or 0):5.2f} s, {extra}, thawed by {run.thawed_by}, "
            f"{run.phase}, reported window {run.reported_window_ms} ms")


def figures(runs: list[Takeover], seed: int) -> dict[str, Any]:
    extras = [r.extra_s if r.extra_s is not None else float("inf") for r in runs]
    return {
        "cut_s": CUT_SECONDS, "kills": len(runs), "seed": seed,
        "extra_median_ms": round(statistics.median(extras) * 1000, 1),
        "extra_worst_ms": round(max(extras) * 1000, 1),
        "succeeded": sum(1 for r in runs if r.phase == "Succeeded"),
        "quiesced": sum(1 for r in runs if r.phase == "Succeeded"
                        and "QuiesceTimeout" not in r.indications),
        "runs": [{"killed_after_s": round(r.killed_after_s, 3),
                  "extra_ms": None if r.extra_s is None else round(r.extra_s * 1000, 1),
                  "thawed_by": r.thawed_by, "phase": r.phase} for r in runs],
    }


async def benchmark(kills: int, seed: int, record_figures: bool) -> None:
    from starter.local_stack import start_dev_server, start_simulator, start_worker

    chooser = random.Random(seed)
    load_before = os.getloadavg()[0]
    runs: list[Takeover] = []
    with tempfile.TemporaryDirectory(prefix="vmsnap-bench-") as folder:
        state = Path(folder)
        seed_file = state / "seed.yaml"
        seed_file.write_text(yaml.safe_dump_all(seed_documents([1], cut=CUT), sort_keys=False))
        dev = start_dev_server(state / "temporal")
        simulator = None
        workers: Workers | None = None
        try:
            simulator = start_simulator(state / "sim", [seed_file], name="sim")
            sim = Sim(simulator, state / "sim")
            numbers = iter(range(10_000))

            def start() -> ManagedProcess:
                number = next(numbers)
                return start_worker(state / f"worker-{number}", dev.address, sim.kubeconfig,
                                    task_queue="bench", name=f"worker-{number}",
                                    extra_env={"VMSNAP_SWEEPER_SCHEDULE": "off",
                                               "VMSNAP_CLUSTER_ID": BENCH_CLUSTER})

            workers = Workers(start)
            client = await Client.connect(dev.address, namespace=dev.namespace)
            for index in range(kills):
                run = await kill_during_freeze(
                    client, sim, workers, "bench", NS, vm_for(1), f"takeover-{index}",
                    kill_after=chooser.uniform(0.0, CUT_SECONDS))
                print(f"  {index + 1:2}/{kills} {describe(run)}", flush=True)
                runs.append(run)
        finally:
            if workers is not None:
                workers.stop()
            if simulator is not None:
                simulator.stop()
            dev.stop()
    stored = figures(runs, seed)
    print(figures_table(stored))
    print(f"aim: at most {TAKEOVER_AIM_SECONDS:.0f} s extra, every time; load average "
          f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
          f"{os.cpu_count()} cores")
    if record_figures:
        record(KEY, f".venv/bin/python -m bench.freeze_takeover --kills {kills} --seed {seed}",
               stored, load_start=load_before)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1, help="of the random kill points")
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    args = parser.parse_args()
    stop_on_sigterm_as_on_ctrl_c()
    asyncio.run(benchmark(args.kills, args.seed, not args.no_record))
