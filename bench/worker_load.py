"""Worker load benchmark: the worker's memory and CPU while it runs 500 concurrent snapshots.

Runs a stack of its own (dev server, simulator seeded with N VMs of 3 disks on
instant storage, worker.py) and samples, from /proc (no new dependency), the
worker's resident memory (VmRSS, peak VmHWM) and CPU seconds (utime + stime),
with the simulator's and the dev server's CPU for context.

    .venv/bin/python -m bench.worker_load --snapshots 500
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    """One reading of a process: CPU seconds so far, resident and peak memory, threads."""

    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int
    threads: int


def parse_stat_cpu_seconds(stat: str, ticks: int = CLOCK_TICKS) -> float:
    """utime + stime (fields 14 and 15 of /proc/PID/stat) in seconds.

    The command name (field 2) sits in parentheses and may hold spaces, so the
    fields are counted from the last ')'.
    """
    end = stat.rfind(")")
    if end < 0:
        raise ValueError("not a /proc/PID/stat line: no ')' after the command name")
    rest = stat[end + 1:].split()
    # rest[0] is field 3 (state): utime is field 14, stime field 15.
    if len(rest) < 13:
        raise ValueError("not a /proc/PID/stat line: too few fields")
    return (int(rest[11]) + int(rest[12])) / ticks


def parse_status(status: str) -> Mapping[str, str]:
    """The `Key:\tvalue` lines of /proc/PID/status."""
    fields: dict[str, str] = {}
    for line in status.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _kib(value: str) -> int:
    number, _, unit = value.partition(" ")
    if unit.strip() not in ("kB", ""):
        raise ValueError(f"unexpected unit in {value!r}")
    return int(number) * 1024


def sample_process(pid: int, proc: Path = Path("/proc")) -> ProcessSample:
    """Read one process's CPU and memory now (raises FileNotFoundError once it is gone)."""
    stat = (proc / str(pid) / "stat").read_text()
    status = parse_status((proc / str(pid) / "status").read_text())
    return ProcessSample(
        cpu_seconds=parse_stat_cpu_seconds(stat),
        rss_bytes=_kib(status.get("VmRSS", "0 kB")),
        peak_rss_bytes=_kib(status.get("VmHWM", "0 kB")),
        threads=int(status.get("Threads", "0")),
    )


def child_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The live processes whose parent is `pid` (field 4 of /proc/PID/stat)."""
    children = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(")") + 1:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry.name))
    return children


def sample_process_tree(pid: int, proc: Path = Path("/proc")) -> ProcessSample:
    """`sample_process` of `pid` and its descendants summed: the worker with its freeze
    process (worker.py starts one), which does part of the worker's work."""
    samples = [sample_process(pid, proc)]
    pending = child_pids(pid, proc)
    while pending:
        child = pending.pop()
        try:
            samples.append(sample_process(child, proc))
        except FileNotFoundError:
            continue
        pending.extend(child_pids(child, proc))
    return ProcessSample(
        cpu_seconds=sum(s.cpu_seconds for s in samples),
        rss_bytes=sum(s.rss_bytes for s in samples),
        peak_rss_bytes=sum(s.peak_rss_bytes for s in samples),
        threads=sum(s.threads for s in samples))


@dataclass
class Sampler:
    """Samples one process and its descendants on a thread, every `interval` seconds."""

    pid: int
    interval: float = 0.2
    samples: list[tuple[float, ProcessSample]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.samples.append((time.monotonic(), sample_process_tree(self.pid)))
        self._thread = threading.Thread(target=self._run, name=f"sample-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append((time.monotonic(), sample_process_tree(self.pid)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.monotonic(), sample_process_tree(self.pid)))
            except FileNotFoundError:
                return

    @property
    def first(self) -> ProcessSample:
        return self.samples[0][1]

    @property
    def last(self) -> ProcessSample:
        return self.samples[-1][1]

    def cpu_seconds(self) -> float:
        return self.last.cpu_seconds - self.first.cpu_seconds

    def peak_rss(self) -> int:
        """The kernel's own high-water mark (VmHWM), not only what the samples caught."""
        return max(max(s.peak_rss_bytes, s.rss_bytes) for _, s in self.samples)

    def max_threads(self) -> int:
        return max(s.threads for _, s in self.samples)

    def busiest_cpu_share(self, window: float = 1.0) -> float:
        """The highest CPU use over any `window` seconds (1.0 = one core busy)."""
        best = 0.0
        start = 0
        for end in range(1, len(self.samples)):
            while self.samples[end][0] - self.samples[start][0] > window and start < end - 1:
                start += 1
            elapsed = self.samples[end][0] - self.samples[start][0]
            if elapsed >= window * 0.5:
                used = self.samples[end][1].cpu_seconds - self.samples[start][1].cpu_seconds
                best = max(best, used / elapsed)
        return best


def mib(value: float) -> str:
    return f"{value / (1024 * 1024):.0f} MiB"


async def benchmark(snapshots: int, record_figures: bool, env: dict[str, str]) -> None:
    from bench.orchestration import BenchStack, real_wave
    from bench.render.load import WORKER_KEY
    from bench.report import record

    load_before = os.getloadavg()[0]
    async with BenchStack(vms=snapshots, worker_env=env) as stack:
        idle = sample_process_tree(stack.worker.pid)
        with Sampler(stack.worker.pid) as worker, Sampler(stack.simulator_pid) as sim, \
                Sampler(stack.dev_server_pid) as server:
            wave = await real_wave(stack, snapshots, "load")
        time.sleep(1.0)  # let the worker's memory settle once the wave is done
        end = sample_process_tree(stack.worker.pid)
    lines = [
        f"{snapshots} concurrent snapshots ({wave.succeeded} succeeded) in {wave.wall:.1f} s "
        f"({stack.tuning_note})",
        f"worker: RSS idle {mib(idle.rss_bytes)}, peak {mib(worker.peak_rss())}, "
        f"end {mib(end.rss_bytes)}; CPU {worker.cpu_seconds():.1f} s user+sys "
        f"({worker.cpu_seconds() / wave.wall:.2f} cores on average, busiest second "
        f"{worker.busiest_cpu_share():.2f}); threads up to {worker.max_threads()}",
        f"simulator CPU {sim.cpu_seconds():.1f} s (busiest second "
        f"{sim.busiest_cpu_share():.2f}); dev server CPU {server.cpu_seconds():.1f} s "
        f"(busiest second {server.busiest_cpu_share():.2f})",
    ]
    for line in lines:
        print(line)
    if record_figures:
        in_mib = 1024 * 1024
        record(WORKER_KEY, f".venv/bin/python -m bench.worker_load --snapshots {snapshots}"
               + "".join(f" --tune {name}={value}" for name, value in env.items()), {
                   "snapshots": snapshots, "vm_disks": stack.disks, "succeeded": wave.succeeded,
                   "worker": stack.tuning_note, "sample_interval_s": worker.interval,
                   "wall_s": round(wave.wall, 1),
                   "worker_rss_mib": {"idle": round(idle.rss_bytes / in_mib, 1),
                                      "peak": round(worker.peak_rss() / in_mib, 1),
                                      "end": round(end.rss_bytes / in_mib, 1)},
                   "worker_cpu_s": round(worker.cpu_seconds(), 2),
                   "worker_cores_average": round(worker.cpu_seconds() / wave.wall, 3),
                   "worker_busiest_second": round(worker.busiest_cpu_share(), 3),
                   "worker_threads_max": worker.max_threads(),
                   "simulator_cpu_s": round(sim.cpu_seconds(), 2),
                   "simulator_busiest_second": round(sim.busiest_cpu_share(), 3),
                   "dev_server_cpu_s": round(server.cpu_seconds(), 2),
                   "dev_server_busiest_second": round(server.busiest_cpu_share(), 3),
               }, load_start=load_before)


def main() -> None:
    from bench.orchestration import run_stoppable, tuning_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--snapshots", type=int, default=500)
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    parser.add_argument("--tune", action="append", default=[], metavar="VAR=VALUE",
                        help="a VMSNAP_* worker tuning variable for the worker (repeatable)")
    args = parser.parse_args()
    run_stoppable(benchmark(args.snapshots, not args.no_record, tuning_env(args.tune)))


if __name__ == "__main__":
    main()
