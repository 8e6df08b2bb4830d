"""Freeze admission: at most N guests frozen at once by a worker. The slots alone (first
come first served, 0 for no bound, the deadline and the cancellation while waiting), then
in the cut against a simulator process: a cut waits before its freeze, never while frozen,
and gives its slot back after the thaw on every path; a takeover of a guest already frozen
and a crash-consistent cut take no slot."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.cut import GuestCut
from activities.freeze_admission import WAITING_STEP, FreezeSlots, FreezeTurn
from contracts.common import PVC_MISSING, QUIESCE_TIMED_OUT
from contracts.snapshot import (
    DEADLINE_EXCEEDED,
    CutInput,
    CutOutcome,
)
from tests.activities.cut_sim import CutSim, cut_sim, one_test
from tests.conftest import StartSim

SOON = 5.0  # seconds: what "at once" may take on a loaded machine


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; the list gets its result or the exception it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as err:  # the test looks at it
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _until(condition: Callable[[], bool], timeout: float = SOON) -> None:
    limit = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < limit, "condition not met in time"
        time.sleep(0.01)


# ---- the slots alone ------------------------------------------------------------------------


def test_slots_go_first_come_first_served_and_come_back_on_release() -> None:
    slots = FreezeSlots(2)
    first, second = slots.turn(), slots.turn()
    first.wait(None)
    second.wait(None)
    assert slots.held == 2
    granted: list[str] = []
    waiters = []

    def take(turn: FreezeTurn, name: str) -> FreezeTurn:
        turn.wait(None)
        granted.append(name)
        return turn

    for name in ("third", "fourth"):
        waiters.append(_in_thread(functools.partial(take, slots.turn(), name)))
        _until(functools.partial(lambda n: slots.waiting == n, len(waiters)))  # in order
    time.sleep(0.3)
    assert granted == [] and slots.held == 2  # no slot: both wait
    first.release()
    waiters[0][0].join(SOON)
    assert granted == ["third"] and slots.waiting == 1 and slots.held == 2
    first.release()  # a second release gives nothing back twice
    assert slots.held == 2 and slots.waiting == 1
    second.release()
    waiters[1][0].join(SOON)
    assert granted == ["third", "fourth"] and slots.held == 2
    for _, outcome in waiters:
        outcome[0].release()
    assert slots.held == 0 and slots.waiting == 0


def test_zero_means_no_bound() -> None:
    slots = FreezeSlots(0)
    turns = [slots.turn() for _ in range(100)]
    for turn in turns:
        turn.wait(None)  # never blocks
    assert slots.held == 100 and slots.waiting == 0
    for turn in turns:
        turn.release()
    assert slots.held == 0


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        FreezeSlots(-1)


def test_the_failure_deadline_passing_while_waiting_fails_and_frees_the_place() -> None:
    slots = FreezeSlots(1)
    holder = slots.turn()
    holder.wait(None)
    late = slots.turn()
    began = time.monotonic()
    with pytest.raises(ApplicationError) as failed:
        late.wait(datetime.now(UTC) + timedelta(seconds=0.3))
    assert 0.3 <= time.monotonic() - began < SOON
    assert failed.value.type == DEADLINE_EXCEEDED and failed.value.non_retryable
    assert "not frozen, nothing to thaw" in failed.value.message
    assert slots.waiting == 0 and slots.held == 1
    late.release()  # what the cut's last step does: nothing held, nothing given back
    assert slots.held == 1
    holder.release()
    assert slots.held == 0
    # a deadline already past with a free slot: admitted, the freeze's own bound decides
    slots.turn().wait(datetime.now(UTC) - timedelta(seconds=1))
    assert slots.held == 1


def test_cancellation_while_waiting_ends_the_wait_and_passes_the_turn_on() -> None:
    slots = FreezeSlots(1)
    holder = slots.turn()
    holder.wait(None)
    env = ActivityEnvironment()
    cancelled = slots.turn()
    thread, outcome = _in_thread(lambda: env.run(cancelled.wait, None))
    behind = slots.turn()
    _until(lambda: slots.waiting == 1)
    follower, followed = _in_thread(lambda: behind.wait(None))
    _until(lambda: slots.waiting == 2)
    env.cancel()
    thread.join(SOON)
    assert isinstance(outcome[0], CancelledError)
    assert slots.waiting == 1  # the cancelled place is gone; the one behind still waits
    holder.release()
    follower.join(SOON)
    assert followed == [None] and slots.held == 1  # the turn went to the one behind


def test_a_turn_granted_as_its_wait_is_cancelled_passes_the_slot_on() -> None:
    slots = FreezeSlots(1)
    holder, granted = slots.turn(), slots.turn()
    holder.wait(None)
    env = ActivityEnvironment()
    thread, outcome = _in_thread(lambda: env.run(granted.wait, None))
    _until(lambda: slots.waiting == 1)
    # The slot comes back and the cancellation lands before the waiter wakes.
    env.cancel()
    holder.release()
    thread.join(SOON)
    granted.release()  # the cut's last step, on every path
    assert slots.held == 0 and slots.waiting == 0
    assert outcome and (outcome[0] is None or isinstance(outcome[0], CancelledError))


def test_the_wait_shows_in_the_heartbeat_details() -> None:
    from activities.heartbeat import BackgroundHeartbeat

    slots = FreezeSlots(1)
    holder = slots.turn()
    holder.wait(None)
    heartbeat = BackgroundHeartbeat(10.0, 10.0, time.monotonic())  # details only, no thread
    heartbeat.update(cut=[])
    waiter: FreezeTurn = slots.turn()
    thread, _ = _in_thread(lambda: waiter.wait(None, heartbeat))
    _until(lambda: heartbeat.details().get("step") == WAITING_STEP)
    holder.release()
    thread.join(SOON)
    assert heartbeat.details() == {"cut": []}


# ---- in the cut ---------------------------------------------------------------------------


class CutStack(CutSim):
    def cut(self, input: CutInput, slots: FreezeSlots,
            env: ActivityEnvironment | None = None) -> CutOutcome:
        return (env or ActivityEnvironment()).run(
            lambda: GuestCut(self.cluster, input, 60.0, slots).run())


@pytest.fixture(scope="module")
def shared(start_sim: StartSim) -> Iterator[CutStack]:
    with cut_sim(start_sim, "freeze-admission", CutStack) as harness:
        yield harness


@pytest.fixture
def stack(shared: CutStack) -> Iterator[CutStack]:
    with one_test(shared):
        yield shared


def _full(slots: FreezeSlots) -> FreezeTurn:
    """Take every slot (limit 1) as another cut would; its turn."""
    holder = slots.turn()
    holder.wait(None)
    return holder


def test_a_cut_waits_for_a_slot_before_its_freeze_and_gives_it_back_after_the_thaw(
    stack: CutStack,
) -> None:
    slots = FreezeSlots(1)
    holder = _full(slots)
    beats: list[dict[str, Any]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    thread, outcome = _in_thread(lambda: stack.cut(stack.input("queued", "gc"), slots, env))
    _until(lambda: slots.waiting == 1)
    time.sleep(1.0)  # past the quiet start: the wait heartbeats
    assert stack.freezes("gc") == []  # not frozen while it waits
    assert beats and all(b.get("step") == WAITING_STEP for b in beats), beats
    released_at = datetime.now(UTC)
    holder.release()
    thread.join(SOON * 2)
    done = outcome[0]
    assert isinstance(done, CutOutcome) and done.frozen_at is not None
    assert not done.thawed_before_cut
    [entry] = stack.freezes("gc")
    assert datetime.fromisoformat(entry["frozen_at"].replace("Z", "+00:00")) >= released_at
    assert entry["thawed_by"] == "unfreeze"
    assert slots.held == 0 and slots.waiting == 0  # given back after the thaw


def test_the_slot_comes_back_on_every_path(stack: CutStack) -> None:
    slots = FreezeSlots(1)
    # an error after the freeze: quiesce required and the budget passes before the cut
    stack.slow_cut("gc-root", "3s")
    with pytest.raises(ApplicationError) as timed_out:
        stack.cut(stack.input("required", "gc", required=True, budget=1.0), slots)
    assert timed_out.value.type == QUIESCE_TIMED_OUT
    assert slots.held == 0
    # an error before the freeze (a PVC gone): never waited, nothing held
    with pytest.raises(ApplicationError) as missing:
        stack.cut(stack.input("gone", "twice", pvc="no-such-pvc"), slots)
    assert missing.value.type == PVC_MISSING and slots.held == 0
    # a cancellation while frozen: thawed on the way out, then the slot is back
    stack.slow_cut("twice-root", "5s")
    env = ActivityEnvironment()
    timer = threading.Timer(1.0, env.cancel)
    timer.start()
    try:
        with pytest.raises(CancelledError):
            stack.cut(stack.input("cancelled", "twice"), slots, env)
    finally:
        timer.cancel()
    [entry] = stack.freezes("twice")
    assert entry["thawed_by"] == "unfreeze"
    assert slots.held == 0 and slots.waiting == 0


def test_the_deadline_passing_while_waiting_fails_the_cut_unfrozen(stack: CutStack) -> None:
    slots = FreezeSlots(1)
    holder = _full(slots)
    with pytest.raises(ApplicationError) as failed:
        stack.cut(stack.input("too-late", "gc",
                              thaw_by=datetime.now(UTC) + timedelta(seconds=0.5)), slots)
    assert failed.value.type == DEADLINE_EXCEEDED and failed.value.non_retryable
    assert stack.freezes("gc") == []  # never frozen, nothing to thaw
    created = [e for e in stack.requests()
               if e["verb"] == "create" and e["resource"] == "volumesnapshots"]
    assert created == []  # the creates waiting for the freeze never left
    assert slots.held == 1 and slots.waiting == 0
    holder.release()


def test_cancellation_while_waiting_ends_the_cut_unfrozen(stack: CutStack) -> None:
    slots = FreezeSlots(1)
    holder = _full(slots)
    env = ActivityEnvironment()
    thread, outcome = _in_thread(lambda: stack.cut(stack.input("withdrawn", "gc"), slots, env))
    _until(lambda: slots.waiting == 1)
    env.cancel()
    thread.join(SOON)
    assert isinstance(outcome[0], CancelledError)
    assert stack.freezes("gc") == [] and slots.waiting == 0 and slots.held == 1
    holder.release()


def test_a_takeover_and_a_crash_consistent_cut_take_no_slot(stack: CutStack) -> None:
    slots = FreezeSlots(1)
    holder = _full(slots)
    # a retry whose earlier attempt left the guest frozen: it goes first, no wait
    stack.cluster.freeze("snap", "gc", 10)
    frozen_at = datetime.now(UTC) - timedelta(seconds=1)
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2,
                                     heartbeat_details=[{"frozen_at": frozen_at.isoformat()}])
    began = time.monotonic()
    taken_over = stack.cut(stack.input("taken-over", "gc"), slots, retry)
    assert taken_over.frozen_at == frozen_at and not taken_over.thawed_before_cut
    assert [e["thawed_by"] for e in stack.freezes("gc")] == ["unfreeze"]
    # no freeze of its own, and not a slot's worth of waiting
    assert sum(1 for e in stack.requests() if e["subresource"] == "freeze") == 1
    # crash-consistent: no freeze, no slot
    crash = stack.cut(stack.input("crash", "twice", freeze=False), slots)
    assert crash.frozen_at is None and all(s.cut for s in crash.volume_snapshots)
    assert time.monotonic() - began < SOON
    assert slots.held == 1 and slots.waiting == 0  # still the holder's only
    holder.release()
