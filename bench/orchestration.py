"""Orchestration cost: N concurrent snapshots against a bare Temporal workflow of the same shape.

Runs a stack of its own: a dev server (SQLite), the simulator seeded with
enough running VMs of 3 disks on instant storage (cut and ready latency 0),
worker.py on one task queue and the bare worker (bench/bare_snapshot.py, the
same worker settings) on another. One real snapshot first gives the shape
(its history); a bare run is checked to have the same shape. Then, for each N,
N bare workflows at once, then N snapshots at once (of N different VMs), side
by side on the same server: wall time (first start to last result), the ratio
real / bare, and per-run latency (the server's start to close) p50 / p95.

    .venv/bin/python -m bench.orchestration --sizes 100 500
    .venv/bin/python -m bench.orchestration --sizes 100 --repeat 3
    .venv/bin/python -m bench.orchestration --sizes 100 --tune VMSNAP_MAX_CONCURRENT_ACTIVITIES=100

`--repeat K` measures K bare/vmsnap pairs per N, one after the other, and reports each
ratio and their median: on a shared host the same work's CPU time varies by half from
one minute to the next, and one pair can land on either side of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from bench import aims
from bench.bare_snapshot import BARE_WORKFLOW, BareShape, shape_from_history
from bench.render.orchestration import BUCKETS, KEY, SPREAD_KEY
from bench.seeds import vm_name, vm_namespace, write_fleet_seed
from bench.worker_load import sample_process_tree
from rules.naming import snapshot_workflow_id
from starter.local_stack import (
    REPO_ROOT,
    DevServerProcess,
    ManagedProcess,
    SimulatorProcess,
    StackError,
    spawn,
    start_dev_server,
    start_simulator,
    start_worker,
)
from starter.worker_tuning import WorkerTuning
from workflows.scheduled import child_search_attributes

T = TypeVar("T")

AIM = aims.ORCHESTRATION_AIM_RATIO  # orchestration at most this x the bare-Temporal floor
DESCRIBE_CONCURRENCY = 50
BENCH_CLUSTER = "bench"  # the cluster named in the workflow IDs the benchmark starts
HISTORY_SAMPLE = 20  # histories per wave read for the time breakdown


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_breakdown(events: Sequence[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Where one run's time went, from its history: seconds spent with an activity waiting
    to be picked up (schedule to start) and running (start to close), and the same for
    workflow tasks; and each activity type's running seconds (summed over its calls)."""
    from temporalio.api.enums.v1 import EventType as E

    buckets = dict.fromkeys(BUCKETS, 0.0)
    runs: dict[str, float] = {}
    when = {event.event_id: event.event_time.ToDatetime() for event in events}
    types: dict[int, str] = {}
    for event in events:
        kind = event.event_type
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            types[event.event_id] = scheduled.activity_type.name
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            queued = when[done.started_event_id] - when[done.scheduled_event_id]
            running = (when[event.event_id] - when[done.started_event_id]).total_seconds()
            buckets["activity queued"] += queued.total_seconds()
            buckets["activity running"] += running
            name = types[done.scheduled_event_id]
            runs[name] = runs.get(name, 0.0) + running
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            task = event.workflow_task_completed_event_attributes
            queued = when[task.started_event_id] - when[task.scheduled_event_id]
            buckets["workflow task queued"] += queued.total_seconds()
            buckets["workflow task running"] += (
                when[event.event_id] - when[task.started_event_id]).total_seconds()
    return buckets, runs


def run_stoppable(main: Awaitable[T]) -> T:
    """asyncio.run, with SIGTERM and SIGINT cancelling the benchmark so that its stack's
    processes are stopped (by their PIDs) on the way out, not left running."""
    async def guarded() -> T:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await task

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        print("stopped: the stack's processes were stopped, nothing recorded", file=sys.stderr)
        raise SystemExit(130) from None


def tuning_env(assignments: Sequence[str]) -> dict[str, str]:
    """`VAR=VALUE` pairs for the worker's environment; only VMSNAP_* tuning variables,
    checked by starter.worker_tuning so that a typo fails before anything starts."""
    env: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name.startswith("VMSNAP_"):
            raise ValueError(f"{assignment!r} is not VMSNAP_NAME=VALUE")
        env[name] = value
    WorkerTuning.from_environment(env)
    return env


@dataclass
class Wave:
    """N workflows started at once: what the client saw and what the server recorded."""

    kind: str
    size: int
    wall: float  # seconds, first start to last result
    latencies: list[float]  # seconds per run, the server's start time to close time
    succeeded: int
    failures: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the wave
    requests: int | None = None  # Kubernetes API requests in the wave (simulator's log)
    breakdown: dict[str, float] = field(default_factory=dict)  # mean seconds per run
    activity_runs: dict[str, float] = field(default_factory=dict)  # mean seconds per run

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


class BenchStack:
    """Dev server, simulator on a generated fleet, worker.py and the bare worker."""

    def __init__(self, vms: int, worker_env: dict[str, str] | None = None,
                 disks: int = 3, namespaces: int = 1) -> None:
        self.vms, self.disks, self.namespaces = vms, disks, namespaces
        self.worker_env = dict(worker_env or {})
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._started: list[ManagedProcess | SimulatorProcess | DevServerProcess] = []
        self.task_queue, self.bare_task_queue = "bench-real", "bench-bare"
        self.tuning = WorkerTuning.from_environment(self.worker_env)
        self.tuning_note = ""

    async def __aenter__(self) -> BenchStack:
        self._folder = tempfile.TemporaryDirectory(prefix="vmsnap-bench-")
        state = Path(self._folder.name)
        try:
            seed = write_fleet_seed(state / "seed", self.vms, self.disks, self.namespaces)
            self.dev = start_dev_server(state / "temporal")
            self._started.append(self.dev)
            self.sim = start_simulator(state / "sim", [seed], name="sim", timeout=180)
            self._started.append(self.sim)
            self._wait_running_vmis()
            self.worker = self._start_product_worker(state / "worker")
            self._started.append(self.worker)
            self.bare_worker = _start_bare_worker(state / "bare", self.dev.address,
                                                  self.bare_task_queue, self.worker_env)
            self._started.append(self.bare_worker)
            self.client = await Client.connect(self.dev.address, namespace=self.dev.namespace,
                                               data_converter=pydantic_data_converter)
        except BaseException:
            self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        for process in reversed(self._started):
            process.stop()
        self._started.clear()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    @property
    def simulator_pid(self) -> int:
        return self.sim.process.pid

    @property
    def dev_server_pid(self) -> int:
        return self.dev.process.pid

    def namespace_of(self, index: int) -> str:
        return vm_namespace(index, self.namespaces)

    def layout(self) -> str:
        if self.namespaces == 1:
            return "every VM in one namespace"
        return f"VMs spread over {self.namespaces} namespaces"

    def sim_get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.sim.url + path, headers={"Authorization": f"Bearer {self.sim.token}"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    def request_count(self) -> int:
        """How many API requests the simulator has logged so far (its `next` index)."""
        return int(self.sim_get("/sim/requests?since=1000000000")["next"])

    def _wait_running_vmis(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        path = "/apis/kubevirt.io/v1/virtualmachineinstances"
        running = 0
        while time.monotonic() < deadline:
            items = self.sim_get(path)["items"]
            running = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Running")
            if running >= self.vms:
                return
            time.sleep(0.2)
        raise StackError(f"only {running} of {self.vms} VMs running after {timeout:.0f}s")

    def _start_product_worker(self, state: Path) -> ManagedProcess:
        """worker.py itself; with tuning variables that worker.py does not read yet, the
        same worker built with them (see `serve_product_worker`)."""
        wired = "worker_tuning" in (REPO_ROOT / "worker.py").read_text()
        if wired or not self.worker_env:
            self.tuning_note = f"worker.py, {self.tuning.describe()}" + (
                "" if wired else " (worker.py's own settings)")
            return start_worker(state, self.dev.address, self.sim.kubeconfig,
                                task_queue=self.task_queue, extra_env=self.worker_env)
        self.tuning_note = f"worker.py's worker with {self.tuning.describe()} (bench launcher)"
        env = {"TEMPORAL_ADDRESS": self.dev.address, "TEMPORAL_NAMESPACE": self.dev.namespace,
               "KUBECONFIG": str(self.sim.kubeconfig), "PYTHONUNBUFFERED": "1",
               **self.worker_env}
        process = spawn("worker", [sys.executable, "-m", "bench.orchestration",
                                   "--serve-product-worker", self.task_queue],
                        state / "worker.log", env)
        _wait_started(process)
        return process


def _wait_started(process: ManagedProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "worker started" in process.log_tail(200).lower():
            return
        if not process.running():
            raise StackError(f"{process.name} exited before polling:\n{process.log_tail()}")
        time.sleep(0.05)
    process.stop()
    raise StackError(f"{process.name} did not start polling in {timeout:.0f}s")


def _start_bare_worker(state: Path, address: str, task_queue: str,
                       env: dict[str, str]) -> ManagedProcess:
    process = spawn("bare-worker",
                    [sys.executable, "-m", "bench.bare_snapshot", "--task-queue", task_queue],
                    state / "bare-worker.log",
                    {"TEMPORAL_ADDRESS": address, "PYTHONUNBUFFERED": "1", **env})
    _wait_started(process)
    return process


async def serve_product_worker(task_queue: str) -> None:
    """worker.py's run_worker with starter.worker_tuning applied: what worker.py does once
    the tuning is wired in, so alternatives can be measured before that."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    import worker as product
    from activities.liveness import WorkflowLiveness
    from cluster.client import Cluster
    from starter.freeze_process import FreezeProcess
    from starter.search_attributes import ensure_search_attributes

    tuning = WorkerTuning.from_environment(os.environ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cluster = Cluster.from_environment()
    client = await product.connect()
    await ensure_search_attributes(client)
    # The cuts that freeze run in the worker's freeze process, as worker.py runs them.
    freezer = FreezeProcess(product.freeze_process_argv(task_queue, "WARNING"))
    await freezer.start()
    try:
        with ThreadPoolExecutor(tuning.activity_threads, thread_name_prefix="activity") as pool:
            liveness = WorkflowLiveness(client, loop)
            async with Worker(client, task_queue=task_queue, workflows=product.WORKFLOWS,
                              activities=product.activities_for(cluster, liveness),
                              activity_executor=pool,
                              **product.shared_worker_options(),
                              **tuning.worker_options()):
                print(f"worker started: polling task queue {task_queue!r} "
                      f"({tuning.describe()})", flush=True)
                await stop.wait()
                freezer.terminate()
    finally:
        await freezer.stop()
        cluster.close()


# ---- waves ------------------------------------------------------------------------------


async def _wave(stack: BenchStack, kind: str, starts: list[Callable[[], Awaitable[Any]]],
                check: Callable[[Any], str | None]) -> Wave:
    pids = {"worker": stack.worker.pid, "bare worker": stack.bare_worker.pid,
            "simulator": stack.simulator_pid, "dev server": stack.dev_server_pid}
    before = {name: sample_process_tree(pid).cpu_seconds for name, pid in pids.items()}
    requests_before = stack.request_count()
    began = time.monotonic()
    handles: list[WorkflowHandle[Any, Any]] = await asyncio.gather(*(s() for s in starts))
    outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    wall = time.monotonic() - began
    requests = stack.request_count() - requests_before
    cpu = {name: sample_process_tree(pid).cpu_seconds - before[name] for name, pid in pids.items()}
    failures = [str(o) if isinstance(o, BaseException) else (check(o) or "")
                for o in outcomes]
    failures = [f for f in failures if f]
    latencies = await _latencies(handles)
    wave = Wave(kind, len(starts), wall, latencies, len(starts) - len(failures), failures, cpu,
                requests)
    step = max(1, len(handles) // HISTORY_SAMPLE)
    sample = handles[::step][:HISTORY_SAMPLE]
    for handle in sample:
        buckets, runs = time_breakdown((await handle.fetch_history()).events)
        for name, seconds in buckets.items():
            wave.breakdown[name] = wave.breakdown.get(name, 0.0) + seconds / len(sample)
        for name, seconds in runs.items():
            wave.activity_runs[name] = wave.activity_runs.get(name, 0.0) + seconds / len(sample)
    return wave


async def _latencies(handles: list[WorkflowHandle[Any, Any]]) -> list[float]:
    gate = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

    async def one(handle: WorkflowHandle[Any, Any]) -> float:
        async with gate:
            described = await handle.describe()
        if described.close_time is None:
            raise RuntimeError(f"workflow {handle.id} has not closed")
        return (described.close_time - described.start_time).total_seconds()

    return list(await asyncio.gather(*(one(h) for h in handles)))


def _snapshot_start(stack: BenchStack, index: int, name: str) -> Callable[[], Awaitable[Any]]:
    vm, namespace = vm_name(index), stack.namespace_of(index)

    def start() -> Awaitable[Any]:
        return stack.client.start_workflow(
            "SnapshotVirtualMachine", {"namespace": namespace, "vm": vm, "name": name},
            id=snapshot_workflow_id(BENCH_CLUSTER, namespace, name), task_queue=stack.task_queue,
            search_attributes=child_search_attributes(namespace, vm, "snapshot"))
    return start


def _bare_start(stack: BenchStack, index: int, name: str,
                shape: BareShape) -> Callable[[], Awaitable[Any]]:
    vm, namespace = vm_name(index), stack.namespace_of(index)

    def start() -> Awaitable[Any]:
        return stack.client.start_workflow(
            BARE_WORKFLOW, shape, id=f"bare/{namespace}/{name}",
            task_queue=stack.bare_task_queue,
            search_attributes=child_search_attributes(namespace, vm, "snapshot"))
    return start


def _snapshot_check(result: Any) -> str | None:
    if result.get("phase") != "Succeeded" or not result.get("ready_to_use"):
        return f"{result.get('name')}: phase {result.get('phase')}, error {result.get('error')}"
    return None


async def real_wave(stack: BenchStack, size: int, prefix: str) -> Wave:
    """`size` snapshots at once, of VMs vm-0000.. (one each)."""
    starts = [_snapshot_start(stack, i, f"{prefix}-{i}") for i in range(size)]
    return await _wave(stack, "vmsnap", starts, _snapshot_check)


async def bare_wave(stack: BenchStack, size: int, prefix: str, shape: BareShape) -> Wave:
    expected = len(shape.activity_names()) + len(shape.local_activity_names())

    def check(done: Any) -> str | None:
        return None if done == expected else f"{done} of {expected} activities"

    starts = [_bare_start(stack, i, f"{prefix}-{i}", shape) for i in range(size)]
    return await _wave(stack, "bare", starts, check)


async def shapes(stack: BenchStack) -> BareShape:
    """One real snapshot's shape, and proof that the bare workflow reproduces it."""
    real = await _snapshot_start(stack, 0, "shape")()
    result = await real.result()
    if problem := _snapshot_check(result):
        raise RuntimeError(f"the shape run failed: {problem}")
    shape = shape_from_history((await real.fetch_history()).events)
    bare = await _bare_start(stack, 0, "shape", shape)()
    await bare.result()
    copied = shape_from_history((await bare.fetch_history()).events)
    if copied != shape:
        raise RuntimeError(f"the bare workflow's shape {copied.tasks} differs from the "
                           f"snapshot's {shape.tasks}")
    return shape


# ---- reporting --------------------------------------------------------------------------


def describe_wave(wave: Wave) -> str:
    cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in wave.cpu.items()
                    if seconds >= 0.05)
    failed = f", {len(wave.failures)} FAILED (first: {wave.failures[0]})" if wave.failures else ""
    slowest = sorted(wave.activity_runs.items(), key=lambda item: -item[1])[:3]
    return (f"  {wave.kind:6} N={wave.size:3}: wall {wave.wall:6.1f} s, latency p50 "
            f"{wave.p(50):5.2f} s p95 {wave.p(95):5.2f} s, {wave.requests} API requests, "
            f"CPU s: {cpu}{failed}\n           per run (mean of {HISTORY_SAMPLE}): "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in wave.breakdown.items())
            + "; slowest activities: "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in slowest))


def median_ratios(pairs: list[tuple[Wave, Wave]]) -> dict[int, list[float]]:
    """Each N's ratios (vmsnap wall / bare wall), in the order measured."""
    ratios: dict[int, list[float]] = {}
    for real, bare in pairs:
        ratios.setdefault(real.size, []).append(real.wall / bare.wall)
    return ratios


def wave_figures(wave: Wave) -> dict[str, Any]:
    return {"wall_s": round(wave.wall, 2), "p50_s": round(wave.p(50), 3),
            "p95_s": round(wave.p(95), 3), "succeeded": wave.succeeded,
            "requests": wave.requests,
            "cpu_s": {name: round(seconds, 2) for name, seconds in wave.cpu.items()},
            "breakdown_s": {name: round(wave.breakdown.get(name, 0.0), 3) for name in BUCKETS}}


def figures(pairs: list[tuple[Wave, Wave]], shape: BareShape, stack: BenchStack
            ) -> dict[str, Any]:
    """What the report keeps of the waves (bench/render/orchestration.py reads it)."""
    return {
        "layout": stack.layout(), "namespaces": stack.namespaces, "worker": stack.tuning_note,
        "vm_disks": stack.disks,
        "shape": {"workflow_tasks": len(shape.tasks),
                  "activities": len(shape.activity_names()),
                  "local_activities": len(shape.local_activity_names())},
        "history_sample": HISTORY_SAMPLE,
        "pairs": [{"n": real.size, "ratio": round(real.wall / bare.wall, 4),
                   "vmsnap": wave_figures(real), "bare": wave_figures(bare)}
                  for real, bare in pairs],
    }


async def benchmark(sizes: list[int], env: dict[str, str], record_figures: bool, command: str,
                    namespaces: int = 1, repeat: int = 1) -> list[tuple[Wave, Wave]]:
    pairs: list[tuple[Wave, Wave]] = []
    load_before = os.getloadavg()[0]
    async with BenchStack(vms=max(sizes), worker_env=env, namespaces=namespaces) as stack:
        print(f"stack up ({stack.tuning_note})", flush=True)
        shape = await shapes(stack)
        print(f"shape: {len(shape.tasks)} workflow tasks, activities "
              f"{', '.join(shape.activity_names())}, local activities "
              f"{', '.join(shape.local_activity_names())}", flush=True)
        for size in sizes:
            for k in range(repeat):
                tag = f"{size}" if repeat == 1 else f"{size}-{k}"
                bare = await bare_wave(stack, size, f"b{tag}", shape)
                print(describe_wave(bare), flush=True)
                real = await real_wave(stack, size, f"r{tag}")
                print(describe_wave(real), flush=True)
                print(f"  ratio N={size}: {real.wall / bare.wall:.2f} (aim <= {AIM})",
                      flush=True)
                pairs.append((real, bare))
            if repeat > 1:
                ratios = median_ratios(pairs)[size]
                print(f"  median ratio N={size}: {statistics.median(ratios):.2f} of "
                      f"{len(ratios)} pairs", flush=True)
        stored = figures(pairs, shape, stack)
    if record_figures:
        from bench.report import record

        record(KEY if namespaces == 1 else SPREAD_KEY, command, stored,
               load_start=load_before)
    return pairs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--tune", action="append", default=[], metavar="VAR=VALUE",
                        help="a VMSNAP_* worker tuning variable for both workers (repeatable)")
    parser.add_argument("--namespaces", type=int, default=1,
                        help="spread the VMs over this many namespaces (default: all in one)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="bare/vmsnap pairs per N (the median ratio is reported)")
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    parser.add_argument("--serve-product-worker", metavar="TASK_QUEUE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_product_worker:
        asyncio.run(serve_product_worker(args.serve_product_worker))
        return
    if any(size < 1 for size in args.sizes):
        parser.error("sizes must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not 1 <= args.namespaces <= max(args.sizes):
        parser.error("--namespaces must be between 1 and the largest size")
    env = tuning_env(args.tune)
    command = " ".join([".venv/bin/python -m bench.orchestration", "--sizes",
                        *map(str, args.sizes), *(f"--tune {t}" for t in args.tune)]
                       + ([f"--namespaces {args.namespaces}"] if args.namespaces > 1 else [])
                       + ([f"--repeat {args.repeat}"] if args.repeat > 1 else []))
    run_stoppable(benchmark(args.sizes, env, not args.no_record, command, args.namespaces,
                            args.repeat))


if __name__ == "__main__":
    main()
