"""`vmsnap_compensations` for restore: one per compensated restore, none for a success.

A second time-skipping server, with a runtime whose metrics go to a buffer, so the
counter the workflow emits can be read back exactly (the shared server's runtime
exports nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment

from contracts.reporting import COMPENSATIONS
from contracts.restore import APPLY_RESTORED_VM
from tests.workflows.conftest import TEST_SERVER
from tests.workflows.test_restore_saga import World, run_restore


@pytest.fixture(scope="module")
async def metered() -> AsyncIterator[tuple[WorkflowEnvironment, MetricBuffer]]:
    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter,
        runtime=runtime)
    yield environment, buffer
    await environment.shutdown()


def compensations(buffer: MetricBuffer, operation: str) -> int:
    """The counter's total for `operation` across the updates read so far."""
    return sum(int(u.value) for u in buffer.retrieve_updates()
               if u.metric.name == COMPENSATIONS and u.attributes.get("operation") == operation)


async def test_a_compensated_restore_counts_once_and_a_success_not_at_all(
    metered: tuple[WorkflowEnvironment, MetricBuffer],
) -> None:
    env, buffer = metered
    compensations(buffer, "restore")  # drain
    await run_restore(env, World())
    assert compensations(buffer, "restore") == 0
    with pytest.raises(WorkflowFailureError):
        await run_restore(env, World(fail_at=APPLY_RESTORED_VM.name))
    assert compensations(buffer, "restore") == 1
