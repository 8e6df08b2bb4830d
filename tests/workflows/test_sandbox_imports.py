"""Each workflow run re-executes only its own module inside Temporal's sandbox.

The sandbox imports a workflow's module afresh for every run; everything that
module imports inside `workflow.unsafe.imports_passed_through()` should come
from the worker's own copy. One spelling defeats that silently: `from workflows
import saga` inside the block resolves the submodule through Python's import
machinery, not the sandbox's hook, so saga.py (and its dataclasses) ran again
for every snapshot: a tenth of the worker's CPU in the orchestration benchmark.
"""

from __future__ import annotations

import importlib._bootstrap_external as bootstrap_external
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
from temporalio import workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from worker import WORKFLOWS

OUR_PACKAGES = ("activities", "cluster", "contracts", "rules", "starter", "workflows", "simulator",
                "bench")


@contextmanager
def executed_modules() -> Iterator[list[str]]:
    """The names of the modules whose code runs while the block runs."""
    names: list[str] = []
    loader: Any = vars(bootstrap_external)["_LoaderBasics"]  # every source loader's base
    original = loader.exec_module

    def recording(self: Any, module: ModuleType) -> None:
        names.append(module.__name__)
        original(self, module)

    loader.exec_module = recording
    try:
        yield names
    finally:
        loader.exec_module = original


def ours(names: list[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in OUR_PACKAGES}


@pytest.mark.parametrize("workflow_class", WORKFLOWS, ids=lambda c: c.__name__)
async def test_a_run_executes_only_its_workflow_module(workflow_class: type) -> None:
    definition = workflow._Definition.must_from_class(workflow_class)
    runner = SandboxedWorkflowRunner()
    runner.prepare_workflow(definition)  # the first instance may warm the host's imports
    with executed_modules() as names:
        runner.prepare_workflow(definition)  # what every later run pays
    module = workflow_class.__module__
    package = module.rpartition(".")[0]
    assert ours(names) - {module, package} == set(), (
        f"{workflow_class.__name__}: a run re-executes {sorted(ours(names) - {module})}; "
        "import them inside workflow.unsafe.imports_passed_through() as "
        "`from package.module import name` or `import package.module as module`")
    assert module in names  # the recorder sees the sandbox's imports at all


async def test_the_recorder_sees_a_submodule_imported_by_fromlist() -> None:
    """The spelling this file guards against is caught: the check can fail."""
    source = (
        "import workflows\n"  # the package, as the sandbox loads it for workflows.snapshot
        "from temporalio import workflow\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from workflows import saga\n"
    )
    from temporalio.worker.workflow_sandbox._importer import Importer
    from temporalio.worker.workflow_sandbox._restrictions import (
        RestrictionContext,
        SandboxRestrictions,
    )

    importer = Importer(SandboxRestrictions.default, RestrictionContext())
    with executed_modules() as names, importer.applied():
        exec(compile(source, "probe.py", "exec"), {"__name__": "probe"})
    assert "workflows.saga" in names
