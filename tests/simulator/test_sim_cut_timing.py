"""When the simulated storage cuts, and when its controllers run, on a real simulator core
(store, registry, controllers, event loop) in this process.

- The cut is due `cut-latency` after the VolumeSnapshot was created, as the CSI sidecar
  starts CreateSnapshot right away on a real cluster; the simulated snapshot controller
  being late (it shares one loop with the API) does not move it.
- A snapshot that waited in error (its class did not exist yet) is cut `cut-latency`
  after its content: CreateSnapshot could not start earlier.
- Requests first: queued controller work waits while an API request is handled, runs as
  soon as the last one is answered, and never waits longer than MAX_YIELD_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from bench.seeds import DRIVER, SNAPSHOT_CLASS, fleet_documents
from simulator.context import SimulatorContext
from simulator.controllers.runtime import MAX_YIELD_SECONDS, Runtime
from simulator.runtime import Options, build_context
from simulator.seeding import seed_documents
from simulator.store import Store, WatchEvent

NS, CUT = "bench", 0.2
SNAPSHOTS = ("snapshot.storage.k8s.io", "v1", "volumesnapshots")


@pytest.fixture(scope="module")
async def ctx() -> AsyncIterator[SimulatorContext]:
    context = build_context(Options())
    seed_documents(context.writer, context.registry,
                   [("bench", d) for d in fleet_documents(1, 1, cut_latency="200ms",
                                                          ready_latency="10s")])
    assert await context.behaviours.settle()
    try:
        yield context
    finally:
        await context.behaviours.stop()
        context.watches.shutdown()
        context.registry.close()


def _added_instants(ctx: SimulatorContext) -> dict[str, float]:
    """Wall-clock instant each object (by kind plural) was first ADDED to the store."""
    seen: dict[str, float] = {}

    def note(event: WatchEvent) -> None:
        if event.type == "ADDED":
            seen.setdefault(event.resource.plural, time.time())

    ctx.store.subscribe(note)
    return seen


def _create_snapshot(ctx: SimulatorContext, name: str, snapshot_class: str) -> None:
    kind = ctx.registry.lookup(*SNAPSHOTS)
    ctx.writer.create(kind, NS, {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"persistentVolumeClaimName": "vm-0000-disk0"},
                 "volumeSnapshotClassName": snapshot_class}})


async def _cut_at(ctx: SimulatorContext, name: str, timeout: float = 5.0) -> float:
    kind = ctx.registry.lookup(*SNAPSHOTS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ctx.store.find(kind.resource, NS, name) or {}
        created = (found.get("status") or {}).get("creationTime")
        if created:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        await asyncio.sleep(0.005)
    raise AssertionError(f"{name} was not cut within {timeout}s")


async def test_the_cut_counts_from_the_snapshots_creation_not_its_content(
    ctx: SimulatorContext,
) -> None:
    added = _added_instants(ctx)
    _create_snapshot(ctx, "late-controller", SNAPSHOT_CLASS)
    created = time.time()
    time.sleep(0.1)  # the loop is busy elsewhere: the snapshot controller is 100 ms late
    cut = await _cut_at(ctx, "late-controller")
    assert added["volumesnapshotcontents"] - created >= 0.1
    # From the content it would be >= 300 ms; from the creation, 200 ms and the loop's lag.
    assert CUT - 0.002 <= cut - created < CUT + 0.06, f"cut {cut - created:.3f}s after creation"


async def test_a_snapshot_that_waited_for_its_class_is_cut_after_its_content(
    ctx: SimulatorContext,
) -> None:
    added = _added_instants(ctx)
    _create_snapshot(ctx, "waits", "late-class")
    created = time.time()
    await asyncio.sleep(CUT + 0.05)  # longer than the latency: its class is still missing
    ctx.writer.create(ctx.registry.lookup("snapshot.storage.k8s.io", "v1",
                                          "volumesnapshotclasses"), None, {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": "late-class",
                     "annotations": {"sim.vmsnap.io/cut-latency": "200ms"}},
        "driver": DRIVER, "deletionPolicy": "Delete"})
    cut = await _cut_at(ctx, "waits")
    content = added["volumesnapshotcontents"]
    assert content - created >= CUT + 0.05
    assert cut - content >= CUT - 0.002, f"cut {cut - content:.3f}s after the content"


def _probe(runtime: Runtime) -> list[float]:
    ran: list[float] = []
    runtime.register("probe", lambda key: ran.append(runtime.now()))
    return ran


async def _wait(check: Callable[[], Any], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def test_controllers_wait_for_a_request_in_flight_and_run_once_it_is_answered() -> None:
    runtime = Runtime(Store())
    runtime.start(asyncio.get_running_loop())
    ran = _probe(runtime)
    try:
        runtime.request_started()
        runtime.enqueue("probe", "key")
        await asyncio.sleep(0.005)
        assert ran == []  # held while the request is handled
        answered = runtime.now()
        runtime.request_finished()
        await _wait(lambda: ran)
        assert answered <= ran[0] < answered + MAX_YIELD_SECONDS / 2
        runtime.enqueue("probe", "again")  # nothing in flight: at once
        queued = runtime.now()
        await _wait(lambda: len(ran) == 2)
        assert ran[1] - queued < MAX_YIELD_SECONDS / 2
    finally:
        runtime.stop()


async def test_controllers_never_wait_longer_than_the_bound() -> None:
    runtime = Runtime(Store())
    runtime.start(asyncio.get_running_loop())
    ran = _probe(runtime)
    try:
        runtime.request_started()  # and never finished: a slow request
        queued = runtime.now()
        runtime.enqueue("probe", "key")
        await _wait(lambda: ran)
        assert MAX_YIELD_SECONDS - 0.002 <= ran[0] - queued < MAX_YIELD_SECONDS + 0.5
        runtime.request_finished()
    finally:
        runtime.stop()
