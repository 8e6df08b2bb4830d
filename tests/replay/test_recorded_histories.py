"""The committed histories replay on the current workflows: upgrade safety.

A run in flight when the worker is upgraded finishes on the new code, which replays the
run's history so far; a change that makes the code issue other commands than the
history holds (an activity added, removed or moved, a timer, a child) stalls every such
run with a nondeterminism error. The histories under tests/replay/histories/ were
recorded through the real worker (tests/replay/record_histories.py); replaying them here
catches such a change before it ships. An intended change goes behind
`workflow.patched()` (or worker versioning) and the histories are recorded again
(docs/production.md, "Changing a workflow safely").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from contracts.snapshot import SnapshotVirtualMachineInput, SnapshotVirtualMachineResult
from tests.replay.cases import CASES, CLOSING_EVENTS, HISTORIES, Case, load, summary
from worker import WORKFLOWS
from workflows.snapshot import SnapshotVirtualMachine

HISTORY_FILES = sorted(HISTORIES.glob("*.json"))
RECORD = "`.venv/bin/python -m tests.replay.record_histories`"


def history(case: Case) -> WorkflowHistory:
    return WorkflowHistory.from_json(case.name, case.path.read_text())


def workflow_name(cls: type) -> str:
    """The registered name of a workflow class (the SDK keeps its definition on it)."""
    name = workflow._Definition.must_from_class(cls).name
    assert name is not None, f"{cls.__name__} is a dynamic workflow"
    return name


def test_every_workflow_type_has_a_recorded_history() -> None:
    """A workflow registered on the worker ships with a history, or its changes go unseen."""
    recorded = {summary(load(path))[0] for path in HISTORY_FILES}
    missing = sorted({workflow_name(w) for w in WORKFLOWS} - recorded)
    assert not missing, f"no recorded history of {missing}: add a case to tests/replay/" \
                        f"cases.py and record_histories.py, then run {RECORD}"


def test_the_histories_are_the_recorded_cases() -> None:
    """Each case has its history and each history ended as its case says (a recording
    that went down another path would prove nothing about that path)."""
    assert {p.stem for p in HISTORY_FILES} == {c.name for c in CASES}, f"run {RECORD}"
    for case in CASES:
        expected = (case.workflow_type, CLOSING_EVENTS[case.outcome], case.error_type)
        assert summary(load(case.path)) == expected, case.name


async def test_every_recorded_history_replays() -> None:
    """On one replayer, sandboxed as the worker runs them."""
    async def histories() -> AsyncIterator[WorkflowHistory]:
        for case in CASES:
            yield history(case)

    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    async with replayer.workflow_replay_iterator(histories()) as results:
        failures = {r.history.workflow_id: f"{type(r.replay_failure).__name__}: "
                                           f"{r.replay_failure}"
                    async for r in results if r.replay_failure is not None}
    assert not failures, (
        "recorded runs no longer replay: a change to a workflow's commands would stall "
        "runs in flight at an upgrade; put it behind workflow.patched() or, if intended "
        f"and drained, run {RECORD} (docs/production.md)\n"
        + "\n".join(f"{name}: {error}" for name, error in sorted(failures.items())))


# ---- the replay catches a changed workflow, and lets a patched change through --------------
# Run without the sandbox: these classes live in this test module, which the sandbox would
# import afresh (with pytest) for every replay.


@workflow.defn(name="SnapshotVirtualMachine", sandboxed=False)
class SnapshotWithAnExtraTimer(SnapshotVirtualMachine):
    """A new command ahead of the others, as an unguarded change would add one."""

    @workflow.run
    async def run(self, input: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(input)


@workflow.defn(name="SnapshotVirtualMachine", sandboxed=False)
class SnapshotWithAPatchedTimer(SnapshotVirtualMachine):
    """The same change behind `workflow.patched`: new runs take it, recorded runs do not."""

    @workflow.run
    async def run(self, input: SnapshotVirtualMachineInput) -> SnapshotVirtualMachineResult:
        if workflow.patched("wait-before-snapshot"):
            await workflow.sleep(timedelta(seconds=1))
        return await super().run(input)


def snapshot_case() -> Case:
    return next(c for c in CASES if c.name == "snapshot-succeeded")


async def replay_snapshot_on(cls: type[Any]) -> Exception | None:
    replayer = Replayer(workflows=[cls], data_converter=pydantic_data_converter,
                        workflow_runner=UnsandboxedWorkflowRunner())
    result = await replayer.replay_workflow(history(snapshot_case()),
                                            raise_on_replay_failure=False)
    return result.replay_failure


async def test_a_changed_command_order_fails_the_replay() -> None:
    failure = await replay_snapshot_on(SnapshotWithAnExtraTimer)
    assert isinstance(failure, workflow.NondeterminismError), failure


async def test_a_patched_change_replays() -> None:
    assert await replay_snapshot_on(SnapshotWithAPatchedTimer) is None

