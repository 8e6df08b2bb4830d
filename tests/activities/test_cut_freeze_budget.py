"""The cut's freeze budget and takeover (GuestCut), against a simulator process: the
unfreezeTimeout sent is the budget, lowered to the worker's maximum; a cut that outlives it
is thawed at the budget; a retry takes over a guest a dead attempt left frozen, without
freezing again, and with the first freeze's budget; the background heartbeat covers calls
that block; an attempt the server timed out leaves the guest to its successor."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities import cut
from activities.cut import GuestCut
from contracts.common import FREEZE_FAILED, QUIESCE_TIMED_OUT
from contracts.snapshot import CutOutcome
from tests.activities.cut_sim import CutSim, cut_sim, one_test
from tests.conftest import StartSim


class CutStack(CutSim):
    def cut(self, name: str, vm: str, budget: float, *, required: bool = False,
            maximum: float = 60.0, env: ActivityEnvironment | None = None) -> CutOutcome:
        input = self.input(name, vm, budget=budget, required=required)
        environment = env or ActivityEnvironment()
        return environment.run(lambda: GuestCut(self.cluster, input, maximum).run())


@pytest.fixture(scope="module")
def shared(start_sim: StartSim) -> Iterator[CutStack]:
    with cut_sim(start_sim, "cut-budget", CutStack) as harness:
        yield harness


@pytest.fixture
def stack(shared: CutStack) -> Iterator[CutStack]:
    with one_test(shared):
        yield shared


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _retry(earlier: dict[str, Any] | None, scheduled: datetime | None = None
           ) -> ActivityEnvironment:
    """The environment of attempt 2, with what attempt 1 heartbeated last."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=2, heartbeat_details=[] if earlier is None else [earlier],
        scheduled_time=scheduled or datetime.now(UTC))
    return env


def test_the_unfreeze_timeout_is_the_budget_lowered_to_the_workers_maximum(
    stack: CutStack,
) -> None:
    asked = stack.cut("budget-7", "gc", 7.0)
    lowered = stack.cut("budget-30", "twice", 30.0, maximum=5.0)
    assert asked.freeze_budget_seconds == 7.0 and not asked.thawed_before_cut
    assert lowered.freeze_budget_seconds == 5.0
    # the deadline is an hour away: the guest's own safety net is the budget, not that
    assert [e["unfreeze_timeout_seconds"] for e in stack.freezes("gc")] == [7]
    assert [e["unfreeze_timeout_seconds"] for e in stack.freezes("twice")] == [5]


def test_a_cut_that_outlives_its_budget_is_thawed_at_the_budget(stack: CutStack) -> None:
    stack.slow_cut("gc-root", "3s")
    outcome = stack.cut("slow-auto", "gc", 1.0)
    [entry] = stack.freezes("gc")
    window = (_when(entry["thawed_at"]) - _when(entry["frozen_at"])).total_seconds()
    # The thaw and the guest's own timer (unfreezeTimeout = the budget) meet at the budget;
    # either may land first. Not at the cut, 3 s in.
    assert entry["thawed_by"] in ("unfreeze", "timeout") and window < 1.5, entry
    # auto: thawed first, then the cut went on crash-consistent
    assert outcome.thawed_before_cut and all(s.cut for s in outcome.volume_snapshots)
    assert outcome.freeze_window_ms is not None and outcome.freeze_window_ms < 1500

    stack.slow_cut("twice-root", "3s")
    began = time.monotonic()
    with pytest.raises(ApplicationError) as refused:
        stack.cut("slow-required", "twice", 1.0, required=True)
    assert refused.value.type == QUIESCE_TIMED_OUT and refused.value.non_retryable
    assert "the freeze budget passed before the cut" in refused.value.message
    assert time.monotonic() - began < 2.5  # failed at the thaw, not after the cut
    [entry] = stack.freezes("twice")
    assert entry["thawed_at"] is not None and entry["thawed_by"] in ("unfreeze", "timeout")
    window = (_when(entry["thawed_at"]) - _when(entry["frozen_at"])).total_seconds()
    assert window < 1.5, entry


def test_a_retry_takes_over_a_guest_a_dead_attempt_left_frozen(stack: CutStack) -> None:
    stack.slow_cut("gc-root", "1s")
    stack.cluster.freeze("snap", "gc", 10)  # the attempt that died, 2 s ago by its heartbeat
    frozen_at = datetime.now(UTC) - timedelta(seconds=2)
    outcome = stack.cut("taken-over", "gc", 10.0,
                        env=_retry({"frozen_at": frozen_at.isoformat(), "cut": []}))
    assert outcome.frozen_at == frozen_at and not outcome.thawed_before_cut
    assert outcome.freeze_window_ms is not None and outcome.freeze_window_ms >= 3000
    # not frozen again: one freeze, thawed by the retry at the cut
    [entry] = stack.freezes("gc")
    assert entry["thawed_by"] == "unfreeze"
    assert sum(1 for e in stack.requests() if e["subresource"] == "freeze") == 1


def test_a_retry_after_the_budget_passed_thaws_at_once_and_never_refreezes(
    stack: CutStack,
) -> None:
    stack.cluster.freeze("snap", "gc", 30)
    spent = datetime.now(UTC) - timedelta(seconds=15)
    outcome = stack.cut("spent", "gc", 10.0, env=_retry({"frozen_at": spent.isoformat()}))
    assert outcome.thawed_before_cut and outcome.frozen_at == spent
    [entry] = stack.freezes("gc")
    assert entry["thawed_by"] == "unfreeze"
    # an attempt that gave up on the freeze (auto) is not followed by a freeze either
    gave_up = stack.cut("gave-up", "twice", 10.0,
                        env=_retry({"freeze_error": "freeze failed: agent busy"}))
    assert gave_up.frozen_at is None and gave_up.freeze_error == "freeze failed: agent busy"
    assert stack.freezes("twice") == []


def test_without_a_heartbeat_the_retry_counts_the_budget_from_the_first_schedule(
    stack: CutStack,
) -> None:
    stack.cluster.freeze("snap", "gc", 30)
    scheduled = datetime.now(UTC) - timedelta(seconds=12)
    outcome = stack.cut("no-word", "gc", 10.0, env=_retry(None, scheduled))
    assert outcome.frozen_at == scheduled and outcome.thawed_before_cut


def test_a_retry_that_finds_its_cut_taken_without_word_of_the_freeze_does_not_freeze(
    stack: CutStack,
) -> None:
    """Attempt 1 froze, cut and thawed, but none of its heartbeats reached the server (a
    worker too busy to send them), so the server timed it out. Its retry must not freeze
    the guest again and call the old cut application-consistent."""
    first = stack.cut("lost-word", "gc", 10.0)
    assert first.frozen_at is not None and len(stack.freezes("gc")) == 1
    again = stack.cut("lost-word", "gc", 10.0, env=_retry({"waiting": ["lost-word-root"]}))
    assert again.frozen_at is None and again.freeze_error is not None
    assert "not known to have been taken while the guest was frozen" in again.freeze_error
    assert [s.name for s in again.volume_snapshots] == ["lost-word-root"]
    assert all(s.cut for s in again.volume_snapshots)
    assert len(stack.freezes("gc")) == 1  # not frozen a second time
    # required: refused before any freeze, not frozen either
    stack.cut("lost-required", "twice", 10.0, required=True)
    with pytest.raises(ApplicationError) as refused:
        stack.cut("lost-required", "twice", 10.0, required=True, env=_retry(None))
    assert refused.value.type == FREEZE_FAILED and refused.value.non_retryable
    assert len(stack.freezes("twice")) == 1
    # a retry whose first attempt created nothing freezes as a first attempt does
    fresh = stack.cut("nothing-yet", "twice", 10.0, env=_retry(None))
    assert fresh.frozen_at is not None and fresh.freeze_error is None


def test_the_background_heartbeat_goes_on_while_the_freeze_call_blocks(
    stack: CutStack,
) -> None:
    stack.sim.set_faults({"rules": [{"resource": "virtualmachineinstances",
                                     "subresource": "freeze", "latency": "1s", "count": 1}]})
    beats: list[tuple[float, dict[str, Any]]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append((time.monotonic(), details[0]))
    began = time.monotonic()
    outcome = stack.cut("blocked", "gc", 10.0, env=env)
    assert outcome.frozen_at is not None
    assert beats and beats[0][0] - began >= cut.QUIET_START_SECONDS
    blocked = [at for at, details in beats if "frozen_at" not in details]
    assert len(blocked) >= 3, beats  # while the freeze call blocked, nothing known yet
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 0.5, gaps
    assert "frozen_at" in beats[-1][1]


def test_an_attempt_the_server_timed_out_leaves_the_guest_to_its_successor(
    stack: CutStack,
) -> None:
    stack.slow_cut("gc-root", "5s")
    env = ActivityEnvironment()
    timer = threading.Timer(1.0, env.cancel, kwargs={
        "cancellation_details": ActivityCancellationDetails(timed_out=True)})
    timer.start()
    try:
        with pytest.raises(CancelledError):
            stack.cut("zombie", "gc", 10.0, env=env)
    finally:
        timer.cancel()
    [entry] = stack.freezes("gc")
    assert entry["thawed_at"] is None  # the successor (or the saga) thaws, not this one
    stack.cluster.unfreeze("snap", "gc")
    # a cancellation asked for by the workflow thaws on the way out
    stack.slow_cut("twice-root", "5s")
    asked = ActivityEnvironment()
    timer = threading.Timer(1.0, asked.cancel)
    timer.start()
    try:
        with pytest.raises(CancelledError):
            stack.cut("cancelled", "twice", 10.0, env=asked)
    finally:
        timer.cancel()
    [entry] = stack.freezes("twice")
    assert entry["thawed_by"] == "unfreeze"
