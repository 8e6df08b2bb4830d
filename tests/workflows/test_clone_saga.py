"""CloneVirtualMachine's saga on the time-skipping server: a fault at each step (the child
snapshot and its deletion included) undoes exactly what the steps before it did, and the
`vmsnap_compensations` counter counts it. Activities and the two child workflows are
doubles on a small in-memory world; the child doubles act through activities, since a
workflow must not touch shared state itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from contracts.clone import (
    CHECK_CLONE_SOURCE,
    CREATE_CLONE_VM,
    DELETE_CLONE_VM,
    PREPARE_CLONE,
    WRITE_CLONE_RECORD,
    CheckCloneSourceInput,
    CloneRecordInput,
    CloneVirtualMachineResult,
    CloneVmRef,
    CreateCloneVmInput,
    PrepareCloneInput,
)
from contracts.delete_snapshot import (
    DeleteVirtualMachineSnapshotInput,
    DeleteVirtualMachineSnapshotResult,
)
from contracts.reporting import COMPENSATIONS, RECORD_VM_EVENT, VmEventInput
from contracts.restore import (
    ADD_SNAPSHOT_USER,
    CREATE_RESTORED_PVCS,
    DELETE_RESTORED_PVCS,
    REMOVE_SNAPSHOT_USER,
    WAIT_RESTORED_PVCS_BOUND,
    CreatePvcsInput,
    PvcsInput,
    RestoredVolume,
    RestorePlan,
    SnapshotSource,
    SnapshotUserInput,
)
from contracts.snapshot import SnapshotVirtualMachineInput, SnapshotVirtualMachineResult
from rules.models import PvcState
from rules.naming import clone_workflow_id
from tests.workflows.conftest import TEST_SERVER
from tests.workflows.doubles import CLUSTER, admission
from workflows.clone import CloneVirtualMachine

NS = "demo"
TAKE_SNAPSHOT = "double_take_snapshot"
DELETE_SNAPSHOT = "double_delete_snapshot"
CHILD_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="SnapshotVirtualMachine")
class SnapshotDouble:
    @workflow.run
    async def run(self, input: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        return await workflow.execute_activity(
            TAKE_SNAPSHOT, input, result_type=SnapshotVirtualMachineResult,
            start_to_close_timeout=CHILD_TIMEOUT)


@workflow.defn(name="DeleteVirtualMachineSnapshot")
class DeleteSnapshotDouble:
    @workflow.run
    async def run(
        self, input: DeleteVirtualMachineSnapshotInput
    ) -> DeleteVirtualMachineSnapshotResult:
        return await workflow.execute_activity(
            DELETE_SNAPSHOT, input, result_type=DeleteVirtualMachineSnapshotResult,
            start_to_close_timeout=CHILD_TIMEOUT)


@dataclass
class World:
    """The cluster as the clone sees it. `fail_at` fails that step once; a failing
    CREATE_CLONE_VM first makes the VM, as a create that timed out after the server acted."""

    fail_at: str | None = None
    snapshots: set[str] = field(default_factory=lambda: {"snap"})
    users: set[str] = field(default_factory=set)
    pvcs: set[str] = field(default_factory=set)
    vms: set[str] = field(default_factory=lambda: {"web"})
    record_phase: str | None = None
    calls: list[str] = field(default_factory=list)
    creating_vm: asyncio.Event = field(default_factory=asyncio.Event)
    vm_create_takes: float = 0.0

    def step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            self.fail_at = None
            raise ApplicationError(f"injected fault in {name}", type="Injected",
                                   non_retryable=True)

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name=CHECK_CLONE_SOURCE.name)
        async def check(input: CheckCloneSourceInput) -> bool:
            world.step(CHECK_CLONE_SOURCE.name)
            return True

        @activity.defn(name=WRITE_CLONE_RECORD.name)
        async def write_record(input: CloneRecordInput) -> bool:
            world.step(WRITE_CLONE_RECORD.name)
            world.record_phase = input.result.phase
            return True

        @activity.defn(name=TAKE_SNAPSHOT)
        async def take(input: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
            assert input.name, "the clone names its temporary snapshot"
            world.snapshots.add(input.name)  # made, then (maybe) reported failed
            world.step("SnapshotVirtualMachine")
            return SnapshotVirtualMachineResult(
                namespace=input.namespace, name=input.name, vm=input.vm, phase="Succeeded",
                ready_to_use=True, started_at=activity.info().started_time)

        @activity.defn(name=DELETE_SNAPSHOT)
        async def delete(input: DeleteVirtualMachineSnapshotInput
                         ) -> DeleteVirtualMachineSnapshotResult:
            world.step("DeleteVirtualMachineSnapshot")
            world.snapshots.discard(input.name)
            return DeleteVirtualMachineSnapshotResult(
                namespace=input.namespace, name=input.name, deletion_policy="Delete")

        @activity.defn(name=ADD_SNAPSHOT_USER.name)
        async def add_user(input: SnapshotUserInput) -> bool:
            world.step(ADD_SNAPSHOT_USER.name)
            world.users.add(input.snapshot)
            return True

        @activity.defn(name=REMOVE_SNAPSHOT_USER.name)
        async def remove_user(input: SnapshotUserInput) -> bool:
            world.step(REMOVE_SNAPSHOT_USER.name)
            world.users.discard(input.snapshot)
            return True

        @activity.defn(name=PREPARE_CLONE.name)
        async def prepare(input: PrepareCloneInput) -> RestorePlan:
            world.step(PREPARE_CLONE.name)
            assert input.snapshot in world.snapshots
            pvc = f"{input.clone_name}-root"
            return RestorePlan(
                source_vm="web", target=input.target, restore_name=input.clone_name,
                source=SnapshotSource(namespace=NS, snapshot=input.snapshot,
                                      content_name=f"{input.snapshot}-content",
                                      content_uid="c-1"),
                target_exists=False, target_running=False,
                volumes=[RestoredVolume(volume_name="root", old_claim="web-root",
                                        volume_snapshot="vs-root", pvc_name=pvc)])

        @activity.defn(name=CREATE_RESTORED_PVCS.name)
        async def create_pvcs(input: CreatePvcsInput) -> list[str]:
            made = list(input.names)
            world.step(CREATE_RESTORED_PVCS.name)
            world.pvcs |= set(made)
            return made

        @activity.defn(name=WAIT_RESTORED_PVCS_BOUND.name)
        async def wait_bound(input: PvcsInput) -> list[PvcState]:
            world.step(WAIT_RESTORED_PVCS_BOUND.name)
            return [PvcState(name=n, phase="Bound", storage_class="csi", requested="1Gi",
                             capacity="1Gi", volume_name="pv", data_source="vs-root",
                             deleting=False) for n in input.names]

        @activity.defn(name=DELETE_RESTORED_PVCS.name)
        async def delete_pvcs(input: PvcsInput) -> list[str]:
            world.calls.append(DELETE_RESTORED_PVCS.name)
            gone = sorted(world.pvcs & set(input.names))
            world.pvcs -= set(gone)
            return gone

        @activity.defn(name=CREATE_CLONE_VM.name)
        async def create_vm(input: CreateCloneVmInput) -> bool:
            world.creating_vm.set()
            await asyncio.sleep(world.vm_create_takes)  # no heartbeat: it never hears a cancel
            world.vms.add(input.options.target)
            world.step(CREATE_CLONE_VM.name)
            return True

        @activity.defn(name=DELETE_CLONE_VM.name)
        async def delete_vm(input: CloneVmRef) -> bool:
            world.calls.append(DELETE_CLONE_VM.name)
            assert input.target != "web", "the source VM is never the one deleted"
            present = input.target in world.vms
            world.vms.discard(input.target)
            return present

        @activity.defn(name=RECORD_VM_EVENT.name)
        async def record_vm_event(input: VmEventInput) -> str | None:
            return None

        return [check, write_record, take, delete, add_user, remove_user, prepare,
                create_pvcs, wait_bound, delete_pvcs, create_vm, delete_vm, record_vm_event,
                admission()]


@pytest.fixture(scope="module")
async def metered() -> AsyncIterator[tuple[WorkflowEnvironment, MetricBuffer]]:
    """A time-skipping server whose runtime keeps metrics in a buffer to read back."""
    buffer = MetricBuffer(10_000)
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter,
        runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer)))
    yield environment, buffer
    await environment.shutdown()


def compensations(buffer: MetricBuffer) -> int:
    return sum(int(u.value) for u in buffer.retrieve_updates()
               if u.metric.name == COMPENSATIONS and u.attributes.get("operation") == "clone")


def clone_worker(env: WorkflowEnvironment, world: World, queue: str) -> Worker:
    return Worker(env.client, task_queue=queue,
                  workflows=[CloneVirtualMachine, SnapshotDouble, DeleteSnapshotDouble],
                  activities=world.activities(), workflow_runner=UnsandboxedWorkflowRunner())


async def run_clone(env: WorkflowEnvironment, world: World, **fields: Any) -> Any:
    queue = f"clone-{uuid.uuid4().hex[:8]}"
    target = f"copy-{uuid.uuid4().hex[:6]}"
    async with clone_worker(env, world, queue):
        return await env.client.execute_workflow(
            "CloneVirtualMachine", {"namespace": NS, "target": target, **fields},
            id=clone_workflow_id(CLUSTER, NS, target), task_queue=queue,
            result_type=CloneVirtualMachineResult)


@pytest.mark.parametrize("source", [{"source_vm": "web"}, {"source_snapshot": "snap"}])
async def test_a_clone_without_faults_succeeds_and_counts_no_compensation(
    metered: tuple[WorkflowEnvironment, MetricBuffer], source: dict[str, str]
) -> None:
    env, buffer = metered
    compensations(buffer)
    world = World()
    result = await run_clone(env, world, **source)
    assert result.phase == "Succeeded" and world.record_phase == "Succeeded"
    assert world.vms == {"web", result.target}
    assert world.pvcs == {f"{result.name}-root"}
    assert world.snapshots == {"snap"} and world.users == set()
    assert result.temporary_snapshot == ("source_vm" in source)
    assert compensations(buffer) == 0


FROM_VM_STEPS = [CHECK_CLONE_SOURCE.name, WRITE_CLONE_RECORD.name, "SnapshotVirtualMachine",
                 ADD_SNAPSHOT_USER.name, PREPARE_CLONE.name, CREATE_RESTORED_PVCS.name,
                 WAIT_RESTORED_PVCS_BOUND.name, "DeleteVirtualMachineSnapshot",
                 CREATE_CLONE_VM.name]


@pytest.mark.parametrize("step", FROM_VM_STEPS)
async def test_a_fault_at_each_step_leaves_nothing_behind(
    metered: tuple[WorkflowEnvironment, MetricBuffer], step: str
) -> None:
    env, buffer = metered
    compensations(buffer)
    world = World(fail_at=step)
    with pytest.raises(WorkflowFailureError) as caught:
        await run_clone(env, world, source_vm="web")
    assert world.fail_at is None, f"{step} never ran"
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "Injected", cause
    details = CloneVirtualMachineResult.model_validate(cause.details[0])
    assert details.phase == "Failed" and not details.cleanup_errors
    assert world.vms == {"web"} and world.pvcs == set()
    assert world.snapshots == {"snap"} and world.users == set()
    if step != CHECK_CLONE_SOURCE.name:  # refused before the record exists
        assert world.record_phase == "Failed"
    else:
        assert world.record_phase is None
    if step == CREATE_CLONE_VM.name:
        assert DELETE_CLONE_VM.name in world.calls
    assert compensations(buffer) == 1


async def test_a_cancel_while_the_vm_is_created_still_undoes_it(
    metered: tuple[WorkflowEnvironment, MetricBuffer],
) -> None:
    """The create completes after the cancel request (Temporal then hands back its result
    and the request is spent): the clone must still roll back, not succeed."""
    env, buffer = metered
    compensations(buffer)
    world = World(vm_create_takes=1.0)
    queue, target = f"clone-{uuid.uuid4().hex[:8]}", f"copy-{uuid.uuid4().hex[:6]}"
    async with clone_worker(env, world, queue):
        handle = await env.client.start_workflow(
            "CloneVirtualMachine", {"namespace": NS, "target": target, "source_vm": "web"},
            id=clone_workflow_id(CLUSTER, NS, target), task_queue=queue,
            result_type=CloneVirtualMachineResult)
        await asyncio.wait_for(world.creating_vm.wait(), timeout=30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert DELETE_CLONE_VM.name in world.calls
    assert world.vms == {"web"} and world.pvcs == set()
    assert world.snapshots == {"snap"} and world.users == set()
    assert world.record_phase == "Failed"
    assert compensations(buffer) == 1
