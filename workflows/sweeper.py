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
(`sweep_workflow_id`); a second start while one runs is refused by Temporal.
Two sweeps at once (a schedule run and an on-demand one) are harmless: every
removal is idempotent (already gone is not an error).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from rules.orphans import Verdict
    from workflows.models import Duration, check_dns_label

SWEEP_ACTIVITY = "SweepOrphanedObjects"
SWEEP_WORKFLOW = "SweepOrphans"
DEFAULT_GRACE_SECONDS = 3600.0
SWEEP_TIMEOUT = timedelta(minutes=30)
SWEEP_HEARTBEAT = timedelta(minutes=2)
SWEEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=1), maximum_attempts=5)


def sweep_workflow_id(namespaces: list[str], all_namespaces: bool) -> str:
    """`sweep-orphans/all` or `sweep-orphans/{sorted namespaces, comma separated}`."""
    scope = "all" if all_namespaces else ",".join(sorted(set(namespaces)))
    return f"sweep-orphans/{scope}"


class SweepOrphansInput(BaseModel):
    """Where to sweep, how old an orphan must be, and whether to only report."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(default_factory=list)
    all_namespaces: bool = False
    grace: Duration = DEFAULT_GRACE_SECONDS
    dry_run: bool = False

    @model_validator(mode="after")
    def _scope(self) -> SweepOrphansInput:
        if self.all_namespaces == bool(self.namespaces):
            raise ValueError("name the namespaces to sweep, or set all_namespaces (not both)")
        for ns in self.namespaces:
            check_dns_label(ns, "namespace")
        if self.grace < 0:
            raise ValueError(f"grace cannot be negative ({self.grace}s)")
        return self

    @property
    def scope(self) -> str:
        return "all namespaces" if self.all_namespaces else ", ".join(self.namespaces)


class SweepRequest(BaseModel):
    """What the activity gets: the input and the workflow's clock."""

    input: SweepOrphansInput
    now: datetime


class Removal(BaseModel):
    """One orphan: removed (or, in a dry run, to be removed), and why."""

    kind: str
    namespace: str
    name: str
    reason: str
    removed: bool  # False: a dry run, or already gone when its turn came


class SweepOrphansResult(BaseModel):
    scope: str
    dry_run: bool
    grace_seconds: float
    swept_at: datetime
    removed: list[Removal] = Field(default_factory=list)
    too_young: list[Verdict] = Field(default_factory=list)
    kept: list[Verdict] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        done = [r for r in self.removed if r.removed or self.dry_run]
        return (f"{verb} {len(done)} orphan(s) in {self.scope}; {len(self.too_young)} inside "
                f"the grace period, {len(self.kept)} kept, {len(self.errors)} error(s)")


@workflow.defn(name=SWEEP_WORKFLOW, failure_exception_types=[ValidationError])
class SweepOrphans:
    """One sweep: a single, retried activity (listing and removing are both idempotent)."""

    @workflow.run
    async def run(self, input: SweepOrphansInput) -> SweepOrphansResult:
        result = await workflow.execute_activity(
            SWEEP_ACTIVITY, SweepRequest(input=input, now=workflow.now()),
            start_to_close_timeout=SWEEP_TIMEOUT, heartbeat_timeout=SWEEP_HEARTBEAT,
            retry_policy=SWEEP_RETRY, result_type=SweepOrphansResult)
        workflow.logger.info("orphan sweep: %s", result.summary())
        return result
