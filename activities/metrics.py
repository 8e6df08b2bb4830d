"""vmsnap's own Prometheus metrics, emitted through Temporal's runtime meter.

They leave through the same exporter as Temporal's worker metrics (see
starter/metrics.py), so one scrape of the worker shows both:

- `vmsnap_snapshots` (counter; `outcome` = succeeded | failed, `error_type`)
- `vmsnap_freeze_window` (histogram, milliseconds the guest stayed frozen)
- `vmsnap_deadline_failures` (counter; snapshots failed by their deadline)
- `vmsnap_compensations` (counter; saga compensations run, `operation`)

The `record_snapshot_metrics` activity records one finished snapshot with
`activity.metric_meter()`. An activity rather than `workflow.metric_meter()`
keeps the workflow free of metric code; a retried attempt could count twice,
so the activity has nothing that can fail after it records.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity
from temporalio.common import MetricMeter

RECORD_SNAPSHOT_METRICS = "record_snapshot_metrics"

SNAPSHOTS = "vmsnap_snapshots"
FREEZE_WINDOW = "vmsnap_freeze_window"
DEADLINE_FAILURES = "vmsnap_deadline_failures"
COMPENSATIONS = "vmsnap_compensations"

# Freeze windows in milliseconds: the guest pays for every one of them.
FREEZE_WINDOW_BUCKETS_MS: tuple[float, ...] = (
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
BUCKET_OVERRIDES: dict[str, list[float]] = {FREEZE_WINDOW: list(FREEZE_WINDOW_BUCKETS_MS)}


class SnapshotMetricsInput(BaseModel):
    """What one finished snapshot tells the metrics (from its result)."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["succeeded", "failed"]
    error_type: str | None = Field(default=None, description="the failure's type, if failed")
    freeze_window_ms: int | None = Field(default=None, ge=0,
                                         description="None when the guest was not frozen")
    deadline_exceeded: bool = False
    compensated: bool = Field(default=False, description="the saga's compensation ran")


def record_snapshot(meter: MetricMeter, outcome: SnapshotMetricsInput) -> None:
    """Record one snapshot on `meter` (an activity's, a workflow's, or a test's)."""
    meter.create_counter(SNAPSHOTS, "snapshots finished, by outcome").add(
        1, {"outcome": outcome.outcome, "error_type": outcome.error_type or ""})
    if outcome.freeze_window_ms is not None:
        meter.create_histogram(
            FREEZE_WINDOW, "how long guest filesystems stayed frozen", "ms",
        ).record(outcome.freeze_window_ms)
    if outcome.deadline_exceeded:
        meter.create_counter(DEADLINE_FAILURES, "snapshots failed by their deadline").add(1)
    if outcome.compensated:
        record_compensation(meter, "snapshot")


def record_compensation(meter: MetricMeter, operation: str) -> None:
    """One saga compensation run (snapshot, restore, clone)."""
    meter.create_counter(COMPENSATIONS, "saga compensations run").add(
        1, {"operation": operation})


@activity.defn(name=RECORD_SNAPSHOT_METRICS)
def record_snapshot_metrics(input: SnapshotMetricsInput) -> None:
    """Record one finished snapshot on the worker's metrics."""
    record_snapshot(activity.metric_meter(), input)
