"""The client SDK end to end: dev server, simulator and `python worker.py` as processes.

Seeds: the demo cluster (namespace demo) and the misbehaving storage (namespace
faults: `stuck-1` is on storage that never cuts).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from cluster.client import Cluster
from contracts.snapshot import SnapshotVirtualMachineInput
from starter.sdk import (
    AlreadyExists,
    ObjectNotFound,
    SnapshotFailed,
    VmsnapClient,
    VmsnapError,
)
from tests.conftest import SEEDS
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

T = TypeVar("T")
NS = "demo"


@pytest.fixture(scope="module")
def sdk_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEEDS / "demo.yaml", SEEDS / "storage-faults.yaml")
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


@pytest.fixture(scope="module")
async def sdk(sdk_stack: Stack) -> AsyncIterator[VmsnapClient]:
    cluster = Cluster.from_environment(str(sdk_stack.sim.kubeconfig))
    async with VmsnapClient(sdk_stack.client, cluster=cluster,
                            task_queue=sdk_stack.task_queue) as client:
        yield client
    cluster.close()


async def eventually(check: Callable[[], Awaitable[T | None]], what: str,
                     timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_start_follow_list_get_and_delete_a_snapshot(sdk: VmsnapClient) -> None:
    handle = await sdk.start_snapshot(SnapshotVirtualMachineInput(
        namespace=NS, vm="web-1", name="sdk-web", labels={"team": "web"}))
    cluster = await sdk.cluster_id()
    assert handle.workflow_id == f"snapshot/{cluster}/demo/sdk-web"
    steps = set()
    while True:  # the progress query, typed, while it runs
        progress = await handle.progress()
        steps.add(progress.step)
        if progress.step in ("ready", "done"):
            break
        await asyncio.sleep(0.05)
    assert progress.vm == "web-1" and len(progress.volumes) == 3
    joined = await sdk.start_snapshot(SnapshotVirtualMachineInput(
        namespace=NS, vm="web-1", name="sdk-web", labels={"team": "web"}),
        check=False)  # the same request: joins the run
    assert joined.run_id == handle.run_id

    result = await handle.result()
    assert result.phase == "Succeeded" and result.ready_to_use and result.quiesced
    assert result.indications == ["Online", "GuestAgent"]
    assert result.freeze_window_ms is not None

    with pytest.raises(AlreadyExists, match="snapshot demo/sdk-web already exists"):
        await sdk.start_snapshot(SnapshotVirtualMachineInput(namespace=NS, vm="web-1",
                                                             name="sdk-web"))

    [listed] = [i for i in await sdk.list_snapshots(NS, vm="web-1") if i.name == "sdk-web"]
    assert listed.phase == "Succeeded" and listed.ready_to_use
    assert listed.indications == result.indications
    assert listed.freeze_window_ms == result.freeze_window_ms
    assert listed.included_volumes == [v.volume_name for v in result.included_volumes]
    assert {v.volume_name for v in listed.excluded_volumes} == \
        {v.volume_name for v in result.excluded_volumes}
    assert listed.volume_snapshots == result.volume_snapshots
    assert listed.labels["team"] == "web" and listed.workflow_id == handle.workflow_id
    assert all(i.vm == "web-1" for i in await sdk.list_snapshots(NS, vm="web-1"))

    got = await sdk.get_snapshot(NS, "sdk-web")
    assert result.creation_time is not None  # the record keeps whole seconds
    assert got.progress is None and got.creation_time == result.creation_time.replace(
        microsecond=0)

    deleted = await sdk.delete_snapshot(NS, "sdk-web")
    assert sorted(deleted.deleted_volume_snapshots) == sorted(result.volume_snapshots)
    assert deleted.record_deleted and deleted.content_deleted
    assert "sdk-web" not in [i.name for i in await sdk.list_snapshots(NS)]
    with pytest.raises(ObjectNotFound, match="snapshot demo/sdk-web not found"):
        await sdk.get_snapshot(NS, "sdk-web")

    # Every run of it is found by VM (the search attributes the SDK sets at start).
    async def web_runs() -> list[Any] | None:
        runs = await sdk.list_runs(NS, vm="web-1")
        ids = {r.workflow_id for r in runs}
        wanted = {f"snapshot/{cluster}/demo/sdk-web", f"delete-snapshot/{cluster}/demo/sdk-web"}
        return runs if wanted <= ids else None

    runs = await eventually(web_runs, "web-1's runs in visibility")
    assert {(r.vm, r.vm_namespace) for r in runs} == {("web-1", NS)}
    assert not [r for r in await sdk.list_runs(NS, vm="db-1") if r.vm != "db-1"]


async def test_a_snapshot_without_a_name_gets_one(sdk: VmsnapClient) -> None:
    handle = await sdk.start_snapshot(SnapshotVirtualMachineInput(namespace=NS, vm="batch-1"))
    assert re.fullmatch(r"batch-1-\d{8}-\d{6}", handle.name)
    result = await handle.result()
    assert result.name == handle.name and result.phase == "Succeeded"
    assert result.indications == [] and not result.quiesced  # stopped: nothing to freeze


async def test_cancel_a_snapshot_that_waits_for_its_cut(sdk: VmsnapClient) -> None:
    handle = await sdk.start_snapshot(SnapshotVirtualMachineInput(
        namespace="faults", vm="stuck-1", name="stuck-cancel", failure_deadline=120))

    async def cutting() -> bool | None:
        return True if (await handle.progress()).step == "cut" else None

    await eventually(cutting, "the cut step")
    info = await sdk.get_snapshot("faults", "stuck-cancel")
    assert info.phase == "InProgress" and info.progress is not None
    assert info.progress.step == "cut" and info.progress.time_left_seconds
    await sdk.cancel_snapshot("faults", "stuck-cancel")
    with pytest.raises(SnapshotFailed) as failed:
        await handle.result()
    assert (failed.value.message, failed.value.error_type) == ("canceled", "Canceled")
    record = await sdk.get_snapshot("faults", "stuck-cancel")
    assert record.phase == "Failed" and record.error == "canceled"
    with pytest.raises(VmsnapError, match="is not running"):
        await sdk.cancel_snapshot("faults", "stuck-cancel")


async def test_errors_are_typed_and_say_what_is_wrong(sdk: VmsnapClient) -> None:
    with pytest.raises(ObjectNotFound, match=r"^VirtualMachine demo/nope not found$"):
        await sdk.start_snapshot(SnapshotVirtualMachineInput(namespace=NS, vm="nope"))
    with pytest.raises(ObjectNotFound, match=r"^snapshot demo/nope not found$"):
        await sdk.start_delete(NS, "nope")
    with pytest.raises(ObjectNotFound, match=r"^schedule demo/nope not found$"):
        await sdk.get_schedule(NS, "nope")
    # Without the pre-check the workflow finds out, with the same meaning.
    handle = await sdk.start_snapshot(SnapshotVirtualMachineInput(namespace=NS, vm="nope"),
                                      check=False)
    with pytest.raises(SnapshotFailed) as failed:
        await handle.result()
    assert failed.value.error_type == "VmNotFound"
    assert "demo/nope" in failed.value.message
    result = failed.value.result
    assert result is not None and result.phase == "Failed"
