"""Go-style durations: what KubeVirt users type and what KubeVirt's API accepts."""

from __future__ import annotations

import pytest

from rules.durations import format_go_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("200ms", 0.2),
        ("5m0s", 300.0),
        ("1h0m0s", 3600.0),
        ("1.5h", 5400.0),
        ("0.1s", 0.1),
        (".5s", 0.5),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("1\u03bcs", 1e-6),
        ("250ns", 2.5e-7),
        ("2h45m30.5s", 9930.5),
        ("+10s", 10.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("300", 300.0),
        (" 300 ", 300.0),
        ("1.5", 1.5),
        ("  5m ", 300.0),
    ],
)
def test_parses_go_durations_and_plain_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(("number", "seconds"), [(300, 300.0), (0, 0.0), (1.25, 1.25)])
def test_numbers_are_seconds(number: float, seconds: float) -> None:
    assert parse_duration(number) == seconds


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("5", None),  # valid: guard that the table below is not accepting everything
        ("-5m", "negative"),
        (-1, "negative"),
        ("5x", "unknown unit 'x'"),
        ("5H", "unknown unit 'H'"),
        ("5 m", "cannot read"),
        ("m", "cannot read"),
        ("1h30", "cannot read"),
        (".s", "cannot read"),
        ("5m-3s", "cannot read"),
        (float("nan"), "not a finite"),
        (float("inf"), "not a finite"),
        (True, "expected a duration"),
        (None, "expected a string or a number"),
        ([5], "expected a string or a number"),
    ],
)
def test_bad_durations_are_refused_with_a_clear_message(bad: object, message: str | None) -> None:
    if message is None:
        assert parse_duration(bad) == 5.0  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match="invalid duration") as raised:
        parse_duration(bad)  # type: ignore[arg-type]
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (300, "5m0s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (5400, "1h30m0s"),
        (1.5, "1.5s"),
        (59.999, "59.999s"),
        (0.2, "200ms"),
        (0.0015, "1.5ms"),
        (2e-6, "2\u00b5s"),
        (5e-9, "5ns"),
        (86400 * 2 + 1, "48h0m1s"),
        (-90, "-1m30s"),
        (299.9999999999, "5m0s"),  # rounded to the nanosecond
    ],
)
def test_formats_like_go(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.0, 0.2, 1.5, 90, 300, 5400, 12345.678])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_go_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "5m", True, None])
def test_format_refuses_what_is_not_a_finite_number(bad: object) -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_go_duration(bad)  # type: ignore[arg-type]
