"""RestoreVirtualMachine's saga on the time-skipping server: a fault at each step undoes
exactly what the steps before it did. Activities are doubles on a small in-memory world."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.lock import DEFAULT_LEASE_SECONDS, LOCK_VM, UNLOCK_VM, VmLockInput
from contracts.reporting import RECORD_VM_EVENT, VmEventInput
from contracts.restore import (
    ADD_SNAPSHOT_USER,
    APPLY_RESTORED_VM,
    CREATE_RESTORE_RECORD,
    CREATE_RESTORED_PVCS,
    DELETE_RESTORED_PVCS,
    PREPARE_RESTORE,
    PUT_BACK_VM,
    REMOVE_SNAPSHOT_USER,
    START_VM,
    STOP_VM,
    WAIT_RESTORED_PVCS_BOUND,
    WRITE_RESTORE_STATUS,
    ApplyRestoredVmInput,
    CreatePvcsInput,
    PrepareRestoreInput,
    PutBackVmInput,
    PvcsInput,
    RestoredVolume,
    RestorePlan,
    RestoreRecordInput,
    RestoreVirtualMachineResult,
    SnapshotSource,
    SnapshotUserInput,
    VmPowerInput,
)
from rules.models import PvcState
from rules.naming import restore_workflow_id
from tests.workflows.doubles import CLUSTER, admission
from workflows.restore import RestoreVirtualMachine

NS = "demo"
ORIGINAL_SPEC = {"runStrategy": "Always", "template": {"spec": {"volumes": [
    {"name": "root", "persistentVolumeClaim": {"claimName": "web-root"}}]}}}


@dataclass
class World:
    fail_at: str | None = None
    running: bool = True
    vm_spec: dict[str, Any] = field(default_factory=lambda: dict(ORIGINAL_SPEC))
    kept_spec: dict[str, Any] | None = None
    pvcs: set[str] = field(default_factory=set)
    locked: bool = False
    prepare_inputs: list[PrepareRestoreInput] = field(default_factory=list)
    users: int = 0
    record_phase: str | None = None
    calls: list[str] = field(default_factory=list)
    events: list[VmEventInput] = field(default_factory=list)

    def step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            self.fail_at = None  # one fault: the undo of the same kind then works
            raise ApplicationError(f"injected fault in {name}", type="Injected",
                                   non_retryable=True)

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name=PREPARE_RESTORE.name)
        async def prepare(input: PrepareRestoreInput) -> RestorePlan:
            world.step(PREPARE_RESTORE.name)
            world.prepare_inputs.append(input)
            world.locked = input.lock_lease_seconds is not None  # the plan under the lock
            name = f"web-restore-{input.stamp}"
            return RestorePlan(
                source_vm="web", target="web", restore_name=name,
                source=SnapshotSource(namespace=NS, snapshot=input.snapshot,
                                      content_name="snap-content", content_uid="c-1"),
                target_exists=True, target_running=world.running,
                volumes=[RestoredVolume(volume_name="root", old_claim="web-root",
                                        volume_snapshot="snap-root", pvc_name=f"{name}-root")])

        @activity.defn(name=CREATE_RESTORE_RECORD.name)
        async def create_record(input: RestoreRecordInput) -> bool:
            world.step(CREATE_RESTORE_RECORD.name)
            world.record_phase = input.result.phase
            return True

        @activity.defn(name=WRITE_RESTORE_STATUS.name)
        async def write_status(input: RestoreRecordInput) -> bool:
            world.calls.append(WRITE_RESTORE_STATUS.name)
            world.record_phase = input.result.phase
            return True

        @activity.defn(name=LOCK_VM.name)
        async def lock(input: VmLockInput) -> None:
            world.step(LOCK_VM.name)
            world.locked = True

        @activity.defn(name=UNLOCK_VM.name)
        async def unlock(input: VmLockInput) -> bool:
            world.calls.append(UNLOCK_VM.name)
            world.locked = False
            return True

        @activity.defn(name=ADD_SNAPSHOT_USER.name)
        async def add_user(input: SnapshotUserInput) -> bool:
            world.users += 1  # registered, then the fault: the undo must still run
            world.step(ADD_SNAPSHOT_USER.name)
            return True

        @activity.defn(name=REMOVE_SNAPSHOT_USER.name)
        async def remove_user(input: SnapshotUserInput) -> bool:
            world.calls.append(REMOVE_SNAPSHOT_USER.name)
            world.users = 0
            return True

        @activity.defn(name=STOP_VM.name)
        async def stop(input: VmPowerInput) -> bool:
            world.running = False
            world.step(STOP_VM.name)
            return True

        @activity.defn(name=START_VM.name)
        async def start(input: VmPowerInput) -> bool:
            world.step(START_VM.name)
            world.running = True
            return True

        @activity.defn(name=CREATE_RESTORED_PVCS.name)
        async def create_pvcs(input: CreatePvcsInput) -> list[str]:
            made = list(input.names)
            world.pvcs.update(made)  # made, then the fault (a timeout after the server acted)
            world.step(CREATE_RESTORED_PVCS.name)
            return made

        @activity.defn(name=WAIT_RESTORED_PVCS_BOUND.name)
        async def wait_bound(input: PvcsInput) -> list[PvcState]:
            world.step(WAIT_RESTORED_PVCS_BOUND.name)
            return [PvcState(name=n, phase="Bound", storage_class="csi", requested="1Gi",
                             capacity="1Gi", volume_name="pv", data_source="snap-root",
                             deleting=False) for n in input.names]

        @activity.defn(name=DELETE_RESTORED_PVCS.name)
        async def delete_pvcs(input: PvcsInput) -> list[str]:
            world.calls.append(DELETE_RESTORED_PVCS.name)
            gone = sorted(world.pvcs & set(input.names))
            world.pvcs -= set(input.names)
            return gone

        @activity.defn(name=APPLY_RESTORED_VM.name)
        async def apply(input: ApplyRestoredVmInput) -> bool:
            world.kept_spec = dict(world.vm_spec)  # in the record, as the real one keeps it
            world.vm_spec = {"restored": input.claims}
            world.step(APPLY_RESTORED_VM.name)
            return True

        @activity.defn(name=PUT_BACK_VM.name)
        async def put_back(input: PutBackVmInput) -> bool:
            world.calls.append(PUT_BACK_VM.name)
            assert not input.created and world.kept_spec is not None
            world.vm_spec = dict(world.kept_spec)
            return True

        @activity.defn(name=RECORD_VM_EVENT.name)
        async def record_vm_event(input: VmEventInput) -> str | None:
            world.events.append(input)
            return None

        return [prepare, create_record, write_status, lock, unlock, add_user, remove_user,
                stop, start, create_pvcs, wait_bound, delete_pvcs, apply, put_back,
                record_vm_event, admission()]


async def run_restore(env: WorkflowEnvironment, world: World, **fields: Any) -> Any:
    queue = f"restore-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[RestoreVirtualMachine],
                      activities=world.activities()):
        return await env.client.execute_workflow(
            "RestoreVirtualMachine",
            {"namespace": NS, "snapshot": "snap", "running_vm_policy": "stop", **fields},
            id=restore_workflow_id(CLUSTER, NS, f"web-{uuid.uuid4().hex[:6]}"), task_queue=queue,
            result_type=RestoreVirtualMachineResult)


async def test_a_restore_without_faults_succeeds(env: WorkflowEnvironment) -> None:
    world = World()
    result = await run_restore(env, world)
    assert result.phase == "Succeeded" and result.stopped_vm and result.restarted_vm
    assert world.vm_spec == {"restored": {"root": f"{result.name}-root"}}
    assert world.pvcs == {f"{result.name}-root"} and world.running
    assert not world.locked and world.users == 0 and world.record_phase == "Succeeded"


STEPS = [CREATE_RESTORE_RECORD.name, ADD_SNAPSHOT_USER.name,
         STOP_VM.name, CREATE_RESTORED_PVCS.name, WAIT_RESTORED_PVCS_BOUND.name,
         APPLY_RESTORED_VM.name, START_VM.name]


@pytest.mark.parametrize("step", STEPS)
async def test_a_fault_at_each_step_leaves_the_cluster_as_it_was(
    env: WorkflowEnvironment, step: str
) -> None:
    world = World(fail_at=step)
    with pytest.raises(WorkflowFailureError) as caught:
        await run_restore(env, world)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "Injected"
    details = RestoreVirtualMachineResult.model_validate(cause.details[0])
    assert details.phase == "Failed" and not details.cleanup_errors
    assert world.vm_spec == ORIGINAL_SPEC
    assert world.pvcs == set() and world.running
    assert not world.locked and world.users == 0
    assert world.record_phase == "Failed"
    # the old PVC is never touched: only the restore's own names reach the delete
    assert "web-root" not in world.pvcs


async def test_the_plan_is_made_under_the_target_s_lock(env: WorkflowEnvironment) -> None:
    world = World()
    result = await run_restore(env, world)
    assert result.phase == "Succeeded"
    [prepared] = world.prepare_inputs
    assert prepared.lock_lease_seconds == DEFAULT_LEASE_SECONDS  # no deadline: renewed
    assert LOCK_VM.name not in world.calls  # taken by the planning step itself
    assert UNLOCK_VM.name in world.calls and not world.locked


async def test_a_running_vm_under_policy_fail_is_refused_before_any_change(
    env: WorkflowEnvironment
) -> None:
    world = World()
    with pytest.raises(WorkflowFailureError) as caught:
        await run_restore(env, world, running_vm_policy="fail")
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "VmRunning"
    assert STOP_VM.name not in world.calls and CREATE_RESTORED_PVCS.name not in world.calls
    assert world.running and world.vm_spec == ORIGINAL_SPEC and not world.locked


async def test_bad_input_is_refused(env: WorkflowEnvironment) -> None:
    with pytest.raises(WorkflowFailureError):
        await run_restore(env, World(), running_vm_policy="sometimes")
