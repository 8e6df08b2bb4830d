"""The adapter's client-side rate limit: token bucket, earliest operation first, urgent
requests on credit, settings."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from cluster.errors import ConfigurationError, Transient
from cluster.rate_limit import (
    RateLimiter,
    RequestPriority,
    ThrottledApiClient,
    TokenQueue,
    current_request_priority,
    rate_limiter_from_environment,
    request_priority,
    requests_are_urgent,
    urgent_requests,
)


def grant_times(queue: TokenQueue, now: float, until: float, step: float = 0.01
                ) -> list[tuple[float, float]]:
    """Step a fake clock; (time, key) of each grant in order."""
    out = []
    for i in range(round((until - now) / step) + 1):
        at = round(now + i * step, 6)
        out += [(round(at, 2), t.key) for t in queue.grant(at)]
    return out


def test_burst_passes_then_requests_are_spaced_at_the_rate() -> None:
    queue = TokenQueue(5, 2, now=100.0)
    assert [queue.try_take(100.0) for _ in range(3)] == [True, True, False]
    for key in range(3):
        queue.enqueue(key, 100.0)
    assert queue.next_grant_in(100.0) == pytest.approx(0.2)
    assert grant_times(queue, 100.0, 100.7) == [(100.2, 0), (100.4, 1), (100.6, 2)]


def test_an_idle_bucket_refills_only_up_to_the_burst() -> None:
    queue = TokenQueue(10, 3, now=0.0)
    assert [queue.try_take(60.0) for _ in range(4)] == [True, True, True, False]


def test_waiting_requests_go_by_key_not_by_arrival() -> None:
    queue = TokenQueue(10, 1, now=0.0)
    assert queue.try_take(0.0)
    for key in (30.0, 10.0, 20.0, 10.0):  # the second 10 came later than the first
        queue.enqueue(key, 0.0)
    granted = []
    for now in (0.1, 0.2, 0.3, 0.4):
        granted += [(t.key, t.arrival) for t in queue.grant(now)]
    assert granted == [(10.0, 1), (10.0, 3), (20.0, 2), (30.0, 0)]


def test_a_free_token_is_not_taken_past_someone_waiting() -> None:
    queue = TokenQueue(10, 1, now=0.0)
    assert queue.try_take(0.0)
    queue.enqueue(5.0, 0.0)
    # The token of 0.1 s belongs to the waiting request, however late the grant runs.
    assert not queue.try_take(0.15)
    assert [t.key for t in queue.grant(0.15)] == [5.0]


def test_urgent_requests_never_wait_and_their_debt_delays_the_waiting_ones() -> None:
    queue = TokenQueue(5, 1, now=0.0)
    assert queue.try_take(0.0)
    for _ in range(3):
        queue.borrow(0.0)
    queue.enqueue(1.0, 0.0)
    # Three tokens borrowed: the waiting request waits them out and its own.
    assert queue.next_grant_in(0.0) == pytest.approx(0.8)
    assert grant_times(queue, 0.0, 1.0) == [(0.8, 1.0)]


def test_a_withdrawn_request_leaves_its_place_to_the_next() -> None:
    queue = TokenQueue(10, 1, now=0.0)
    assert queue.try_take(0.0)
    first, second = queue.enqueue(1.0, 0.0), queue.enqueue(2.0, 0.0)
    queue.withdraw(first)
    assert queue.head() is second and queue.waiting == 1
    assert queue.grant(0.1) == [second] and not first.granted


def fleet(operations: int, requests_each: int, qps: float, burst: int, by_start: bool,
          think: float = 0.05) -> list[float]:
    """When each of `operations` (started 10 ms apart, in order) made its last request, each
    making `requests_each` requests one after another, `think` seconds apart."""
    queue = TokenQueue(qps, burst, now=0.0)
    left = dict.fromkeys(range(operations), requests_each)
    ready_at = {op: op * 0.01 for op in range(operations)}  # when the next request leaves
    tickets: dict[object, int] = {}
    done: dict[int, float] = {}
    now = 0.0
    while len(done) < operations:
        for op, at in list(ready_at.items()):
            if at <= now + 1e-9:
                del ready_at[op]
                if queue.try_take(now):
                    granted = [op]
                else:
                    tickets[queue.enqueue(op * 0.01 if by_start else now, now)] = op
                    granted = []
                for op_done in granted:
                    left[op_done] -= 1
                    if left[op_done]:
                        ready_at[op_done] = now + think
                    else:
                        done[op_done] = now
        for ticket in queue.grant(now):
            op = tickets.pop(ticket)
            left[op] -= 1
            if left[op]:
                ready_at[op] = now + think
            else:
                done[op] = now
        now = round(now + 0.01, 2)
    return [done[op] for op in range(operations)]


def test_a_throttled_fleet_finishes_one_operation_after_another_by_start() -> None:
    by_start = fleet(80, 15, qps=5, burst=5, by_start=True)
    # Earliest first: operations finish in the order they started, the first within a few
    # seconds, and the work (1,200 requests at 5/s) ends within a token of 240 s.
    assert by_start == sorted(by_start)
    assert by_start[0] < 5 and by_start[-1] == pytest.approx(239, abs=1.5)
    assert sum(t <= 120 for t in by_start) >= 39  # half the work done: half the fleet done


def test_the_same_fleet_in_arrival_order_finishes_all_together_at_the_end() -> None:
    fifo = fleet(80, 15, qps=5, burst=5, by_start=False)
    # Arrival order alone: everyone advances together and nobody is done early.
    assert min(fifo) > 200 and max(fifo) == pytest.approx(239, abs=1.5)


def test_the_threaded_limiter_serves_waiting_threads_by_key() -> None:
    limiter = RateLimiter(40, 1)
    assert limiter.acquire() == 0  # the one token of the burst
    for _ in range(40):  # one second of debt: every thread below queues before any grant
        limiter.acquire(urgent=True)
    order: list[float] = []

    def request(key: float) -> None:
        limiter.acquire(priority=RequestPriority(key))
        order.append(key)

    threads = []
    for key in (5.0, 3.0, 1.0, 4.0, 2.0):
        thread = threading.Thread(target=request, args=(key,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while limiter.waiting < len(threads) and time.monotonic() < deadline:
            time.sleep(0.001)
    assert limiter.waiting == 5
    for thread in threads:
        thread.join(10)
    assert order == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert limiter.waiting == 0


def test_a_request_past_its_deadline_gives_up_and_holds_no_place() -> None:
    limiter = RateLimiter(1, 1)
    assert limiter.acquire() == 0
    started = time.monotonic()
    with pytest.raises(Transient) as caught:
        limiter.acquire(priority=RequestPriority(0.0, max_wait=0.05))
    assert caught.value.retryable and caught.value.reason == "ClientThrottled"
    assert time.monotonic() - started < 0.9  # it did not wait for the token
    assert limiter.waiting == 0
    with pytest.raises(Transient):
        limiter.acquire(priority=RequestPriority(0.0, give_up_at=time.monotonic() - 1))


class Cancelled(Exception):
    pass


def test_a_thread_cancelled_while_waiting_leaves_the_queue_and_passes_the_turn_on() -> None:
    """Temporal cancels a sync activity by raising an exception inside its thread, wherever
    it is: a ticket left behind would keep its place (and later take a token for nobody).
    The exception is raised here from the clock, inside the waiting loop."""
    calls: dict[str, int] = {}

    def clock() -> float:
        name = threading.current_thread().name
        calls[name] = calls.get(name, 0) + 1
        if name == "cancelled" and calls[name] == 2:  # 1: enqueue; 2: first look
            raise Cancelled
        return time.monotonic()

    limiter = RateLimiter(20, 1, clock=clock)
    assert limiter.acquire() == 0
    for _ in range(20):  # a second of debt
        limiter.acquire(urgent=True)
    outcome: dict[str, object] = {}

    def request(key: float) -> None:
        name = threading.current_thread().name
        try:
            outcome[name] = limiter.acquire(priority=RequestPriority(key))
        except Cancelled as err:
            outcome[name] = err

    waiting = threading.Thread(target=request, args=(2.0,), name="waiting")
    waiting.start()
    deadline = time.monotonic() + 5
    while limiter.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    cancelled = threading.Thread(target=request, args=(1.0,), name="cancelled")
    cancelled.start()
    cancelled.join(5)
    assert isinstance(outcome["cancelled"], Cancelled)
    assert limiter.waiting == 1  # its place is gone; the other request is next
    waiting.join(5)
    assert isinstance(outcome["waiting"], float) and limiter.waiting == 0


def test_the_api_client_asks_the_limiter_with_the_contexts_priority() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # never reached: the limiter refuses first
    limiter = RateLimiter(0.5, 1)
    api = ThrottledApiClient(configuration, limiter)
    try:
        assert limiter.acquire() == 0
        assert current_request_priority() is None
        with request_priority(1.0, give_up_at=time.monotonic()) as priority:
            assert current_request_priority() is priority
            with pytest.raises(Transient):
                api.call_api("/version", "GET")
        assert current_request_priority() is None
    finally:
        api.close()


def test_urgency_is_per_thread_and_nests() -> None:
    assert not requests_are_urgent()
    with urgent_requests():
        with urgent_requests():
            assert requests_are_urgent()
        assert requests_are_urgent()
    assert not requests_are_urgent()


def test_settings_from_environment() -> None:
    assert rate_limiter_from_environment({}) is None
    assert rate_limiter_from_environment({"VMSNAP_KUBE_QPS": "0"}) is None
    limiter = rate_limiter_from_environment({"VMSNAP_KUBE_QPS": "2.5"})
    assert limiter is not None and (limiter.qps, limiter.burst) == (2.5, 3)
    limiter = rate_limiter_from_environment({"VMSNAP_KUBE_QPS": "5", "VMSNAP_KUBE_BURST": "1"})
    assert limiter is not None and (limiter.qps, limiter.burst) == (5, 1)


@pytest.mark.parametrize("env", [
    {"VMSNAP_KUBE_QPS": "fast"},
    {"VMSNAP_KUBE_QPS": "-1"},
    {"VMSNAP_KUBE_QPS": "inf"},
    {"VMSNAP_KUBE_QPS": "nan"},
    {"VMSNAP_KUBE_QPS": "5", "VMSNAP_KUBE_BURST": "0"},
    {"VMSNAP_KUBE_QPS": "5", "VMSNAP_KUBE_BURST": "1.5"},
    {"VMSNAP_KUBE_BURST": "10"},
])
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        rate_limiter_from_environment(env)


def test_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)
