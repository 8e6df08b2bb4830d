"""The simulator's Go durations: read as Go's time.ParseDuration, printed as Duration.String."""

from __future__ import annotations

import pytest

from simulator.durations import go_seconds, go_string, setting_seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("5m0s", 300.0), ("1h30m", 5400.0), ("200ms", 0.2), ("1.5s", 1.5),
    ("+2s", 2.0), ("-2s", -2.0), (".5s", 0.5), ("1us", 1e-6), ("1\u00b5s", 1e-6),
    ("2h45m30.5s", 9930.5),
])
def test_go_reads_what_go_reads(text: str, seconds: float) -> None:
    assert go_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("300", 'time: missing unit in duration "300"'),
    ("", 'time: invalid duration ""'),
    ("5 m", 'time: unknown unit " m" in duration "5 m"'),
    ("5x", 'time: unknown unit "x" in duration "5x"'),
    ("m", 'time: invalid duration "m"'),
])
def test_go_refuses_what_go_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        go_seconds(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (300, "5m0s"), (5400, "1h30m0s"), (0.2, "200ms"), (1.5, "1.5s"),
    (3600, "1h0m0s"), (61.25, "1m1.25s"), (1e-6, "1\u00b5s"), (-90, "-1m30s"),
])
def test_go_prints_what_go_prints(seconds: float, text: str) -> None:
    assert go_string(seconds) == text


def test_settings_take_plain_seconds_and_refuse_negative_or_infinite() -> None:
    assert setting_seconds("0.25") == 0.25
    assert setting_seconds(3) == 3.0
    assert setting_seconds("2s") == 2.0
    for bad in ("-1s", float("inf"), float("nan"), True, "soon"):
        with pytest.raises(ValueError):
            setting_seconds(bad)
