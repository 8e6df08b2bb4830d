"""The worker's concurrency settings, with environment overrides for operators.

Why settable: how many activities and workflow tasks a worker runs at once
decides its throughput and its memory, and the right figure depends on the
machine and on how many requests the Kubernetes API server takes; an operator
tunes it in the Deployment's environment without a new image.

| variable | Worker option | default |
| --- | --- | --- |
| `VMSNAP_MAX_CONCURRENT_ACTIVITIES` | `max_concurrent_activities` | 32 |
| `VMSNAP_MAX_CONCURRENT_LOCAL_ACTIVITIES` | `max_concurrent_local_activities` | 32 |
| `VMSNAP_ACTIVITY_THREADS` | threads of the pool both kinds run on (at least their sum) | the sum |
| `VMSNAP_MAX_CONCURRENT_WORKFLOW_TASKS` | `max_concurrent_workflow_tasks` | SDK (100) |
| `VMSNAP_MAX_CACHED_WORKFLOWS` | `max_cached_workflows` (sticky cache) | SDK (1000) |
| `VMSNAP_WORKFLOW_TASK_POLLS` | workflow task pollers | SDK (5) |
| `VMSNAP_ACTIVITY_TASK_POLLS` | activity task pollers | SDK (5) |
| `VMSNAP_MAX_FREEZES_IN_FLIGHT` | slots of the freeze process (0: one per activity) | 2 |

An empty variable means the default; anything but a whole number in range is
refused with a message naming the variable (the worker does not start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from temporalio.worker import PollerBehaviorSimpleMaximum

DEFAULT_MAX_CONCURRENT_ACTIVITIES = 32
# The snapshot's short steps are local activities (workflows/saga.py local_step); they run
# on the same thread pool as the activities, so the pool has a thread for each of both.
DEFAULT_MAX_CONCURRENT_LOCAL_ACTIVITIES = 32
MAX_SETTING = 100_000

ENV_MAX_CONCURRENT_ACTIVITIES = "VMSNAP_MAX_CONCURRENT_ACTIVITIES"
ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES = "VMSNAP_MAX_CONCURRENT_LOCAL_ACTIVITIES"
ENV_ACTIVITY_THREADS = "VMSNAP_ACTIVITY_THREADS"
ENV_MAX_CONCURRENT_WORKFLOW_TASKS = "VMSNAP_MAX_CONCURRENT_WORKFLOW_TASKS"
ENV_MAX_CACHED_WORKFLOWS = "VMSNAP_MAX_CACHED_WORKFLOWS"
ENV_WORKFLOW_TASK_POLLS = "VMSNAP_WORKFLOW_TASK_POLLS"
ENV_ACTIVITY_TASK_POLLS = "VMSNAP_ACTIVITY_TASK_POLLS"
ENV_MAX_FREEZES_IN_FLIGHT = "VMSNAP_MAX_FREEZES_IN_FLIGHT"
# Guests one worker holds frozen at once: the cuts that freeze run in the worker's freeze
# process (worker.py), one activity slot each; the others wait in the freeze task queue,
# not frozen. Measured with bench.under_load (200 ms cuts, 2 cores; docs/benchmarks.md).
DEFAULT_MAX_FREEZES_IN_FLIGHT = 2


_ZERO_ALLOWED = ("max_cached_workflows", "max_freezes_in_flight")


class WorkerTuningError(ValueError):
    """A tuning variable that is not a usable number; the message names it."""


def _whole_number(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise WorkerTuningError(f"{name}={raw!r} is not a whole number") from None
    if not minimum <= value <= MAX_SETTING:
        raise WorkerTuningError(f"{name}={value} is out of range ({minimum}..{MAX_SETTING})")
    return value


def _freezes_in_flight(env: Mapping[str, str]) -> int:
    """VMSNAP_MAX_FREEZES_IN_FLIGHT: unset or empty is the default, 0 no bound."""
    value = _whole_number(env, ENV_MAX_FREEZES_IN_FLIGHT, 0)
    return DEFAULT_MAX_FREEZES_IN_FLIGHT if value is None else value


@dataclass(frozen=True)
class WorkerTuning:
    """Concurrency of one worker process; None leaves the SDK's default."""

    max_concurrent_activities: int = DEFAULT_MAX_CONCURRENT_ACTIVITIES
    max_concurrent_local_activities: int = DEFAULT_MAX_CONCURRENT_LOCAL_ACTIVITIES
    activity_threads: int = (DEFAULT_MAX_CONCURRENT_ACTIVITIES
                             + DEFAULT_MAX_CONCURRENT_LOCAL_ACTIVITIES)
    max_concurrent_workflow_tasks: int | None = None
    max_cached_workflows: int | None = None
    workflow_task_polls: int | None = None
    activity_task_polls: int | None = None
    max_freezes_in_flight: int = DEFAULT_MAX_FREEZES_IN_FLIGHT  # 0: as many as activities

    def __post_init__(self) -> None:
        if self.activity_threads < self.slots:
            # A slot without a thread queues inside the executor while its
            # start-to-close timeout runs: the activity can time out unstarted.
            raise WorkerTuningError(
                f"{ENV_ACTIVITY_THREADS}={self.activity_threads} is below "
                f"{ENV_MAX_CONCURRENT_ACTIVITIES}={self.max_concurrent_activities} + "
                f"{ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES}={self.max_concurrent_local_activities}"
                ": every activity slot needs a thread")
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and value < (0 if item.name in _ZERO_ALLOWED else 1):
                raise WorkerTuningError(f"{item.name}={value} must be positive")

    @property
    def freeze_slots(self) -> int:
        """Activity slots of the freeze process: the bound, or with none (0) as many as
        the worker's activities."""
        return self.max_freezes_in_flight or self.max_concurrent_activities

    @property
    def slots(self) -> int:
        """Activities and local activities that may run at once: each needs a thread."""
        return self.max_concurrent_activities + self.max_concurrent_local_activities

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> WorkerTuning:
        """Read the VMSNAP_* variables (see the module docstring); unset means default."""
        activities = _whole_number(env, ENV_MAX_CONCURRENT_ACTIVITIES, 1)
        activities = activities or DEFAULT_MAX_CONCURRENT_ACTIVITIES
        local = (_whole_number(env, ENV_MAX_CONCURRENT_LOCAL_ACTIVITIES, 1)
                 or DEFAULT_MAX_CONCURRENT_LOCAL_ACTIVITIES)
        threads = _whole_number(env, ENV_ACTIVITY_THREADS, 1) or activities + local
        return cls(
            max_concurrent_activities=activities,
            max_concurrent_local_activities=local,
            activity_threads=threads,
            max_concurrent_workflow_tasks=_whole_number(env, ENV_MAX_CONCURRENT_WORKFLOW_TASKS, 1),
            max_cached_workflows=_whole_number(env, ENV_MAX_CACHED_WORKFLOWS, 0),
            workflow_task_polls=_whole_number(env, ENV_WORKFLOW_TASK_POLLS, 1),
            activity_task_polls=_whole_number(env, ENV_ACTIVITY_TASK_POLLS, 1),
            max_freezes_in_flight=_freezes_in_flight(env),
        )

    def worker_options(self) -> dict[str, Any]:
        """Keyword arguments for `temporalio.worker.Worker` (only what is set)."""
        options: dict[str, Any] = {
            "max_concurrent_activities": self.max_concurrent_activities,
            "max_concurrent_local_activities": self.max_concurrent_local_activities}
        if self.max_concurrent_workflow_tasks is not None:
            options["max_concurrent_workflow_tasks"] = self.max_concurrent_workflow_tasks
        if self.max_cached_workflows is not None:
            options["max_cached_workflows"] = self.max_cached_workflows
        if self.workflow_task_polls is not None:
            options["workflow_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
                self.workflow_task_polls)
        if self.activity_task_polls is not None:
            options["activity_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
                self.activity_task_polls)
        return options

    def describe(self) -> str:
        """One line for the worker's start-up log and the benchmark's report."""
        def show(value: int | None) -> str:
            return "SDK default" if value is None else str(value)

        return (f"activities {self.max_concurrent_activities} + local "
                f"{self.max_concurrent_local_activities} on {self.activity_threads} "
                f"threads, workflow tasks {show(self.max_concurrent_workflow_tasks)}, "
                f"cached workflows {show(self.max_cached_workflows)}, pollers "
                f"{show(self.workflow_task_polls)} workflow / "
                f"{show(self.activity_task_polls)} activity, guests frozen at once "
                f"{self.freeze_slots}{'' if self.max_freezes_in_flight else ' (no bound)'}")
