"""Refused at the door, on the time-skipping server: a namespace the worker does not serve,
a schedule named outside a schedule's run, a start with no input or two; and a value a
step cannot compute ends the run Failed with its saga run, never a stuck workflow task."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from rules.namespace_scope import NamespaceScope
from rules.naming import snapshot_workflow_id
from tests.workflows.doubles import CLUSTER, NS, World, admission
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot
from workflows.frame import Operation
from workflows.one_input import ExactlyOneInput
from workflows.snapshot import SnapshotVirtualMachine


async def failure(env: WorkflowEnvironment, world: World, *args: Any,
                  scope: str | None = None, kind: str = "SnapshotVirtualMachine"
                  ) -> ApplicationError:
    queue = f"admission-{uuid.uuid4().hex[:8]}"
    activities = [a for a in world.activities()
                  if getattr(a, "__temporal_activity_definition").name != "admit_request"]
    async with Worker(env.client, task_queue=queue,
                      workflows=[SnapshotVirtualMachine, DeleteVirtualMachineSnapshot],
                      activities=[*activities, admission(NamespaceScope.parse(scope))],
                      interceptors=[ExactlyOneInput()]):
        with pytest.raises(WorkflowFailureError) as caught:
            await env.client.execute_workflow(
                kind, args=list(args), id=snapshot_workflow_id(CLUSTER, NS, uuid.uuid4().hex[:8]),
                task_queue=queue, execution_timeout=timedelta(minutes=1))
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def test_a_namespace_outside_the_scope_is_refused_before_any_step(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    refused = await failure(env, world, {"namespace": NS, "vm": "web"}, scope="team-a")
    assert refused.type == "NamespaceNotServed"
    assert f"namespace '{NS}' is not served" in refused.message
    assert world.calls == []
    deletion = await failure(env, world, {"namespace": "kube-system", "name": "x"},
                             scope="team-a", kind="DeleteVirtualMachineSnapshot")
    assert deletion.type == "NamespaceNotServed" and world.calls == []


async def test_a_schedule_named_by_a_client_is_refused(env: WorkflowEnvironment) -> None:
    world = World()
    refused = await failure(env, world, {"namespace": NS, "vm": "web", "schedule": "nightly"})
    assert refused.type == "ValidationError" and "only a schedule's run" in refused.message
    assert world.calls == [] and world.records == {}


@pytest.mark.parametrize("args", [(), ({"namespace": NS, "vm": "web"},) * 2])
async def test_a_start_with_no_input_or_two_fails_at_once(
    env: WorkflowEnvironment, args: tuple[Any, ...]
) -> None:
    world = World()
    refused = await failure(env, world, *args)
    assert refused.type == "ValidationError"
    assert f"exactly one input (one JSON object), not {len(args)}" in refused.message
    assert world.calls == []


# ---- a value a step cannot compute ----------------------------------------------------------

UNDONE: list[str] = []


class Seconds(BaseModel):
    seconds: float


class Outcome(BaseModel):
    phase: str = "InProgress"
    error: str | None = None
    error_type: str | None = None
    cleanup_errors: list[str] = []
    finished_at: datetime | None = None


@workflow.defn(name="OverflowingStep", sandboxed=False)
class OverflowingStep(Operation[Seconds, Outcome]):
    """One step that registers its undo, then computes a time out of range."""

    @workflow.run
    async def run(self, input: Seconds) -> Outcome:
        self.begin(input, Outcome())
        await self.run_steps(self._step())
        return self.finish()

    async def _step(self) -> None:
        async def undo() -> None:
            UNDONE.append("undone")

        self.saga.add("undo the step", undo)
        self.enter("wait")
        await workflow.sleep(timedelta(seconds=self.input.seconds))


async def test_an_overflow_in_a_step_fails_the_run_and_runs_its_saga(
    env: WorkflowEnvironment,
) -> None:
    UNDONE.clear()
    queue = f"overflow-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[OverflowingStep],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        with pytest.raises(WorkflowFailureError) as caught:
            await env.client.execute_workflow(
                OverflowingStep.run, Seconds(seconds=1e308), id=f"overflow-{queue}",
                task_queue=queue, execution_timeout=timedelta(minutes=1))
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidValue", cause
    assert cause.message.startswith("wait: OverflowError"), cause.message
    assert UNDONE == ["undone"]
