"""The adapter's client-side rate limit: token bucket, urgent requests first, settings."""

from __future__ import annotations

import pytest

from cluster.client import (
    RateLimiter,
    rate_limiter_from_environment,
    requests_are_urgent,
    urgent_requests,
)
from cluster.errors import ConfigurationError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_burst_passes_then_requests_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 2, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:2] == [0, 0]
    assert waits[2:] == pytest.approx([0.2, 0.2, 0.2])
    assert clock.now == pytest.approx(100.6)


def test_an_idle_bucket_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 3, clock=clock, sleep=clock.sleep)
    clock.now += 60
    assert [limiter.reserve() for _ in range(4)][-1] == pytest.approx(0.1)


def test_urgent_requests_never_wait_and_their_debt_delays_ordinary_ones() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 1, clock=clock, sleep=clock.sleep)
    assert limiter.reserve() == 0
    assert [limiter.reserve(urgent=True) for _ in range(3)] == [0, 0, 0]
    # Three tokens were borrowed: the next ordinary request waits them out and its own.
    assert limiter.reserve() == pytest.approx(0.8)


def test_concurrent_reservations_queue_in_turn() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 1, clock=clock, sleep=clock.sleep)
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0, 0.5, 1.0])


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
