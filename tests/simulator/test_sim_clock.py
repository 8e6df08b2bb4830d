"""The per-second cached "now" strings match `datetime`'s, across second boundaries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from simulator import clock
from simulator.controllers.runtime import rfc3339_micro, rfc3339_seconds
from simulator.request_paths import timestamp
from simulator.store import now_rfc3339

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reference(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)  # datetime truncates, as the clock


def test_formats_match_datetime_in_any_order_of_seconds() -> None:
    rng = random.Random(6)
    base = 1_795_000_000 * 1_000_000_000
    # Runs within one second (the cached prefix reused), jumps back and forth, and the
    # last nanoseconds before a second turns.
    samples = [base + rng.randrange(0, 3 * 10**9) for _ in range(300)]
    samples += [base + 10**9 - 1, base + 10**9, base + 999_999, base + 1_000, base]
    samples += [rng.randrange(0, 4_000_000_000 * 10**9) for _ in range(300)]
    for nanos in samples:
        moment = _reference(nanos)
        assert clock.format_micro(nanos) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), nanos
        assert clock.format_seconds(nanos) == moment.strftime("%Y-%m-%dT%H:%M:%SZ"), nanos
        assert clock.format_micro(nanos) == moment.isoformat(
            timespec="microseconds").replace("+00:00", "Z")


def test_now_strings_are_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    micro = [timestamp(), rfc3339_micro(), clock.now_micro()]
    seconds = [now_rfc3339(), rfc3339_seconds(), clock.now_seconds()]
    after = datetime.now(UTC)
    for text in micro:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before <= parsed <= after
    for text in seconds:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert before <= parsed <= after


def test_an_explicit_moment_is_formatted_as_given() -> None:
    moment = datetime(2024, 2, 29, 23, 59, 59, 7, tzinfo=UTC)
    assert rfc3339_micro(moment) == "2024-02-29T23:59:59.000007Z"
    assert rfc3339_seconds(moment) == "2024-02-29T23:59:59Z"
