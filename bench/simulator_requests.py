"""The simulator's CPU per API request, on the orchestration benchmark's fleet.

Why: the orchestration benchmark needs a dev server, two workers and a minute per run,
and its simulator CPU moves with everything else on the machine. This one starts only
the simulator (the fleet seed of `bench.seeds`), sends a fixed mix shaped like one
vmsnap snapshot per VM (GET VM and VMI, LIST the namespace's PVCs, freeze, create one
VolumeSnapshot per disk, unfreeze, PATCH the VM, GET the snapshots until ready, LIST by
label; nothing is deleted, as in a wave of snapshots that succeed), and reads the
simulator's CPU seconds from /proc before and after. The controllers' work behind the
requests (snapshot contents, statuses, the freeze) counts. `--records` adds what vmsnap
writes besides: one vmsnap.io VirtualMachineSnapshot record per snapshot, created
first, its status patched InProgress, then Succeeded once the VolumeSnapshots are ready.

    .venv/bin/python -m bench.simulator_requests --vms 100 --rounds 2 [--records]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.seeds import NAMESPACE, SNAPSHOT_CLASS, vm_name, write_fleet_seed
from bench.worker_load import sample_process
from starter.local_stack import SimulatorProcess, start_simulator

KUBEVIRT = "/apis/kubevirt.io/v1/namespaces"
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1/namespaces"
SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1/namespaces"
PVCS = "/api/v1/namespaces"
RECORDS = "/apis/vmsnap.io/v1alpha1/namespaces"
MERGE_PATCH = "application/merge-patch+json"
READY_TIMEOUT = 60.0


class BenchError(RuntimeError):
    """A request answered other than the mix expects."""


@dataclass
class Client:
    session: aiohttp.ClientSession
    base: str
    requests: int = 0

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json", expect: int = 200) -> Any:
        self.requests += 1
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.base + path, data=data,
                                        headers={"Content-Type": content_type}) as answer:
            text = await answer.text()
            if answer.status != expect:
                raise BenchError(f"{method} {path}: {answer.status} {text[:300]}")
            return json.loads(text) if text else None


async def snapshot_one(client: Client, index: int, round_: int, disks: int,
                       records: bool = False) -> None:
    vm, ns = vm_name(index), NAMESPACE
    record = f"{RECORDS}/{ns}/vmsnapsnapshots/{vm}-r{round_}"
    if records:
        await client.call("POST", f"{RECORDS}/{ns}/vmsnapsnapshots", {
            "apiVersion": "vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": f"{vm}-r{round_}", "labels": {"bench.vmsnap.io/vm": vm}},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine",
                                "name": vm}, "deletionPolicy": "Delete"},
        }, expect=201)
        await client.call("PATCH", f"{record}/status",
                          {"status": {"phase": "InProgress", "readyToUse": False}},
                          content_type=MERGE_PATCH)
    await client.call("GET", f"{KUBEVIRT}/{ns}/virtualmachines/{vm}")
    await client.call("GET", f"{KUBEVIRT}/{ns}/virtualmachineinstances/{vm}")
    await client.call("GET", f"{PVCS}/{ns}/persistentvolumeclaims")
    await client.call("PUT", f"{SUBRESOURCES}/{ns}/virtualmachineinstances/{vm}/freeze",
                      {"unfreezeTimeout": "60s"})
    names = [f"{vm}-r{round_}-disk{d}" for d in range(disks)]
    for disk, name in enumerate(names):
        await client.call("POST", f"{SNAPSHOTS}/{ns}/volumesnapshots", {
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "labels": {"bench.vmsnap.io/vm": vm}},
            "spec": {"volumeSnapshotClassName": SNAPSHOT_CLASS,
                     "source": {"persistentVolumeClaimName": f"{vm}-disk{disk}"}},
        }, expect=201)
    await client.call("PUT", f"{SUBRESOURCES}/{ns}/virtualmachineinstances/{vm}/unfreeze")
    await client.call("PATCH", f"{KUBEVIRT}/{ns}/virtualmachines/{vm}",
                      {"metadata": {"annotations": {"bench.vmsnap.io/round": str(round_)}}},
                      content_type=MERGE_PATCH)
    deadline = time.monotonic() + READY_TIMEOUT
    for name in names:
        while True:
            found = await client.call("GET", f"{SNAPSHOTS}/{ns}/volumesnapshots/{name}")
            if (found.get("status") or {}).get("readyToUse"):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"snapshot {name} not ready in {READY_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)
    await client.call("GET", f"{SNAPSHOTS}/{ns}/volumesnapshots"
                      f"?labelSelector=bench.vmsnap.io/vm%3D{vm}")
    if records:
        await client.call("PATCH", f"{record}/status", {"status": {
            "phase": "Succeeded", "readyToUse": True,
            "creationTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}},
            content_type=MERGE_PATCH)


async def run_mix(sim: SimulatorProcess, vms: int, disks: int, rounds: int,
                  concurrency: int, records: bool = False) -> tuple[int, float, float]:
    """(requests, simulator CPU seconds, wall seconds) for `rounds` snapshots of each VM."""
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        client = Client(session, sim.url)
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int, round_: int) -> None:
            async with gate:
                await snapshot_one(client, index, round_, disks, records)

        cpu_before, wall_before = sample_process(sim.process.pid).cpu_seconds, time.monotonic()
        for round_ in range(rounds):
            await asyncio.gather(*(one(i, round_) for i in range(vms)))
        cpu = sample_process(sim.process.pid).cpu_seconds - cpu_before
        return client.requests, cpu, time.monotonic() - wall_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--disks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--records", action="store_true",
                        help="also create and status-patch one vmsnap record per snapshot")
    args = parser.parse_args(argv)
    if args.vms < 1 or args.disks < 1 or args.rounds < 1 or args.concurrency < 1:
        parser.error("--vms, --disks, --rounds and --concurrency must be at least 1")
    with tempfile.TemporaryDirectory(prefix="sim-requests-") as folder:
        state = Path(folder)
        seed = write_fleet_seed(state / "seed", args.vms, args.disks)
        sim = start_simulator(state / "sim", [seed], name="sim", timeout=180)
        try:
            requests, cpu, wall = asyncio.run(
                run_mix(sim, args.vms, args.disks, args.rounds, args.concurrency,
                        args.records))
        finally:
            sim.stop()
    print(f"simulator: {requests} requests in {wall:.1f} s wall, CPU {cpu:.2f} s "
          f"({cpu / requests * 1000:.2f} ms per request, controllers included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
