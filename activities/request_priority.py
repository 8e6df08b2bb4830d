"""Give each activity's Kubernetes requests the priority of the workflow run it works for.

Why: under a client-side rate limit (VMSNAP_KUBE_QPS) a FIFO queue advances every running
snapshot together, so a fleet larger than the limit can carry misses every deadline at
once. `cluster.rate_limit.RateLimiter` serves waiting requests by a key instead; this activity
inbound interceptor sets that key from `activity.info()`: when the activity's workflow run
started (see `RunAges`), so the runs that started first finish first.

How it reaches the request: the interceptor sets a contextvar (`cluster.rate_limit.
request_priority`) on the event loop, around the rest of the chain; for a sync activity
the SDK runs the function in the thread pool inside a copy of that context, so the thread
that calls the API sees it. Local activities pass through the same chain. Threads that an
activity starts itself see it only if started with a copy of the context
(`contextvars.copy_context().run`); otherwise their requests are keyed by arrival.

An activity's info does not carry its workflow's start time, but a UUIDv7 run ID does;
with a server that makes random run IDs the key falls back to when this worker first saw
the run (after a worker restart, the open runs are then keyed again in the order their
next activities arrive). Each request also gets the activity's own deadline
(start-to-close, schedule-to-close, heartbeat timeout): a request still queued when the
server has already timed its activity out leaves the queue instead of spending a token.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from cluster.rate_limit import RequestPriority, request_priority

# Runs remembered, least recently used forgotten first: a run forgotten while still open is
# keyed again as if it had just started (it then yields to the runs started before it).
MAX_REMEMBERED_RUNS = 10_000
GIVE_UP_MARGIN_SECONDS = 1.0


def run_started_at(run_id: str) -> float | None:
    """The start of a workflow run (epoch seconds) from its run ID, when the ID is a UUIDv7
    (the Temporal server 1.32 of our stack makes them; older servers make random v4 IDs)."""
    try:
        parsed = uuid.UUID(run_id)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return int(parsed.hex[:12], 16) / 1000.0


class RunAges:
    """The priority key of each workflow run's requests: when the run started.

    On the monotonic clock of the limiter. The start comes from the run ID when it is a
    UUIDv7 (the server's own start time: the same order on every worker, and kept across a
    worker restart); otherwise it is the time this worker first saw the run. A key, once
    given, is remembered so every request of the run carries exactly the same one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 capacity: int = MAX_REMEMBERED_RUNS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._clock, self._wall = clock, wall
        self._capacity = capacity
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    def key(self, run_id: str | None) -> float:
        """The run's key; an activity of no workflow run is keyed by now."""
        now = self._clock()
        if not run_id:
            return now
        with self._lock:
            key = self._keys.get(run_id)
            if key is None:
                started = run_started_at(run_id)
                key = now if started is None else now - (self._wall() - started)
                self._keys[run_id] = key
                while len(self._keys) > self._capacity:
                    self._keys.popitem(last=False)
            else:
                self._keys.move_to_end(run_id)
            return key

    def __len__(self) -> int:
        return len(self._keys)


def priority_for(info: activity.Info, ages: RunAges) -> RequestPriority:
    """The `RequestPriority` of one activity attempt's requests, on the ages' clock.

    Called as the attempt starts; its deadlines are measured from now on the worker's own
    clock (the server's timestamps only give the schedule-to-close remainder), so a skew
    between the worker's and the server's clocks does not move them.
    """
    now = ages.now()
    limits = []
    if info.start_to_close_timeout is not None:
        limits.append(info.start_to_close_timeout)
    if info.schedule_to_close_timeout is not None and info.started_time is not None:
        limits.append(info.scheduled_time + info.schedule_to_close_timeout - info.started_time)
    give_up_at = None
    if limits:
        limit = min(limits).total_seconds()
        # A little before the timeout, so the attempt fails with the limiter's own error
        # rather than racing the timeout (a late result is dropped as "untracked").
        give_up_at = now + limit - min(GIVE_UP_MARGIN_SECONDS, limit / 10)
    max_wait = (info.heartbeat_timeout.total_seconds()
                if info.heartbeat_timeout is not None else None)
    return RequestPriority(ages.key(info.workflow_run_id), give_up_at, max_wait)


class RequestPriorityInterceptor(Interceptor):
    """Worker interceptor: every activity (and local activity) runs with its run's priority."""

    def __init__(self, ages: RunAges | None = None) -> None:
        self.ages = ages or RunAges()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _PrioritizedActivity(next, self.ages)


class _PrioritizedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, ages: RunAges) -> None:
        super().__init__(next)
        self._ages = ages

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        priority = priority_for(activity.info(), self._ages)
        with request_priority(priority.key, priority.give_up_at, priority.max_wait):
            return await self.next.execute_activity(input)


def request_priority_interceptors() -> list[Interceptor]:
    """For `Worker(..., interceptors=request_priority_interceptors())`."""
    return [RequestPriorityInterceptor()]
