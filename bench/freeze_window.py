"""Freeze window benchmark: an 8-disk snapshot (200 ms cut each), Kubernetes requests, history.

Runs a fresh stack of its own (dev server, simulator on the snapshot e2e seed,
worker) and snapshots the VM `eight` N times, one after the other. Figures come
from the simulator's own logs (freeze log, request log, VolumeSnapshot
creationTime), not from the workflow's word; the ratio window / slowest cut is
measured side by side in each run.

    .venv/bin/python -m bench.freeze_window --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.e2e.conftest import Stack
from workflows.models import SnapshotVirtualMachineResult
from workflows.naming import snapshot_workflow_id

SEED = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "snapshot_seeds" / "snapshot.yaml"
NS, VM, DISKS, CUT_SECONDS = "snap", "eight", 8, 0.2


@dataclass
class Run:
    window_ms: float  # the simulator's freeze log: frozen at -> thawed at
    slowest_cut_ms: float  # the storage's part: create request -> creationTime, slowest disk
    after_last_cut_ms: float  # thawed at - the last VolumeSnapshot's creationTime
    reported_ms: int | None  # what the workflow measured and recorded
    requests: int  # Kubernetes API requests of the whole snapshot
    history_events: int


def _raw(stack_kubectl: Any, path: str) -> list[dict[str, Any]]:
    answer = json.loads(stack_kubectl("get", "--raw", path).stdout)
    return list(answer["items"] if isinstance(answer, dict) else answer)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def measure(stack: Stack, runs: int, prefix: str) -> list[Run]:
    kubectl = stack.sim.kubectl
    results: list[Run] = []
    for index in range(runs):
        name = f"{prefix}-{index}"
        before = len(_raw(kubectl, "/sim/requests"))
        handle = await stack.client.start_workflow(
            "SnapshotVirtualMachine",
            {"namespace": NS, "vm": VM, "name": name},
            id=snapshot_workflow_id(NS, name),
            task_queue=stack.task_queue,
            result_type=SnapshotVirtualMachineResult,
        )
        result = await handle.result()
        log = _raw(kubectl, "/sim/requests")[before:]
        requests = [r for r in log if not str(r.get("path", "")).startswith("/sim/")]
        window = [e for e in _raw(kubectl, "/sim/freeze-log") if e["vmi"] == VM][-1]
        snapshots = json.loads(
            kubectl(
                "get", "volumesnapshots", "-n", NS, "-o", "json", "-l", f"vmsnap.io/snapshot={name}"
            ).stdout
        )["items"]
        # The request log names no object on create (a POST to the collection): pair the
        # create requests and the cuts in time order to get each disk's cut latency.
        cuts = sorted(_when(s["status"]["creationTime"]) for s in snapshots)
        created = sorted(
            _when(r["time"])
            for r in requests
            if r.get("verb") == "create" and r.get("resource") == "volumesnapshots"
        )
        last_cut = cuts[-1]
        slowest = max((cut - made).total_seconds() for cut, made in zip(cuts, created, strict=True))
        thawed, frozen = _when(window["thawed_at"]), _when(window["frozen_at"])
        history = await handle.fetch_history()
        results.append(
            Run(
                window_ms=(thawed - frozen).total_seconds() * 1000,
                slowest_cut_ms=slowest * 1000,
                after_last_cut_ms=(thawed - last_cut).total_seconds() * 1000,
                reported_ms=result.freeze_window_ms,
                requests=len(requests),
                history_events=len(history.events),
            )
        )
    return results


def summary(runs: list[Run]) -> str:
    windows = [r.window_ms for r in runs]
    ratios = [r.window_ms / r.slowest_cut_ms for r in runs]
    return (
        f"{len(runs)} snapshots of {DISKS} disks, cut {CUT_SECONDS * 1000:.0f} ms each: "
        f"freeze window median {statistics.median(windows):.0f} ms, "
        f"worst {max(windows):.0f} ms; window / slowest cut median "
        f"{statistics.median(ratios):.2f}, worst {max(ratios):.2f} (worker-measured median "
        f"{statistics.median(r.reported_ms or 0 for r in runs):.0f} ms); thaw after the "
        f"last cut median {statistics.median(r.after_last_cut_ms for r in runs):.0f} ms; "
        f"Kubernetes requests per snapshot {statistics.median(r.requests for r in runs):.0f}; "
        f"history events per snapshot {statistics.median(r.history_events for r in runs):.0f}"
    )


async def benchmark(runs: int) -> None:
    from starter.local_stack import start_dev_server, start_simulator, start_worker
    from tests.support.sim import Sim

    with tempfile.TemporaryDirectory(prefix="vmsnap-bench-") as folder:
        state = Path(folder)
        started: list[Any] = []
        try:
            dev = start_dev_server(state / "temporal")
            started.append(dev)
            simulator = start_simulator(state / "sim", [SEED], name="sim")
            started.append(simulator)
            sim = Sim(simulator, state / "sim")
            worker = start_worker(state / "worker", dev.address, sim.kubeconfig, task_queue="bench")
            started.append(worker)
            client = await Client.connect(
                dev.address, namespace=dev.namespace, data_converter=pydantic_data_converter
            )
            measured = await measure(Stack(sim, worker, "bench", client), runs, "bench")
            for run in measured:
                print(
                    f"  window {run.window_ms:4.0f} ms, "
                    f"slowest cut {run.slowest_cut_ms:4.0f} ms, "
                    f"thawed {run.after_last_cut_ms:3.0f} ms "
                    f"after the last cut, {run.requests} requests, "
                    f"{run.history_events} history events"
                )
            print(summary(measured))
        finally:
            for process in reversed(started):
                process.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(benchmark(parser.parse_args().runs))
