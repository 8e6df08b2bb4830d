"""Worker tuning from the environment: defaults, overrides, and refusals that name the variable."""

import inspect

import pytest
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

import worker
from starter.worker_tuning import (
    DEFAULT_MAX_CONCURRENT_ACTIVITIES,
    DEFAULT_MAX_CONCURRENT_LOCAL_ACTIVITIES,
    DEFAULT_MAX_FREEZES_IN_FLIGHT,
    ENV_ACTIVITY_THREADS,
    ENV_MAX_CACHED_WORKFLOWS,
    ENV_MAX_CONCURRENT_ACTIVITIES,
    ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES,
    ENV_MAX_CONCURRENT_WORKFLOW_TASKS,
    ENV_MAX_FREEZES_IN_FLIGHT,
    ENV_WORKFLOW_TASK_POLLS,
    WorkerTuning,
    WorkerTuningError,
)


def test_empty_environment_keeps_the_defaults() -> None:
    tuning = WorkerTuning.from_environment({})
    assert tuning == WorkerTuning()
    assert tuning.activity_threads == (tuning.max_concurrent_activities
                                       + tuning.max_concurrent_local_activities)
    assert tuning.worker_options() == {
        "max_concurrent_activities": DEFAULT_MAX_CONCURRENT_ACTIVITIES,
        "max_concurrent_local_activities": DEFAULT_MAX_CONCURRENT_LOCAL_ACTIVITIES}


def test_variables_override_and_threads_follow_activities() -> None:
    tuning = WorkerTuning.from_environment({
        ENV_MAX_CONCURRENT_ACTIVITIES: "64", ENV_MAX_CONCURRENT_WORKFLOW_TASKS: " 200 ",
        ENV_MAX_CACHED_WORKFLOWS: "0", ENV_WORKFLOW_TASK_POLLS: "10",
        ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES: "16", ENV_ACTIVITY_THREADS: ""})
    assert tuning.activity_threads == 80
    options = tuning.worker_options()
    assert options["max_concurrent_activities"] == 64
    assert options["max_concurrent_workflow_tasks"] == 200
    assert options["max_cached_workflows"] == 0
    assert options["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(10)
    assert "activity_task_poller_behavior" not in options
    assert options["max_concurrent_local_activities"] == 16
    assert "200" in tuning.describe() and "64 + local 16 on 80 threads" in tuning.describe()


def test_options_are_real_worker_arguments() -> None:
    everything = WorkerTuning(max_concurrent_activities=8, max_concurrent_local_activities=8,
                              activity_threads=16,
                              max_concurrent_workflow_tasks=8, max_cached_workflows=8,
                              workflow_task_polls=2, activity_task_polls=2)
    accepted = inspect.signature(Worker.__init__).parameters
    assert set(everything.worker_options()) <= set(accepted)
    assert len(everything.worker_options()) == 6


@pytest.mark.parametrize(("name", "value"), [
    (ENV_MAX_CONCURRENT_ACTIVITIES, "lots"),
    (ENV_MAX_CONCURRENT_ACTIVITIES, "0"),
    (ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES, "none"),
    (ENV_MAX_CONCURRENT_WORKFLOW_TASKS, "-3"),
    (ENV_MAX_CACHED_WORKFLOWS, "1.5"),
    (ENV_WORKFLOW_TASK_POLLS, "9999999"),
])
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(WorkerTuningError, match=name):
        WorkerTuning.from_environment({name: value})


def test_fewer_threads_than_activity_slots_is_refused() -> None:
    with pytest.raises(WorkerTuningError, match=ENV_ACTIVITY_THREADS):
        WorkerTuning.from_environment({ENV_MAX_CONCURRENT_ACTIVITIES: "50",
                                       ENV_ACTIVITY_THREADS: "10"})
    # Local activities run on the same threads: the pool covers both kinds of slot.
    with pytest.raises(WorkerTuningError, match=ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES):
        WorkerTuning.from_environment({ENV_MAX_CONCURRENT_ACTIVITIES: "10",
                                       ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES: "50",
                                       ENV_ACTIVITY_THREADS: "50"})
    more = WorkerTuning.from_environment({ENV_MAX_CONCURRENT_ACTIVITIES: "10",
                                          ENV_ACTIVITY_THREADS: "50"})
    assert more.activity_threads == 50


def test_freezes_in_flight_default_override_and_zero_for_no_bound() -> None:
    assert WorkerTuning.from_environment({}).max_freezes_in_flight == (
        DEFAULT_MAX_FREEZES_IN_FLIGHT)
    assert WorkerTuning.from_environment(
        {ENV_MAX_FREEZES_IN_FLIGHT: " "}).max_freezes_in_flight == DEFAULT_MAX_FREEZES_IN_FLIGHT
    assert WorkerTuning.from_environment(
        {ENV_MAX_FREEZES_IN_FLIGHT: "3"}).max_freezes_in_flight == 3
    assert WorkerTuning.from_environment({ENV_MAX_FREEZES_IN_FLIGHT: "3"}).freeze_slots == 3
    unbounded = WorkerTuning.from_environment({ENV_MAX_FREEZES_IN_FLIGHT: "0",
                                               ENV_MAX_CONCURRENT_ACTIVITIES: "40"})
    assert unbounded.max_freezes_in_flight == 0
    assert unbounded.freeze_slots == 40  # no bound: as many as the worker's activities
    assert "guests frozen at once 40 (no bound)" in unbounded.describe()
    # not an option of the main worker: the freeze process's (worker.build_freeze_worker)
    assert "max_freezes_in_flight" not in unbounded.worker_options()


@pytest.mark.parametrize("value", ["-1", "four", "2.5", "9999999"])
def test_bad_freezes_in_flight_stop_the_worker_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(WorkerTuningError, match=ENV_MAX_FREEZES_IN_FLIGHT):
        WorkerTuning.from_environment({ENV_MAX_FREEZES_IN_FLIGHT: value})
    # At start-up, before it connects to anything: one line naming the variable, exit 1.
    monkeypatch.setenv(ENV_MAX_FREEZES_IN_FLIGHT, value)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # never reached
    assert worker.main([]) == 1
    assert any(ENV_MAX_FREEZES_IN_FLIGHT in r.getMessage() and "worker failed" in r.getMessage()
               for r in caplog.records)
