"""The adapter's request transport: urllib3 (the Kubernetes client's) against libcurl.

Why: in the worker, activity threads send the Kubernetes requests while the asyncio
loop that drives every Temporal task waits for the same GIL. What matters is the
client's CPU per request and how long another thread waits to run again while
requests are under way. This starts the simulator alone (the fleet seed of
`bench.seeds`), sends GETs of one VM from 1 and from 16 threads through
`KubeApis.request_json` with each transport, side by side in one run, and prints
this process's CPU per request (the simulator's is not counted), requests per
second, and the delay of a probe thread that sleeps 1 ms in a loop (how late it
wakes: its wait for the GIL).

    .venv/bin/python -m bench.request_transport [--requests 3000] [--record]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.seeds import NAMESPACE, vm_name, write_fleet_seed
from cluster.apis import VIRTUAL_MACHINES, custom_path
from cluster.client import Cluster
from starter.local_stack import start_simulator

PROBE_SLEEP_SECONDS = 0.001
THREADS = (1, 16)
ROUNDS = 2


@dataclass
class Figures:
    transport: str
    threads: int
    cpu_ms_per_request: float
    requests_per_second: float
    probe_p50_ms: float
    probe_p90_ms: float


def measure(cluster: Cluster, transport: str, threads: int, requests: int) -> Figures:
    """`requests` GETs spread over `threads` threads, with the probe running."""
    path = custom_path(VIRTUAL_MACHINES, NAMESPACE, vm_name(0))
    per_thread = max(1, requests // threads)
    delays: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            time.sleep(PROBE_SLEEP_SECONDS)
            delays.append(time.perf_counter() - began - PROBE_SLEEP_SECONDS)

    def work() -> None:
        for _ in range(per_thread):
            cluster.request_json("GET", path)

    for _ in range(50):  # warm: connections open, caches filled
        cluster.request_json("GET", path)
    prober = threading.Thread(target=probe, name="probe")
    workers = [threading.Thread(target=work, name=f"request-{i}") for i in range(threads)]
    prober.start()
    cpu, wall = time.process_time(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stop.set()
    prober.join()
    done = per_thread * threads
    ordered = sorted(delays)
    return Figures(transport, threads, cpu / done * 1000, done / wall,
                   statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000)


def run(requests: int) -> list[Figures]:
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="vmsnap-bench-transport-") as folder:
        state = Path(folder)
        seed = write_fleet_seed(state / "seed", 1, 3, 1)
        sim = start_simulator(state / "sim", [seed], name="sim", timeout=120)
        try:
            with Cluster.from_environment(str(sim.kubeconfig)) as curl, \
                    Cluster.from_environment(str(sim.kubeconfig)) as plain:
                plain.use_client_transport()
                for _ in range(ROUNDS):  # alternate, so drift hits both alike
                    for threads in THREADS:
                        for name, cluster in (("urllib3", plain), ("libcurl", curl)):
                            figures = measure(cluster, name, threads, requests)
                            print(describe(figures), flush=True)
                            results.append(figures)
        finally:
            sim.stop()
    return results


def describe(f: Figures) -> str:
    return (f"{f.transport:8} {f.threads:2} threads: {f.cpu_ms_per_request:.3f} ms CPU per "
            f"request, {f.requests_per_second:5.0f} requests/s, probe late by p50 "
            f"{f.probe_p50_ms:.2f} ms / p90 {f.probe_p90_ms:.2f} ms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000,
                        help="requests per measurement (default 3000)")
    parser.add_argument("--record", action="store_true",
                        help="store the figures in docs/benchmarks/ and render its report")
    args = parser.parse_args(argv)
    if args.requests < 16:
        parser.error("--requests must be at least 16")
    load_before = os.getloadavg()[0]
    results = run(args.requests)
    if args.record:
        from bench.render.transport import KEY
        from bench.report import record

        command = ".venv/bin/python -m bench.request_transport" + (
            f" --requests {args.requests}" if args.requests != 3000 else "")
        record(KEY, command + " --record",
               {"requests": args.requests, "rounds": ROUNDS,
                "rows": [{**asdict(f), "cpu_ms_per_request": round(f.cpu_ms_per_request, 4),
                          "requests_per_second": round(f.requests_per_second, 1),
                          "probe_p50_ms": round(f.probe_p50_ms, 3),
                          "probe_p90_ms": round(f.probe_p90_ms, 3)} for f in results]},
               load_start=load_before)


if __name__ == "__main__":
    main()
