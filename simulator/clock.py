"""Now, as the strings the API writes (RFC 3339, UTC), without a `datetime` per call.

Every request is logged with two instants and most writes stamp one, so formatting
"now" was a measurable share of the simulator's CPU. The date-and-time part changes
once a second: it is formatted once per second and reused; the microseconds are
appended. The strings are exactly those of `datetime.now(UTC).strftime(...)`, which
also truncates the clock's nanoseconds to microseconds.
"""

from __future__ import annotations

import time

_NANOS = 1_000_000_000


class _SecondPrefix:
    """The "YYYY-MM-DDTHH:MM:SS" of the last second asked for."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def of(self, second: int) -> str:
        if second != self.second:
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.second = second
        return self.text


_PREFIX = _SecondPrefix()


def format_seconds(nanos: int) -> str:
    """Unix nanoseconds -> "2026-11-27T06:48:15Z" (metav1.Time: whole seconds)."""
    return _PREFIX.of(nanos // _NANOS) + "Z"


def format_micro(nanos: int) -> str:
    """Unix nanoseconds -> "2026-11-27T06:48:15.123456Z" (microseconds, truncated)."""
    second, rest = divmod(nanos, _NANOS)
    return f"{_PREFIX.of(second)}.{rest // 1000:06d}Z"


def now_seconds() -> str:
    return format_seconds(time.time_ns())


def now_micro() -> str:
    return format_micro(time.time_ns())
