"""API economy: Kubernetes requests per snapshot against its disks, and snapshots under a
client-side rate limit.

Part 1: one snapshot at a time of VMs with 1, 8 and 32 disks; the requests each made,
counted from the simulator's request log and split by verb and resource. Part 2: N
snapshots started at once (VMs of 1 disk, 200 ms cut) on a worker whose Kubernetes
client is limited to QPS requests per second (VMSNAP_KUBE_QPS, burst VMSNAP_KUBE_BURST):
wall time, successes within each snapshot's failure deadline, the times to the first and
the last success, and the freeze windows under that throttle (requests made while a guest
is frozen pass first; waiting requests go earliest operation first when the worker has the
request-priority interceptor, see cluster.rate_limit.RateLimiter and
activities/request_priority.py).

    .venv/bin/python -m bench.api_economy --disks 1 8 32 --throttled 80 --qps 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import aims
from bench.freeze_window import (
    Run,
    bench_stack,
    examine,
    seed_documents,
    snapshot,
    snapshot_once,
    vm_for,
)
from bench.render.economy import REQUESTS_KEY
from bench.render.load import THROTTLED_KEY
from bench.report import record
from bench.stopping import stop_on_sigterm_as_on_ctrl_c
from contracts.snapshot import SnapshotVirtualMachineResult
from starter.local_stack import REPO_ROOT

NOMINAL_CUT_MS = 200.0


def budget(disks: int) -> int:
    """The aim: at most 8 + 3 x disks requests per snapshot."""
    return aims.request_budget(disks)


def counts_table(runs: list[Run]) -> str:
    kinds = sorted(set().union(*(r.by_kind for r in runs)))
    head = "| request | " + " | ".join(f"{r.disks} disks" for r in runs) + " |"
    lines = [head, "| --- |" + " --- |" * len(runs)]
    lines += [f"| {k} | " + " | ".join(str(r.by_kind.get(k, 0)) for r in runs) + " |"
              for k in kinds]
    lines.append("| **total** | " + " | ".join(f"**{r.requests}**" for r in runs) + " |")
    lines.append("| aim 8 + 3 x disks | " + " | ".join(str(budget(r.disks)) for r in runs)
                 + " |")
    return "\n".join(lines)


async def per_snapshot(disk_counts: list[int]) -> list[Run]:
    runs = []
    async with bench_stack(seed_documents(disk_counts)) as stack:
        for disks in disk_counts:
            await snapshot_once(stack, disks, f"warm-{disks}")  # connections, caches
            run = await snapshot_once(stack, disks, f"api-{disks}")
            print(f"{disks} disks: {run.requests} requests (aim {budget(disks)}): "
                  + ", ".join(f"{k} {v}" for k, v in sorted(run.by_kind.items())), flush=True)
            runs.append(run)
    return runs


def failure_reason(outcome: object) -> str:
    """Why one snapshot did not end ready: its workflow's error, first line, or its phase."""
    if isinstance(outcome, BaseException):
        cause: BaseException = outcome
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return f"{type(cause).__name__}: {str(cause).splitlines()[0][:160] if str(cause) else ''}"
    return f"phase {getattr(outcome, 'phase', '?')}: {getattr(outcome, 'error', '') or ''}"[:160]


def worker_orders_by_start() -> bool:
    """Whether worker.py (the process the bench starts) installs the request-priority
    interceptor, so that its limiter serves the earliest snapshot first."""
    return "request_priority_interceptors" in (REPO_ROOT / "worker.py").read_text()


@dataclass(frozen=True)
class Fleet:
    """The throttled run's figures: wall time and when each success ended (s from start)."""

    wall: float
    successes_at: list[float]
    by_start: bool


async def throttled(snapshots: int, qps: float, burst: int, failures: Counter[str],
                    deadline: str, max_activities: int | None = None
                    ) -> tuple[Fleet, list[Run]]:
    docs = seed_documents([1], copies=snapshots)
    env = {"VMSNAP_KUBE_QPS": str(qps), "VMSNAP_KUBE_BURST": str(burst)}
    if max_activities is not None:
        env["VMSNAP_MAX_CONCURRENT_ACTIVITIES"] = str(max_activities)
    by_start = worker_orders_by_start()
    async with bench_stack(docs, worker_env=env) as stack:
        vms = [vm_for(1) if i == 0 else f"{vm_for(1)}-{i}" for i in range(snapshots)]
        started = time.monotonic()
        ended: dict[int, float] = {}

        async def timed(i: int, vm: str) -> SnapshotVirtualMachineResult:
            try:
                return await snapshot(stack, vm, f"thr-{i}", failure_deadline=deadline)
            finally:
                ended[i] = time.monotonic() - started

        results = await asyncio.gather(*(timed(i, vm) for i, vm in enumerate(vms)),
                                       return_exceptions=True)
        wall = time.monotonic() - started
        log = stack.sim.requests_log()
        runs = []
        for i, (vm, result) in enumerate(zip(vms, results, strict=True)):
            # Requests cannot be told apart per snapshot here: count none, keep the windows.
            run = examine(stack, vm, 1, f"thr-{i}", None if isinstance(result, BaseException)
                          else result, [])
            runs.append(run)
        total = Counter(str(e.get("verb")) for e in log if not str(e.get("path", "")).startswith(
            "/sim/"))
        failures.update(failure_reason(r) for r in results
                        if isinstance(r, BaseException) or not r.ready_to_use)
        successes = sorted(ended[i] for i, r in enumerate(results)
                           if not isinstance(r, BaseException) and r.ready_to_use)
        print(f"{snapshots} snapshots at {qps} QPS (burst {burst}): {wall:.1f} s, "
              f"{len(successes)} succeeded, {sum(total.values())} requests", flush=True)
    return Fleet(wall, successes, by_start), runs


def throttled_text(snapshots: int, qps: float, burst: int, fleet: Fleet,
                   runs: list[Run]) -> str:
    windows = sorted(r.window_ms for r in runs if r.window_ms is not None)
    done = fleet.successes_at
    # The creates of 80 snapshots cannot be paired with their cuts in one log: compare
    # against the class's nominal cut latency instead.
    ratios = [w / NOMINAL_CUT_MS for w in windows]
    if not windows:
        return f"{snapshots} snapshots: no freeze window measured"
    return (
        f"| figure | value |\n| --- | --- |\n"
        f"| snapshots started at once | {snapshots} (1 disk each, cut 200 ms) |\n"
        f"| client limit | {qps:g} QPS, burst {burst} |\n"
        f"| waiting requests served | {ordering(fleet.by_start)} |\n"
        f"| wall time, all done | {fleet.wall:.1f} s |\n"
        f"| Succeeded within the failure deadline, then ready to use | {len(done)} of "
        f"{snapshots} |\n"
        f"| first / last of those ready after | "
        f"{f'{done[0]:.1f} / {done[-1]:.1f} s' if done else '-'} |\n"
        f"| freeze window median / worst | {statistics.median(windows):.0f} / "
        f"{windows[-1]:.0f} ms |\n"
        f"| window / nominal 200 ms cut median / worst | {statistics.median(ratios):.2f} / "
        f"{ratios[-1]:.2f} |")


def ordering(by_start: bool) -> str:
    return ("earliest snapshot first (request-priority interceptor)" if by_start
            else "in arrival order (FIFO)")


def throttled_figures(snapshots: int, qps: float, burst: int, deadline: str,
                      max_activities: int | None, fleet: Fleet, runs: list[Run],
                      failures: Counter[str]) -> dict[str, Any]:
    """What the report keeps of the throttled run (bench/render/load.py reads it)."""
    windows = sorted(r.window_ms for r in runs if r.window_ms is not None) or [0.0]
    done = fleet.successes_at
    return {
        "snapshots": snapshots, "disks": 1, "cut_ms": round(NOMINAL_CUT_MS), "qps": qps,
        "burst": burst, "earliest_first": fleet.by_start, "failure_deadline": deadline,
        "max_activities": max_activities, "wall_s": round(fleet.wall, 1), "ready": len(done),
        "first_ready_s": round(done[0], 1) if done else None,
        "last_ready_s": round(done[-1], 1) if done else None,
        "ready_at_s": [round(t, 2) for t in done],
        "window_median_ms": round(statistics.median(windows), 1),
        "window_worst_ms": round(windows[-1], 1),
        "window_ratio_median": round(statistics.median(windows) / NOMINAL_CUT_MS, 4),
        "window_ratio_worst": round(windows[-1] / NOMINAL_CUT_MS, 4),
        "failures": dict(failures.most_common(5)),
    }


async def main(disk_counts: list[int], snapshots: int, qps: float, burst: int,
               deadline: str, record_figures: bool, max_activities: int | None = None) -> None:
    if disk_counts:
        load_before = os.getloadavg()[0]
        runs = await per_snapshot(disk_counts)
        print(counts_table(runs))
        if record_figures:
            counts = " ".join(str(d) for d in disk_counts)
            record(REQUESTS_KEY,
                   f".venv/bin/python -m bench.api_economy --disks {counts} --throttled 0",
                   {"disks": [{"disks": r.disks, "requests": dict(sorted(r.by_kind.items()))}
                              for r in runs]},
                   load_start=load_before)
    if snapshots:
        load_before = os.getloadavg()[0]
        failures: Counter[str] = Counter()
        fleet, runs = await throttled(snapshots, qps, burst, failures, deadline,
                                      max_activities)
        text = throttled_text(snapshots, qps, burst, fleet, runs)
        if failures:
            text += "\n\nWhy the others did not end ready:\n\n" + "\n".join(
                f"- {count} x {reason}" for reason, count in failures.most_common(5))
        print(text)
        slots_flag = "" if max_activities is None else f" --max-activities {max_activities}"
        if record_figures:
            record(THROTTLED_KEY,
                   f".venv/bin/python -m bench.api_economy --disks --throttled {snapshots} "
                   f"--qps {qps:g} --burst {burst} --failure-deadline {deadline}{slots_flag}",
                   throttled_figures(snapshots, qps, burst, deadline, max_activities, fleet,
                                     runs, failures),
                   load_start=load_before)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--disks", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--throttled", type=int, default=80,
                        help="snapshots started at once under the limit (0: skip)")
    parser.add_argument("--qps", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--failure-deadline", default="5m",
                        help="each throttled snapshot's failure_deadline (the default is 5m)")
    parser.add_argument("--max-activities", type=int, default=None,
                        help="the throttled worker's VMSNAP_MAX_CONCURRENT_ACTIVITIES "
                             "(default: the worker's own)")
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    args = parser.parse_args()
    stop_on_sigterm_as_on_ctrl_c()
    asyncio.run(main(args.disks, args.throttled, args.qps, args.burst, args.failure_deadline,
                     not args.no_record, args.max_activities))
