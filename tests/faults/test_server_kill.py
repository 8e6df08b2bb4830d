"""kill -9 of the Temporal dev server mid-run, restarted on the same SQLite file and port:
every workflow completes (the worker and the client reconnect by themselves)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from temporalio.client import Client

from starter.local_stack import (
    reserved_port,
    restart_dev_server,
    start_dev_server,
)
from tests.faults.conftest import (
    Background,
    FaultStack,
    Outcome,
    outcomes,
    request_matcher,
    scale,
    wait_thawed,
)
from tests.faults.invariants import check_invariants
from tests.faults.seeds import SIM, VmSeed, write_seed
from tests.support.background import Scratch, register, scratch
from tests.support.enforced import start_enforced_simulator
from tests.support.sim import Sim

RUNS = scale(3, 10)
VMS = [VmSeed(f"srv-{i}", disks=2, disk_annotations={0: {SIM + "cut-latency": "5s"}})
       for i in range(RUNS)]


@dataclass
class ServerKillRun:
    stack: FaultStack
    ends: dict[str, Outcome]
    killed_at: float


@register(__file__, scratch)
async def kill_the_dev_server_mid_run(given: Scratch) -> ServerKillRun:
    """Runs in the background (conftest) on a dev server of its own, which it kills; its
    processes are stopped by its test, or at session end."""
    tmp_path = given.path
    # Ports no other stack's bind(0) can take while this server is down (see
    # starter.local_stack.reserved_port): the restart must find them free.
    server = await asyncio.to_thread(
        start_dev_server, tmp_path, port=reserved_port(), ui_port=reserved_port(),
        db_file=tmp_path / "temporal.db", name="temporal")
    servers = [server]  # the first, then its restart: every one is stopped at the end
    given.stops.append(lambda: [started.stop() for started in servers])
    sim_process = await asyncio.to_thread(
        start_enforced_simulator, tmp_path, [write_seed(tmp_path / "seed.yaml", VMS)])
    given.stops.append(sim_process.stop)  # stopped even if the stack below never forms
    stack = FaultStack(server, await Client.connect(server.address), Sim(sim_process, tmp_path),
                       tmp_path)
    given.stops.append(stack.stop)
    await asyncio.to_thread(stack.start_worker)
    runs = {vm.namespace: await stack.start_snapshot(vm.namespace, "s") for vm in VMS}
    # Every run is frozen, waiting for its slow disk's cut, when the server dies.
    await asyncio.gather(*(
        stack.wait_for_request(request_matcher("create", "volumesnapshots", vm.namespace))
        for vm in VMS))
    server.process.kill()
    killed_at = time.monotonic()
    stack.server = server = await asyncio.to_thread(
        restart_dev_server, server, tmp_path, name="temporal-2")
    servers.append(server)
    print(f"dev server back in {time.monotonic() - killed_at:.1f}s")
    return ServerKillRun(stack, await outcomes(runs, timeout=90), killed_at)


async def test_kill_the_dev_server_mid_run_and_restart_it(background: Background) -> None:
    run: ServerKillRun = await background.result(kill_the_dev_server_mid_run, timeout=240)
    stack, ends, killed_at = run.stack, run.ends, run.killed_at
    try:
        print(f"all runs ended {time.monotonic() - killed_at:.1f}s after the kill")
        assert all(e.status == "completed" for e in ends.values()), ends
        for namespace, end in ends.items():
            assert end.result is not None and end.result["phase"] == "Succeeded", namespace
            assert end.result["ready_to_use"] and end.result["quiesced"], (namespace, end)
        await wait_thawed(stack.sim, 5)
        check_invariants(stack.sim,
                         expect_succeeded={(vm.namespace, "s"): vm.disks for vm in VMS})
    finally:
        stack.stop()
        stack.server.stop()
