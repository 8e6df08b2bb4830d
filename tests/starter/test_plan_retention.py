"""Retention of scheduled snapshots (`workflows.scheduled.retention_plan`) and the inputs
of schedules: which snapshots go, which never do, and what input is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts.schedule import ScheduledSnapshotInput, schedule_id
from rules.retention import ScheduledSnapshotRecord, retention_plan
from rules.validation import check_selector
from starter.sdk import ScheduleTiming, check_cron

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def snap(
    name: str, day: int, phase: str | None = "Succeeded", ready: bool = True,
    error: str | None = None, deleting: bool = False,
) -> ScheduledSnapshotRecord:
    return ScheduledSnapshotRecord(name=name, vm="web-1", created=T0 + timedelta(days=day),
                                   phase=phase, ready_to_use=ready, error=error,
                                   deleting=deleting)


def test_keeps_the_newest_good_ones_and_prunes_the_rest_oldest_first() -> None:
    records = [snap(f"s{d}", d) for d in (3, 1, 4, 0, 2)]  # any order in
    plan = retention_plan(records, keep=2)
    assert plan.keep == ["s4", "s3"]
    assert plan.prune == ["s0", "s1", "s2"]


def test_fewer_than_keep_prunes_nothing() -> None:
    plan = retention_plan([snap("a", 0), snap("b", 1)], keep=7)
    assert plan.prune == [] and plan.keep == ["b", "a"]


def test_in_progress_is_never_pruned_nor_counted() -> None:
    records = [snap("old", 0), snap("mid", 1), snap("new", 2),
               snap("running", -5, phase="InProgress", ready=False)]
    plan = retention_plan(records, keep=1)
    assert plan.prune == ["old", "mid"]
    assert "running" in plan.keep


def test_failed_newer_than_the_newest_success_stays() -> None:
    records = [snap("good", 0), snap("failed-later", 1, phase="Failed", ready=False,
                                      error="snapshot deadline exceeded (5m)")]
    plan = retention_plan(records, keep=1)
    assert plan.prune == []
    assert plan.keep == ["failed-later", "good"]


def test_failed_older_than_the_newest_success_is_pruned_even_within_keep() -> None:
    records = [snap("failed-old", 0, phase="Failed", ready=False, error="x"),
               snap("good", 1)]
    plan = retention_plan(records, keep=5)
    assert plan.prune == ["failed-old"]
    assert plan.keep == ["good"]


def test_only_failures_prunes_nothing() -> None:
    records = [snap(f"f{d}", d, phase="Failed", ready=False, error="e") for d in range(4)]
    assert retention_plan(records, keep=1).prune == []


def test_cut_but_not_yet_ready_is_never_pruned() -> None:
    records = [snap("a", 0), snap("b", 1), snap("settling", -1, ready=False)]
    plan = retention_plan(records, keep=1)
    assert plan.prune == ["a"]
    assert "settling" in plan.keep


def test_cut_but_never_ready_counts_as_failed() -> None:
    records = [snap("never-ready", 0, ready=False, error="not ready within 1h"),
               snap("good", 1)]
    assert retention_plan(records, keep=3).prune == ["never-ready"]


def test_a_succeeded_snapshot_that_is_not_ready_does_not_count_towards_keep() -> None:
    records = [snap("a", 0), snap("b", 1), snap("never-ready", 2, ready=False, error="x")]
    plan = retention_plan(records, keep=2)
    assert plan.prune == [] and set(plan.keep) == {"a", "b", "never-ready"}


def test_deleting_snapshots_are_left_alone() -> None:
    records = [snap("a", 0, deleting=True), snap("b", 1, phase="Deleting"), snap("c", 2)]
    plan = retention_plan(records, keep=1)
    assert plan.prune == [] and plan.keep == ["c"]


def test_same_second_is_ordered_by_name() -> None:
    records = [snap("web-1-20261126-020000", 0), snap("web-1-20261126-020001", 0)]
    assert retention_plan(records, keep=1).prune == ["web-1-20261126-020000"]


def test_a_failure_in_the_same_second_as_the_newest_success_stays() -> None:
    for failed_name in ("a-failed", "z-failed"):  # whatever the names
        records = [snap("good", 1), snap(failed_name, 1, phase="Failed", ready=False,
                                         error="x")]
        assert retention_plan(records, keep=1).prune == []


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="keep"):
        retention_plan([], keep=0)


# ---- the schedule's input ---------------------------------------------------------------------


def test_input_needs_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one of vm and selector"):
        ScheduledSnapshotInput(schedule="n", namespace="demo", keep=1)
    with pytest.raises(ValidationError, match="exactly one of vm and selector"):
        ScheduledSnapshotInput(schedule="n", namespace="demo", vm="a", selector="x=y", keep=1)


def test_input_json_from_the_temporal_cli() -> None:
    parsed = ScheduledSnapshotInput.model_validate_json(
        '{"schedule": "nightly", "namespace": "demo", "selector": "app in (web, db)",'
        ' "keep": 7, "failure_deadline": "2m", "quiesce": "skip"}')
    assert parsed.failure_deadline == 120 and parsed.target == "selector app in (web, db)"
    with pytest.raises(ValidationError, match="keepLast"):
        ScheduledSnapshotInput.model_validate_json(
            '{"schedule": "n", "namespace": "d", "vm": "a", "keep": 1, "keepLast": 3}')


@pytest.mark.parametrize("selector", ["app=web", "app==web", "app!=web", "tier in (a, b)",
                                      "tier notin (a)", "legacy", "!legacy",
                                      "app=web,tier in (a,b),!legacy",
                                      "kubevirt.io/vm=web-1", "app="])
def test_valid_selectors(selector: str) -> None:
    assert check_selector(selector) == selector


@pytest.mark.parametrize("selector", ["", "app=we b", "tier in a,b", "=web", "app=web,",
                                      "app=(x"])
def test_invalid_selectors(selector: str) -> None:
    with pytest.raises(ValueError):
        check_selector(selector)


# ---- timing --------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/15 * * * *", "0 0 1 jan *",
                                        "30 4 * * mon-fri", "0 0,12 * * 0-6", "@daily",
                                        "5 4 1-15/2 * ?"])
def test_valid_cron(expression: str) -> None:
    assert check_cron(expression)


@pytest.mark.parametrize(("expression", "message"), [
    ("60 * * * *", "minute '60' is out of range 0-59"),
    ("* * 0 * *", "day of month '0' is out of range 1-31"),
    ("* * * 13 *", "month '13' is out of range 1-12"),
    ("* * * * 8", "day of week '8' is out of range 0-7"),
    ("5-1 * * * *", "minute '5-1' is a backwards range"),
    ("* * * * * *", "must have 5 fields"),
    ("@sometimes", "must have 5 fields"),
])
def test_invalid_cron(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_cron(expression)


def test_timing_describes_itself_and_checks_one_spec() -> None:
    timing = ScheduleTiming.model_validate({"every": "6h", "jitter": "5m"})
    assert timing.describe() == "every 6h0m0s, jitter 5m0s"
    assert ScheduleTiming(cron="0 2 * * *", time_zone="Europe/Paris").describe() == \
        "cron '0 2 * * *' Europe/Paris"
    with pytest.raises(ValidationError, match="exactly one"):
        ScheduleTiming()


def test_schedule_ids_have_no_slash_and_are_unique_per_namespace() -> None:
    assert schedule_id("east", "demo", "nightly") == "vmsnap.east.demo.nightly"
    assert schedule_id("east", "demo-a", "b") != schedule_id("east", "demo", "a-b")
    assert schedule_id("east", "demo", "nightly") != schedule_id("west", "demo", "nightly")
