"""Freeze window benchmark: snapshots of 1, 8 and 32 disks (200 ms cut each), one at a time.

Runs a fresh stack of its own (dev server, simulator on a generated seed with one
VM per disk count, worker) and snapshots each VM N times, one after the other.
Figures come from the simulator's own logs (freeze log, request log,
VolumeSnapshot creationTime), not from the workflow's word; the ratio window /
slowest cut is measured side by side in each run. The harness (`BenchStack`,
`snapshot_once`) is shared with bench/api_economy.py and bench/history_economy.py.

    .venv/bin/python -m bench.freeze_window --runs 20 --disks 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.render.freeze import KEY, figures_table
from bench.report import record
from bench.seeds import fleet_documents
from bench.stopping import stop_on_sigterm_as_on_ctrl_c
from contracts.snapshot import SnapshotVirtualMachineResult
from rules.naming import snapshot_workflow_id
from tests.support.sim import Sim

NS, CUT_MS, READY_MS = "bench", 200, 300
BENCH_CLUSTER = "bench"  # the worker's VMSNAP_CLUSTER_ID: in every workflow ID
CUT, READY = f"{CUT_MS}ms", f"{READY_MS}ms"


def vm_for(disks: int) -> str:
    return f"disks-{disks}"


def seed_documents(disk_counts: Iterable[int], cut: str = CUT, ready: str = READY,
                   copies: int = 1) -> list[dict[str, Any]]:
    """One namespace and CSI class (cut/ready latencies), and `copies` running VMs with
    agent per disk count, named `disks-D` (copy 0) and `disks-D-c` (copy c > 0)."""
    docs: list[dict[str, Any]] = []
    for disks in dict.fromkeys(disk_counts):
        for copy in range(copies):
            fleet = fleet_documents(1, disks, cut_latency=cut, ready_latency=ready)
            name = vm_for(disks) if copy == 0 else f"{vm_for(disks)}-{copy}"
            text = yaml.safe_dump_all(fleet).replace("vm-0000", name)
            made = list(yaml.safe_load_all(text))
            docs += made if not docs else [d for d in made
                                           if d["kind"] in ("PersistentVolumeClaim",
                                                            "VirtualMachine")]
    return docs


@dataclass
class Run:
    disks: int
    window_ms: float | None  # the simulator's freeze log: frozen at -> thawed at
    slowest_cut_ms: float  # the storage's part: create request -> creationTime, slowest disk
    after_last_cut_ms: float | None  # thawed at - the last VolumeSnapshot's creationTime
    reported_ms: int | None  # what the workflow measured and recorded
    requests: int  # Kubernetes API requests of the whole snapshot
    by_kind: Counter[str] = field(default_factory=Counter)  # "verb resource" -> count
    history_events: int = 0
    succeeded: bool = True


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def count_requests(log: list[dict[str, Any]]) -> Counter[str]:
    """Kubernetes requests of a request-log slice by `verb resource[/subresource]`; the
    simulator's own /sim/ paths are not Kubernetes requests and are left out."""
    counted: Counter[str] = Counter()
    for entry in log:
        if str(entry.get("path", "")).startswith("/sim/"):
            continue
        resource = str(entry.get("resource") or entry.get("path") or "?")
        if entry.get("subresource"):
            resource += f"/{entry['subresource']}"
        counted[f"{entry.get('verb') or entry.get('method') or '?'} {resource}"] += 1
    return counted


@dataclass
class BenchStack:
    sim: Sim
    client: Client
    task_queue: str


@contextlib.asynccontextmanager
async def bench_stack(docs: list[dict[str, Any]],
                      worker_env: dict[str, str] | None = None) -> AsyncIterator[BenchStack]:
    """Dev server, simulator on `docs`, worker.py: real processes, stopped by their PIDs."""
    from starter.local_stack import start_dev_server, start_simulator, start_worker

    with tempfile.TemporaryDirectory(prefix="vmsnap-bench-") as folder:
        state = Path(folder)
        seed = state / "seed.yaml"
        seed.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        started: list[Any] = []
        try:
            dev = start_dev_server(state / "temporal")
            started.append(dev)
            simulator = start_simulator(state / "sim", [seed], name="sim")
            started.append(simulator)
            sim = Sim(simulator, state / "sim")
            worker = start_worker(state / "worker", dev.address, sim.kubeconfig,
                                  task_queue="bench",
                                  extra_env={**(worker_env or {}),
                                             "VMSNAP_CLUSTER_ID": BENCH_CLUSTER})
            started.append(worker)
            client = await Client.connect(dev.address, namespace=dev.namespace,
                                          data_converter=pydantic_data_converter)
            yield BenchStack(sim, client, "bench")
        finally:
            for process in reversed(started):
                process.stop()


async def snapshot(stack: BenchStack, vm: str, name: str, namespace: str = NS,
                   **options: str) -> SnapshotVirtualMachineResult:
    handle = await stack.client.start_workflow(
        "SnapshotVirtualMachine", {"namespace": namespace, "vm": vm, "name": name, **options},
        id=snapshot_workflow_id(BENCH_CLUSTER, namespace, name), task_queue=stack.task_queue,
        result_type=SnapshotVirtualMachineResult)
    return await handle.result()


def examine(stack: BenchStack, vm: str, disks: int, name: str,
            result: SnapshotVirtualMachineResult | None,
            log: list[dict[str, Any]], namespace: str = NS) -> Run:
    """The figures of one finished snapshot, from the simulator's logs and objects."""
    kubectl = stack.sim.kubectl
    windows = [e for e in stack.sim.freeze_log() if e["vmi"] == vm and e.get("thawed_at")]
    snapshots = json.loads(kubectl("get", "volumesnapshots", "-n", namespace, "-o", "json", "-l",
                                   f"vmsnap.io/snapshot={name}").stdout)["items"]
    cuts = sorted(_when(s["status"]["creationTime"]) for s in snapshots
                  if (s.get("status") or {}).get("creationTime"))
    by_kind = count_requests(log)
    # The request log names no object on create (a POST to the collection): pair the
    # create requests and the cuts in time order to get each disk's cut latency.
    created = sorted(_when(r["time"]) for r in log
                     if r.get("verb") == "create" and r.get("resource") == "volumesnapshots")
    slowest = max(((c - m).total_seconds() for c, m in zip(cuts, created, strict=False)),
                  default=0.0)
    window_ms = after_ms = None
    if windows and cuts:
        thawed, frozen = _when(windows[-1]["thawed_at"]), _when(windows[-1]["frozen_at"])
        window_ms = (thawed - frozen).total_seconds() * 1000
        after_ms = (thawed - cuts[-1]).total_seconds() * 1000
    return Run(disks=disks, window_ms=window_ms, slowest_cut_ms=slowest * 1000,
               after_last_cut_ms=after_ms,
               reported_ms=None if result is None else result.freeze_window_ms,
               requests=sum(by_kind.values()), by_kind=by_kind,
               succeeded=bool(result is not None and result.ready_to_use))


async def snapshot_once(stack: BenchStack, disks: int, name: str, vm: str | None = None,
                        namespace: str = NS, show_timeline: bool = False) -> Run:
    """One snapshot of the VM with `disks` disks (`vm`, default `disks-D`), alone on the
    stack, and its figures (and its timeline printed, when asked)."""
    vm = vm or vm_for(disks)
    before = len(stack.sim.requests_log())
    result = await snapshot(stack, vm, name, namespace)
    log = stack.sim.requests_log()[before:]
    run = examine(stack, vm, disks, name, result, log, namespace)
    if show_timeline and run.window_ms is not None:
        print(timeline(stack, vm, name, log, namespace), flush=True)
    history = await stack.client.get_workflow_handle(
        snapshot_workflow_id(BENCH_CLUSTER, namespace, name)).fetch_history()
    run.history_events = len(history.events)
    return run


def timeline(stack: BenchStack, vm: str, name: str, log: list[dict[str, Any]],
             namespace: str = NS) -> str:
    """One snapshot's freeze window as the simulator saw it, in ms from the freeze: each
    request of the cut arriving and answered, each cut, the thaw (`--timeline`)."""
    window = [e for e in stack.sim.freeze_log() if e["vmi"] == vm and e.get("thawed_at")][-1]
    zero = _when(window["frozen_at"])
    rows: list[tuple[datetime, str]] = [(zero, "guest frozen"),
                                        (_when(window["thawed_at"]), "guest thawed")]
    for entry in log:
        what = f"{entry.get('verb')} {entry.get('resource')}" + (
            f"/{entry['subresource']}" if entry.get("subresource") else "")
        if entry.get("resource") not in ("volumesnapshots", "virtualmachineinstances"):
            continue
        rows.append((_when(entry["time"]), f"  {what} arrives"))
        if entry.get("answered") and entry.get("verb") != "watch":
            rows.append((_when(entry["answered"]), f"  {what} answered"))
    snapshots = json.loads(stack.sim.kubectl(
        "get", "volumesnapshots", "-n", namespace, "-o", "json", "-l",
        f"vmsnap.io/snapshot={name}").stdout)["items"]
    for item in snapshots:
        cut = (item.get("status") or {}).get("creationTime")
        if cut:
            rows.append((_when(cut), f"    cut {item['metadata']['name']}"))
    start = min(at for at, _ in rows)
    lines = [f"{(at - zero).total_seconds() * 1000:8.1f} ms  {what}"
             for at, what in sorted(rows, key=lambda row: row[0]) if at >= start]
    return "\n".join(lines)


def summary(runs: list[Run]) -> str:
    windows = [r.window_ms for r in runs if r.window_ms is not None]
    ratios = [r.window_ms / r.slowest_cut_ms for r in runs
              if r.window_ms is not None and r.slowest_cut_ms > 0]
    after = [r.after_last_cut_ms for r in runs if r.after_last_cut_ms is not None]
    return (f"{len(runs)} snapshots of {runs[0].disks} disks: window median "
            f"{statistics.median(windows):.0f} ms, worst {max(windows):.0f} ms; "
            f"window / slowest cut median {statistics.median(ratios):.2f}, worst "
            f"{max(ratios):.2f}; thaw after the last cut median {statistics.median(after):.0f} ms")


def figures(results: dict[int, list[Run]], runs: int) -> dict[str, Any]:
    """What the report keeps of the runs: per disk count, the window and the slowest cut
    (median and worst), their ratio, the thaw after the last cut, requests and events."""
    rows = []
    for disks, measured in results.items():
        windows = [r.window_ms or 0.0 for r in measured]
        ratios = [(r.window_ms or 0.0) / r.slowest_cut_ms for r in measured if r.slowest_cut_ms]
        rows.append({
            "disks": disks,
            "window_median_ms": round(statistics.median(windows), 1),
            "window_worst_ms": round(max(windows), 1),
            "slowest_cut_median_ms": round(statistics.median(r.slowest_cut_ms
                                                             for r in measured), 1),
            "ratio_median": round(statistics.median(ratios), 4),
            "ratio_worst": round(max(ratios), 4),
            "thaw_after_last_cut_median_ms": round(statistics.median(
                r.after_last_cut_ms or 0.0 for r in measured), 1),
            "requests": round(statistics.median(r.requests for r in measured)),
            "history_events": round(statistics.median(r.history_events for r in measured)),
        })
    return {"cut_ms": CUT_MS, "ready_ms": READY_MS, "runs": runs, "disks": rows}


async def benchmark(runs: int, disk_counts: list[int], record_figures: bool,
                    show_timeline: bool = False) -> None:
    results: dict[int, list[Run]] = {}
    load_before = os.getloadavg()[0]
    async with bench_stack(seed_documents(disk_counts)) as stack:
        for disks in disk_counts:
            measured = []
            for index in range(runs):
                run = await snapshot_once(stack, disks, f"fw-{disks}-{index}",
                                          show_timeline=show_timeline and index == runs - 1)
                print(f"  {disks} disks: window {run.window_ms or 0:4.0f} ms, slowest cut "
                      f"{run.slowest_cut_ms:4.0f} ms, thawed {run.after_last_cut_ms or 0:3.0f} "
                      f"ms after the last cut, {run.requests} requests, "
                      f"{run.history_events} history events", flush=True)
                measured.append(run)
            results[disks] = measured
            print(summary(measured), flush=True)
    stored = figures(results, runs)
    print(figures_table(stored))
    print(f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
          f"end, on {os.cpu_count()} cores")
    if record_figures:
        counts = " ".join(str(d) for d in disk_counts)
        record(KEY, f".venv/bin/python -m bench.freeze_window --runs {runs} --disks {counts}",
               stored, load_start=load_before)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--disks", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    parser.add_argument("--timeline", action="store_true",
                        help="print the last run of each disk count as the simulator saw it")
    args = parser.parse_args()
    stop_on_sigterm_as_on_ctrl_c()
    asyncio.run(benchmark(args.runs, args.disks, not args.no_record, args.timeline))
