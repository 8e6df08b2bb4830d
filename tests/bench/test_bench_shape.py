"""The bare benchmark's pure parts: a history's shape, percentiles, tuning flags, /proc parsing."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.bare_snapshot import ACTIVITY, BareShape, shape_from_history
from bench.orchestration import percentile, time_breakdown, tuning_env
from bench.worker_load import (
    Sampler,
    parse_stat_cpu_seconds,
    parse_status,
    sample_process,
)
from starter.worker_tuning import WorkerTuningError

E = EventType


def _event(kind: int, activity: str | None = None, timer: float | None = None) -> HistoryEvent:
    event = HistoryEvent(event_type=kind)  # type: ignore[arg-type]
    if activity is not None:
        event.activity_task_scheduled_event_attributes.activity_type.name = activity
    if timer is not None:
        event.timer_started_event_attributes.start_to_fire_timeout.FromTimedelta(
            timedelta(seconds=timer))
    return event


def _task(*commands: HistoryEvent) -> list[HistoryEvent]:
    return [_event(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
            _event(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
            _event(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED), *commands]


def test_shape_groups_commands_by_workflow_task_in_order() -> None:
    history = [
        _event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        *_task(_event(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES),
               _event(E.EVENT_TYPE_TIMER_STARTED, timer=90),
               _event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "record")),
        _event(E.EVENT_TYPE_ACTIVITY_TASK_STARTED), _event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        *_task(_event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "a"),
               _event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "b")),
        _event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED), _event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        *_task(_event(E.EVENT_TYPE_TIMER_CANCELED),
               _event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "last")),
        _event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        *_task(_event(E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)),
    ]
    shape = shape_from_history(history)
    assert shape == BareShape(tasks=[
        ["upsert", "timer", ACTIVITY + "record"],
        [ACTIVITY + "a", ACTIVITY + "b"],
        ["cancel_timer", ACTIVITY + "last"],
    ], timer_seconds=90.0)
    assert shape.activity_names() == ["record", "a", "b", "last"]


def test_a_failed_or_empty_history_has_no_shape() -> None:
    failed = [*_task(_event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "x")),
              _event(E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)]
    with pytest.raises(ValueError, match="not of a completed run"):
        shape_from_history(failed)
    with pytest.raises(ValueError, match="no completed workflow task"):
        shape_from_history([_event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)])


def test_percentile_interpolates_and_refuses_nonsense() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_tuning_flags_are_checked_before_anything_starts() -> None:
    assert tuning_env(["VMSNAP_MAX_CONCURRENT_ACTIVITIES=64"]) == {
        "VMSNAP_MAX_CONCURRENT_ACTIVITIES": "64"}
    with pytest.raises(ValueError, match="VMSNAP_NAME=VALUE"):
        tuning_env(["PATH=/bin"])
    with pytest.raises(WorkerTuningError):
        tuning_env(["VMSNAP_MAX_CONCURRENT_ACTIVITIES=many"])


def test_stat_line_with_spaces_and_parens_in_the_name() -> None:
    fields = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", "250", "50"]
    line = "1234 (odd ) name) " + " ".join(fields + ["0"] * 30)
    assert parse_stat_cpu_seconds(line, ticks=100) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        parse_stat_cpu_seconds("garbage")


def test_status_and_a_live_process(tmp_path: Path) -> None:
    status = parse_status("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\nThreads:\t3\n")
    assert status["VmRSS"] == "1024 kB" and status["Threads"] == "3"
    me = sample_process(os.getpid())
    assert me.rss_bytes > 1024 * 1024 and me.peak_rss_bytes >= me.rss_bytes
    assert me.threads >= 1 and me.cpu_seconds > 0
    with pytest.raises(FileNotFoundError):
        sample_process(os.getpid(), proc=tmp_path)


def test_sampler_sees_cpu_spent_while_it_runs() -> None:
    # A child of its own that only burns CPU: the Sampler counts a process's descendants
    # too, and this test's process has the session's simulators and workers beneath it
    # (their tick jitter summed over a short window says nothing of the sampler).
    burn = ("import time\nend = time.process_time() + 0.4\n"
            "while time.process_time() < end: pass\nprint('done', flush=True)\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE)
    try:
        with Sampler(child.pid, interval=0.05) as sampler:
            assert child.stdout is not None and child.stdout.readline() == b"done\n"
    finally:
        child.kill()
        child.communicate()
    assert sampler.cpu_seconds() > 0.05
    assert len(sampler.samples) >= 3
    # One thread: at most one core, with the jitter of 10 ms ticks over 0.2 s.
    assert 0 < sampler.busiest_cpu_share(window=0.2) <= 1.3


def _at(event: HistoryEvent, event_id: int, second: float) -> HistoryEvent:
    event.event_id = event_id
    event.event_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second))
    return event


def test_time_breakdown_splits_queueing_from_running() -> None:
    scheduled = _at(_event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "cut"), 5, 1.0)
    started = _at(_event(E.EVENT_TYPE_ACTIVITY_TASK_STARTED), 6, 1.5)
    completed = _at(_event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED), 7, 3.5)
    completed.activity_task_completed_event_attributes.scheduled_event_id = 5
    completed.activity_task_completed_event_attributes.started_event_id = 6
    task_scheduled = _at(_event(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), 8, 3.5)
    task_started = _at(_event(E.EVENT_TYPE_WORKFLOW_TASK_STARTED), 9, 3.75)
    task_done = _at(_event(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED), 10, 3.8)
    task_done.workflow_task_completed_event_attributes.scheduled_event_id = 8
    task_done.workflow_task_completed_event_attributes.started_event_id = 9
    buckets, runs = time_breakdown(
        [scheduled, started, completed, task_scheduled, task_started, task_done])
    assert buckets["activity queued"] == pytest.approx(0.5)
    assert buckets["activity running"] == pytest.approx(2.0)
    assert buckets["workflow task queued"] == pytest.approx(0.25)
    assert buckets["workflow task running"] == pytest.approx(0.05)
    assert runs == {"cut": pytest.approx(2.0)}
