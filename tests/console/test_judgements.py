"""The console's pure parts: protection by the schedule's period, the fleet's figures, the
chart, and the settings that refuse an unsafe start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from console.chart import bar_chart_svg
from console.protection import count_by, freeze_histogram, judge, matches_search, schedule_period
from console.settings import ConsoleConfigError, ConsoleSettings

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def test_period_is_the_interval_or_the_longest_gap_between_cron_runs() -> None:
    assert schedule_period(3600.0, []) == 3600.0
    weekdays = [datetime(2026, 3, d, 2, tzinfo=UTC) for d in (5, 6, 9, 10)]  # Thu Fri Mon Tue
    assert schedule_period(None, weekdays) == 3 * 86400
    assert schedule_period(None, weekdays[:1]) is None


@pytest.mark.parametrize(("age", "period", "state"), [
    (None, 3600.0, "none"),
    (timedelta(minutes=50), 3600.0, "fresh"),
    (timedelta(minutes=64), 3600.0, "fresh"),   # within the grace (5 m)
    (timedelta(minutes=70), 3600.0, "stale"),
    (timedelta(hours=23), None, "fresh"),       # no schedule: fresh_for (24 h)
    (timedelta(hours=25), None, "stale"),
])
def test_fresh_or_stale_by_the_schedules_own_period(
        age: timedelta | None, period: float | None, state: str) -> None:
    last = None if age is None else NOW - age
    assert judge(last, NOW, period, 300.0, 86400.0, "basis").state == state


def test_freeze_histogram_counts_frozen_snapshots_only() -> None:
    counts = dict(freeze_histogram([50, 99, 100, 700, 6000, None]))
    assert counts["< 100 ms"] == 2 and counts["100-250 ms"] == 1
    assert counts["0.5-1 s"] == 1 and counts["≥ 5 s"] == 1 and sum(counts.values()) == 5


def test_counts_and_search() -> None:
    assert count_by(["Succeeded", "Failed", "Succeeded", None]) == [
        ("Succeeded", 2), ("Failed", 1), ("unset", 1)]
    assert matches_search("WEB run", "web-1", "Running")
    assert not matches_search("db", "web-1", "Running")


def test_chart_escapes_and_scales() -> None:
    svg = bar_chart_svg("a <b>", [("x<y", 4), ("z", 2), ("empty", 0)])
    assert "a &lt;b&gt;" in svg and "x&lt;y" in svg and "<b>" not in svg
    assert 'width="370"' in svg and 'width="185"' in svg and 'width="0"' in svg


def test_settings_refuse_an_unauthenticated_console_beyond_loopback() -> None:
    with pytest.raises(ConsoleConfigError, match="no authentication"):
        ConsoleSettings(host="0.0.0.0")
    assert ConsoleSettings(host="0.0.0.0", user_header="X-Forwarded-User").authenticates
    assert ConsoleSettings(host="::1").loopback
    with pytest.raises(ConsoleConfigError, match="at least 16"):
        ConsoleSettings(token="short")
    with pytest.raises(ConsoleConfigError, match="header name"):
        ConsoleSettings(user_header="X Forwarded: User")
