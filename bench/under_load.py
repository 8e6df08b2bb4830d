"""Under load: N VMs of D disks snapshotted at once, per disk or as a group, and the guests' freeze.

Runs, for each worker setting, a stack of its own (dev server, simulator seeded with the
largest fleet for each disk count, storage that cuts `--cut` after each VolumeSnapshot or
VolumeGroupSnapshot is created, a default VolumeGroupSnapshotClass of the same driver;
worker.py) and, for each mode, disk count D and size N, starts N
snapshots at once through the client SDK (`VmsnapClient.start_snapshot`), one wave
after the other, each snapshot named for its wave. Figures come from the simulator:
per guest its freeze log (frozen to thawed), against the class's cut latency, and its
thaw after the last cut (each VolumeSnapshot's or VolumeGroupSnapshot's
creationTime); per wave the wall time, the snapshots Succeeded and the worker's CPU
(from /proc).

    .venv/bin/python -m bench.under_load
    .venv/bin/python -m bench.under_load --sizes 50 200 --disks 8 --modes per-disk \\
        --worker-env VMSNAP_MAX_FREEZES_IN_FLIGHT=0 --worker-env VMSNAP_MAX_FREEZES_IN_FLIGHT=16

`--worker-env` sets a variable of the worker's environment; a variable given several
times is measured with each of its values in turn (each on a fresh stack, so that every
setting starts from the same cluster), side by side in one report: before and after a
setting.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.orchestration import run_stoppable
from bench.render.under_load import KEY, setting_label, verdicts
from bench.seeds import NAMESPACE, fleet_documents, group_snapshot_class, vm_name
from bench.under_load_figures import (
    MODES,
    Guest,
    Wave,
    cell_figures,
    describe,
    guest_figures,
    storage_cut_ms,
)
from bench.worker_load import sample_process_tree
from contracts.snapshot import SnapshotVirtualMachineInput, SnapshotVirtualMachineResult
from rules.durations import parse_duration
from rules.naming import SNAPSHOT_LABEL
from starter.local_stack import (
    DevServerProcess,
    ManagedProcess,
    SimulatorProcess,
    StackError,
    start_dev_server,
    start_simulator,
    start_worker,
)
from starter.sdk import VmsnapClient
from starter.worker_tuning import WorkerTuning, WorkerTuningError
from tests.support.sim import Sim

BENCH_CLUSTER = "bench"  # the worker's VMSNAP_CLUSTER_ID
TASK_QUEUE = "bench"
READY = "300ms"  # cut to readyToUse: in each wave's wall time, not in the freeze
LIST_CHUNK = 100  # snapshot names per label-selector list request
SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots"
GROUPS = "/apis/groupsnapshot.storage.k8s.io/v1/namespaces/{ns}/volumegroupsnapshots"


def fleet_prefix(disks: int) -> str:
    return f"vm-d{disks}"


def seed_documents(vms: int, disk_counts: Iterable[int], cut: str,
                   ready: str = READY) -> list[dict[str, Any]]:
    """`vms` running VMs with a guest agent per disk count (`vm-dD-NNNN`), one CSI class
    with its VolumeSnapshotClass and default VolumeGroupSnapshotClass, both cutting
    `cut` after creation."""
    docs: list[dict[str, Any]] = []
    for disks in dict.fromkeys(disk_counts):
        fleet = fleet_documents(vms, disks, cut_latency=cut, ready_latency=ready,
                                prefix=fleet_prefix(disks))
        docs += fleet if not docs else [d for d in fleet if d["kind"] in
                                        ("PersistentVolumeClaim", "VirtualMachine")]
    return [*docs, group_snapshot_class(cut, ready)]


def worker_settings(assignments: Sequence[str]) -> list[dict[str, str]]:
    """The worker environments to measure from `VMSNAP_NAME=VALUE` assignments: a name
    given several times is measured with each value (every combination, in the order
    given); none at all is one setting, the defaults. Names outside VMSNAP_* and values
    the worker's tuning refuses fail here, before anything starts."""
    values: dict[str, list[str]] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name.startswith("VMSNAP_") or not name[len("VMSNAP_"):]:
            raise ValueError(f"{assignment!r} is not VMSNAP_NAME=VALUE")
        if value in values.setdefault(name, []):
            raise ValueError(f"{assignment!r} is given twice")
        values[name].append(value)
    settings = [dict(zip(values, chosen, strict=True))
                for chosen in itertools.product(*values.values())]
    for env in settings:
        try:
            WorkerTuning.from_environment(env)
        except WorkerTuningError as error:
            raise ValueError(str(error)) from None
    return settings


def snapshot_request(mode: str, vm: str, name: str) -> SnapshotVirtualMachineInput:
    """The snapshot input of `mode`: per disk says `never`, group says `auto` (every
    disk of a bench VM shares the driver with the default group class)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    return SnapshotVirtualMachineInput(namespace=NAMESPACE, vm=vm, name=name,
                                       group_snapshot=MODES[mode])


def snapshot_name(setting: int, mode: str, vms: int, disks: int, index: int) -> str:
    """Unique per wave: the worker setting, mode, size and the VM's index."""
    short = {"per-disk": "pd", "group": "g"}[mode]
    return f"ul{setting}-{short}{vms}x{disks}-{index:04d}"


def label_selector(names: Sequence[str]) -> str:
    return f"{SNAPSHOT_LABEL} in ({','.join(names)})"


def creation_times(items: Iterable[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Each snapshot's (its `vmsnap.io/snapshot` label) objects cut: (name, creationTime)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        metadata = item.get("metadata") or {}
        name = (metadata.get("labels") or {}).get(SNAPSHOT_LABEL)
        cut = (item.get("status") or {}).get("creationTime")
        if name and cut:
            found.setdefault(name, []).append((metadata.get("name", ""), cut))
    return found


def create_arrivals(requests: Iterable[Mapping[str, Any]], resource: str) -> dict[str, str]:
    """When each `resource` object of the bench namespace was created, by name, from the
    simulator's request log (the create's arrival; members a controller made are not
    there)."""
    return {entry["created"]: entry["time"] for entry in requests
            if entry.get("verb") == "create" and entry.get("resource") == resource
            and entry.get("namespace") == NAMESPACE and entry.get("status") == 201
            and entry.get("created")}


def outcome(answer: SnapshotVirtualMachineResult | BaseException) -> str | None:
    """None for a snapshot that Succeeded and is ready to use; else why not, in a line."""
    if isinstance(answer, BaseException):
        return f"{type(answer).__name__}: {answer}".splitlines()[0]
    if answer.phase != "Succeeded" or not answer.ready_to_use:
        return f"phase {answer.phase}, ready {answer.ready_to_use}: {answer.error or ''}"
    return None


@dataclass
class Stack:
    """The dev server and simulator of the whole run, and the worker of one setting."""

    sim: Sim
    client: Client
    vmsnap: VmsnapClient
    state: Path
    temporal_address: str
    temporal_namespace: str
    worker: ManagedProcess | None = None

    def use_worker(self, env: dict[str, str], generation: int) -> None:
        """Stop the running worker, if any, and start worker.py with `env`."""
        if self.worker is not None:
            self.worker.stop()
        self.worker = None
        self.worker = start_worker(
            self.state / f"worker-{generation}", self.temporal_address, self.sim.kubeconfig,
            task_queue=TASK_QUEUE, namespace=self.temporal_namespace,
            extra_env={**env, "VMSNAP_CLUSTER_ID": BENCH_CLUSTER}, timeout=120)

    def list_cut(self, path: str, names: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        for start in range(0, len(names), LIST_CHUNK):
            query = urllib.parse.quote(label_selector(names[start:start + LIST_CHUNK]))
            answer = self.sim.request("GET", f"{path.format(ns=NAMESPACE)}?labelSelector={query}")
            for name, cuts in creation_times(answer["items"]).items():
                found.setdefault(name, []).extend(cuts)
        return found


def wait_running_vmis(sim: Sim, count: int, timeout: float = 300.0) -> None:
    deadline, running = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        items = sim.request("GET", "/apis/kubevirt.io/v1/virtualmachineinstances")["items"]
        running = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Running")
        if running >= count:
            return
        time.sleep(0.5)
    raise StackError(f"only {running} of {count} VMs running after {timeout:.0f}s")


@asynccontextmanager
async def stack_for(docs: list[dict[str, Any]]) -> AsyncIterator[Stack]:
    """Dev server and simulator on `docs` (its VMs running); workers come per setting.
    Every process is stopped by its PID on the way out."""
    vms = sum(1 for d in docs if d["kind"] == "VirtualMachine")
    with tempfile.TemporaryDirectory(prefix="vmsnap-bench-") as folder:
        state = Path(folder)
        seed = state / "seed.yaml"
        seed.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        started: list[DevServerProcess | SimulatorProcess] = []
        stack: Stack | None = None
        try:
            dev = start_dev_server(state / "temporal")
            started.append(dev)
            simulator = start_simulator(state / "sim", [seed], name="sim", timeout=300)
            started.append(simulator)
            sim = Sim(simulator, state / "sim")
            wait_running_vmis(sim, vms)
            client = await Client.connect(dev.address, namespace=dev.namespace,
                                          data_converter=pydantic_data_converter)
            vmsnap = VmsnapClient(client, cluster_id=BENCH_CLUSTER, task_queue=TASK_QUEUE)
            stack = Stack(sim, client, vmsnap, state, dev.address, dev.namespace)
            yield stack
        finally:
            if stack is not None and stack.worker is not None:
                stack.worker.stop()
            for process in reversed(started):
                process.stop()


async def wave(stack: Stack, setting: int, mode: str, vms: int, disks: int) -> Wave:
    """`vms` snapshots of `vms` VMs of `disks` disks, all started at once; their figures."""
    if stack.worker is None:
        raise RuntimeError("no worker is running")
    targets = [(vm_name(i, fleet_prefix(disks)), snapshot_name(setting, mode, vms, disks, i))
               for i in range(vms)]
    requests = [snapshot_request(mode, vm, name) for vm, name in targets]
    freezes_before = len(stack.sim.freeze_log())
    requests_mark = stack.sim.request("GET", "/sim/requests?since=999999999999")["next"]
    cpu_before = sample_process_tree(stack.worker.pid).cpu_seconds

    async def one(request: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        handle = await stack.vmsnap.start_snapshot(request, check=False)
        return await handle.result()

    began = time.monotonic()
    answers = await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
    wall = time.monotonic() - began
    cpu = sample_process_tree(stack.worker.pid).cpu_seconds - cpu_before
    freezes = stack.sim.freeze_log()[freezes_before:]
    names = [name for _, name in targets]
    cuts = stack.list_cut(SNAPSHOTS, names)
    group_cuts = stack.list_cut(GROUPS, names)
    requests = stack.sim.request("GET", f"/sim/requests?since={requests_mark}")["items"]
    arrived = {**create_arrivals(requests, "volumesnapshots"),
               **create_arrivals(requests, "volumegroupsnapshots")}
    guests: list[Guest] = []
    for (vm, name), answer in zip(targets, answers, strict=True):
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # cancelled or interrupted: stop, do not count it as a failure
        mine = [*cuts.get(name, []), *group_cuts.get(name, [])]
        guests.append(guest_figures(
            vm, NAMESPACE, freezes, [cut for _, cut in cuts.get(name, [])],
            [cut for _, cut in group_cuts.get(name, [])], outcome(answer),
            storage_cut_ms((cut, arrived.get(obj)) for obj, cut in mine)))
    return Wave(mode, vms, disks, tuple(guests), wall, cpu)


async def warm_up(stack: Stack, setting: int, modes: Sequence[str], disks: int) -> None:
    """One snapshot per mode before the waves, so the first wave does not pay for the
    worker's first workflow tasks; its figures are not kept."""
    for mode in modes:
        request = snapshot_request(mode, vm_name(0, fleet_prefix(disks)),
                                   f"ul{setting}-warm-{'pd' if mode == 'per-disk' else 'g'}")
        await (await stack.vmsnap.start_snapshot(request, check=False)).result()


async def benchmark(sizes: Sequence[int], disk_counts: Sequence[int], modes: Sequence[str],
                    cut: str, settings: Sequence[dict[str, str]], record_figures: bool,
                    command: str) -> dict[str, Any]:
    cut_ms = parse_duration(cut) * 1000
    load_before = os.getloadavg()[0]
    stored: list[dict[str, Any]] = []
    # Each setting on a stack of its own: its waves start from the same cluster as the
    # other settings' (the simulator keeps every snapshot a wave made, and a fuller one
    # answers more slowly on the same cores).
    for index, env in enumerate(settings):
        async with stack_for(seed_documents(max(sizes), disk_counts, cut)) as stack:
            stack.use_worker(env, index)
            print(f"worker: {setting_label(env)}", flush=True)
            await warm_up(stack, index, modes, min(disk_counts))
            cells = []
            for mode in modes:
                for disks in disk_counts:
                    for vms in sizes:
                        measured = cell_figures(await wave(stack, index, mode, vms, disks),
                                                cut_ms)
                        print(describe(measured), flush=True)
                        cells.append(measured)
            stored.append({"worker_env": env, "cells": cells})
    figures = {"cut_ms": round(cut_ms, 3), "ready": READY, "sizes": list(sizes),
               "disks": list(disk_counts), "modes": list(modes), "settings": stored}
    for judged in verdicts(figures):
        print(f"aim: {judged.aim}: {judged.figure}: {'met' if judged.met else 'NOT MET'}")
    print(f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
          f"end, on {os.cpu_count()} cores")
    if record_figures:
        from bench.report import record

        record(KEY, command, figures, load_start=load_before)
    return figures


def command_line(sizes: Sequence[int], disks: Sequence[int], modes: Sequence[str], cut: str,
                 assignments: Sequence[str]) -> str:
    return " ".join([".venv/bin/python -m bench.under_load", "--sizes", *map(str, sizes),
                     "--disks", *map(str, disks), "--modes", *modes, "--cut", cut,
                     *(f"--worker-env {a}" for a in assignments)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200],
                        help="VMs snapshotted at once, one wave each (default 10 50 200)")
    parser.add_argument("--disks", type=int, nargs="+", default=[1, 8],
                        help="disks per VM (default 1 8)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                        help="per-disk: group_snapshot never; group: group_snapshot auto")
    parser.add_argument("--cut", default="200ms",
                        help="the storage's cut latency, per VolumeSnapshot and per group")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="a VMSNAP_* variable for the worker (repeatable; a variable "
                             "given several times is measured with each value)")
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes) or any(d < 1 for d in args.disks):
        parser.error("sizes and disk counts must be positive")
    try:
        cut_seconds = parse_duration(args.cut)
    except ValueError as error:
        parser.error(f"--cut: {error}")
    if cut_seconds <= 0:
        parser.error("--cut must be longer than 0: the frozen time is compared with it")
    try:
        settings = worker_settings(args.worker_env)
    except ValueError as error:
        parser.error(f"--worker-env: {error}")
    sizes, disks = sorted(set(args.sizes)), sorted(set(args.disks))
    modes = list(dict.fromkeys(args.modes))
    run_stoppable(benchmark(sizes, disks, modes, args.cut, settings, not args.no_record,
                            command_line(sizes, disks, modes, args.cut, args.worker_env)))


if __name__ == "__main__":
    main()
