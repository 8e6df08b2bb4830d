"""The sweeper schedule the worker sets up: what the environment turns on, off and sets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from contracts.sweep import SweepOrphansInput, sweeper_schedule_id
from worker import sweeper_schedule


def test_default_is_hourly_all_namespaces_overlap_skip() -> None:
    schedule = sweeper_schedule("q", "east", {})
    assert schedule is not None
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "SweepOrphans" and action.task_queue == "q"
    assert action.id == "sweep-orphans/east/all"
    (request,) = action.args
    assert isinstance(request, SweepOrphansInput)
    assert request.all_namespaces and request.grace == 3600 and not request.dry_run
    assert schedule.spec.intervals[0].every == timedelta(hours=1)
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert sweeper_schedule_id("q") == "vmsnap-sweeper-q"


def test_interval_and_grace_are_settable() -> None:
    schedule = sweeper_schedule("q", "east", {"VMSNAP_SWEEPER_INTERVAL": "15m",
                                      "VMSNAP_SWEEPER_GRACE": "2h"})
    assert schedule is not None
    assert schedule.spec.intervals[0].every == timedelta(minutes=15)
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    request = action.args[0]
    assert isinstance(request, SweepOrphansInput) and request.grace == 7200


@pytest.mark.parametrize("value", ["off", "OFF", "false", "0"])
def test_opt_out(value: str) -> None:
    assert sweeper_schedule("q", "east", {"VMSNAP_SWEEPER_SCHEDULE": value}) is None


@pytest.mark.parametrize("env, message", [
    ({"VMSNAP_SWEEPER_SCHEDULE": "sometimes"}, "on or off"),
    ({"VMSNAP_SWEEPER_INTERVAL": "often"}, "VMSNAP_SWEEPER_INTERVAL"),
    ({"VMSNAP_SWEEPER_INTERVAL": "10s"}, "at least 1m"),
    ({"VMSNAP_SWEEPER_GRACE": "-5m"}, "VMSNAP_SWEEPER_GRACE"),
])
def test_bad_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sweeper_schedule("q", "east", env)
