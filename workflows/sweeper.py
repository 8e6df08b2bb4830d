"""`SweepOrphans`: find and remove what vmsnap made but nobody owns any more.

Input (JSON at the Temporal CLI, UI or from a schedule):
    {"namespaces": ["demo"], "grace": "1h", "dry_run": true}
    {"all_namespaces": true}

One activity lists the labelled VolumeSnapshots, contents and PVCs, asks
Temporal about their operations' workflows, classifies them
(`rules.orphans`) and removes the orphans, VolumeSnapshots first. The
workflow passes its own clock: ages are measured in workflow time, so the
grace period is the same on a replay and in a time-skipping test.

Workflow ID for on-demand runs: `sweep-orphans/{all | ns1,ns2}`
(`contracts.sweep.sweep_workflow_id`); a second start while one runs is refused by
Temporal.
Two sweeps at once (a schedule run and an on-demand one) are harmless: every
removal is idempotent (already gone is not an error).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import workflows.saga as saga
    from contracts.sweep import (
        SWEEP_ORPHANED_OBJECTS,
        WORKFLOW,
        SweepOrphansInput,
        SweepOrphansResult,
        SweepRequest,
    )
    from workflows.admission import admit

SWEEP_TIMEOUT = timedelta(minutes=30)
SWEEP_HEARTBEAT = timedelta(minutes=2)
SWEEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=1), maximum_attempts=5)


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class SweepOrphans:
    """One sweep: a single, retried activity (listing and removing are both idempotent)."""

    @workflow.run
    async def run(self, input: SweepOrphansInput) -> SweepOrphansResult:
        await admit(input.namespaces, all_namespaces=input.all_namespaces)
        result = await saga.step(
            SWEEP_ORPHANED_OBJECTS, SweepRequest(input=input, now=workflow.now()),
            start_to_close=SWEEP_TIMEOUT, heartbeat=SWEEP_HEARTBEAT, retry=SWEEP_RETRY)
        workflow.logger.info("orphan sweep: %s", result.summary())
        return result
