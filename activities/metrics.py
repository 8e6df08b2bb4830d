"""The `record_snapshot_metrics` activity: one finished snapshot on the worker's metrics.

It records with `activity.metric_meter()` (what is recorded, and the metric names, are
in `contracts.reporting`). An activity rather than `workflow.metric_meter()` keeps the
snapshot workflow free of metric code; a retried attempt could count twice, so the
activity has nothing that can fail after it records.
"""

from __future__ import annotations

from temporalio import activity

from activities.registration import implements_function
from contracts.reporting import RECORD_SNAPSHOT_METRICS, SnapshotMetricsInput, record_snapshot


@implements_function(RECORD_SNAPSHOT_METRICS)
def record_snapshot_metrics(input: SnapshotMetricsInput) -> None:
    """Record one finished snapshot on the worker's metrics."""
    record_snapshot(activity.metric_meter(), input)
