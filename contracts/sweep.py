"""`SweepOrphans`: its workflow type and ID, input, result, and its one activity.

Input (JSON at the Temporal CLI, UI or from a schedule):
    {"namespaces": ["demo"], "grace": "1h", "dry_run": true}
    {"all_namespaces": true}
    {"all_namespaces": true, "include_older_than_install": true}
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.activity import ActivityRef
from rules.cut_labels import CutLabelVerdict
from rules.orphans import Verdict
from rules.validation import SweepGrace, check_count, check_dns_label

WORKFLOW = "SweepOrphans"
DEFAULT_GRACE_SECONDS = 3600.0
MAX_NAMESPACES = 1000


def sweep_workflow_id(cluster: str, namespaces: list[str], all_namespaces: bool) -> str:
    """`sweep-orphans/{cluster}/all` or `sweep-orphans/{cluster}/{sorted namespaces, comma
    separated}`."""
    scope = "all" if all_namespaces else ",".join(sorted(set(namespaces)))
    return f"sweep-orphans/{cluster}/{scope}"


def sweeper_schedule_id(task_queue: str) -> str:
    """`vmsnap-sweeper-{task queue}`: the worker's hourly sweep, one per deployment."""
    return f"vmsnap-sweeper-{task_queue}"


class SweepOrphansInput(BaseModel):
    """Where to sweep, how old an orphan must be, and whether to only report.

    An orphan made before the sweeper was installed (its schedule created) is only
    reported unless `include_older_than_install`: a sweeper new to a cluster removes
    nothing it finds there, until an operator has read the report and asks.
    """

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(default_factory=list)
    all_namespaces: bool = False
    grace: SweepGrace = DEFAULT_GRACE_SECONDS
    dry_run: bool = False
    include_older_than_install: bool = False

    @model_validator(mode="after")
    def _scope(self) -> SweepOrphansInput:
        if self.all_namespaces == bool(self.namespaces):
            raise ValueError("name the namespaces to sweep, or set all_namespaces (not both)")
        check_count(self.namespaces, "namespaces", MAX_NAMESPACES)
        for ns in self.namespaces:
            check_dns_label(ns, "namespace")
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
    # Orphans made before the sweeper was installed: only reported (see the input).
    reported: list[Verdict] = Field(default_factory=list)
    installed_at: datetime | None = None  # when the sweeper was installed, if known
    # `vmsnap.io/cut-*` labels on PVCs: stale ones removed (or, in a dry run, to be), and
    # those kept, each with its reason (rules.cut_labels).
    cut_labels: list[CutLabelVerdict] = Field(default_factory=list)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        done = [r for r in self.removed if r.removed or self.dry_run]
        labels = [v for v in self.cut_labels
                  if v.action == "remove" and (v.removed or self.dry_run)]
        return (f"{verb} {len(done)} orphan(s) and {len(labels)} stale cut label(s) in "
                f"{self.scope}; {len(self.too_young)} inside the grace period, "
                f"{len(self.reported)} older than the sweeper (reported only), "
                f"{len(self.kept)} kept, {len(self.errors)} error(s)")


SWEEP_ORPHANED_OBJECTS = ActivityRef("SweepOrphanedObjects", SweepRequest, SweepOrphansResult)
