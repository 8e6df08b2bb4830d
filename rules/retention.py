"""Which of one VM's scheduled snapshots a schedule prunes (retention).

The rule (`retention_plan`):
- a snapshot belongs to a schedule when its record carries the label
  `schedule.vmsnap.io/name=<schedule>`; removing that label (kubectl label)
  takes a snapshot out of the schedule's hands, adding it hands one over;
- the newest `keep` snapshots that are Succeeded and ready to use are kept;
  older Succeeded ones are pruned, oldest first;
- a snapshot that is not Succeeded is never pruned, unless it is Failed and
  older than the newest good one (it then only tells an old story; "older"
  is by the record's creationTimestamp, whole seconds, so a tie keeps it); a
  Succeeded one whose readiness failed counts as Failed; InProgress and
  Deleting ones are left alone.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ScheduledSnapshotRecord(BaseModel):
    """A snapshot record as retention sees it."""

    name: str
    vm: str
    created: datetime = Field(description="metadata.creationTimestamp of the record")
    phase: str | None
    ready_to_use: bool = False
    error: str | None = None
    deleting: bool = False


class RetentionPlan(BaseModel):
    keep: list[str] = Field(description="newest first")
    prune: list[str] = Field(description="oldest first")


def retention_plan(records: list[ScheduledSnapshotRecord], keep: int) -> RetentionPlan:
    """Which of one VM's scheduled snapshots to delete (see the module docstring)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    live = [r for r in records if not r.deleting and r.phase != "Deleting"]
    newest_first = sorted(live, key=lambda r: (r.created, r.name), reverse=True)
    good = [r for r in newest_first if r.phase == "Succeeded" and r.ready_to_use]
    newest_good = good[0].created if good else None
    kept_good = {r.name for r in good[:keep]}
    prune: list[str] = []
    kept: list[str] = []
    for record in newest_first:
        good_one = record.phase == "Succeeded" and record.ready_to_use
        unusable = record.phase == "Failed" or (
            record.phase == "Succeeded" and not record.ready_to_use and bool(record.error))
        # Strictly older: records keep whole seconds, and a tie cannot tell which came last.
        superseded = newest_good is not None and record.created < newest_good
        if record.name in kept_good:
            kept.append(record.name)
        elif good_one or (unusable and superseded):
            prune.append(record.name)
        else:
            kept.append(record.name)
    return RetentionPlan(keep=kept, prune=list(reversed(prune)))
