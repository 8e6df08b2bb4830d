"""Ages as kubectl prints them, in the product (rules.durations) and in the simulator's
own copy (simulator.tables, which imports nothing of the product): one table for both."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rules.durations import human_duration
from simulator import tables

MINUTE, HOUR, DAY = 60, 3600, 86400

# apimachinery's duration.HumanDuration, boundary by boundary.
AGES = [
    (-5, "<invalid>"),
    (-1.5, "0s"),  # within a second of now: clock skew, not an error
    (0, "0s"),
    (45.9, "45s"),
    (90, "90s"),
    (119, "119s"),
    (120, "2m"),
    (150, "2m30s"),
    (599, "9m59s"),
    (600, "10m"),
    (12_000, "3h20m"),  # 200 minutes: past 3h, so hours and minutes
    (3 * HOUR - 1, "179m"),
    (3 * HOUR, "3h"),
    (8 * HOUR - 1, "7h59m"),
    (8 * HOUR, "8h"),
    (47 * HOUR, "47h"),
    (48 * HOUR, "2d"),
    (50 * HOUR, "2d2h"),
    (8 * DAY - 1, "7d23h"),
    (9 * DAY, "9d"),
    (729 * DAY, "729d"),
    (730 * DAY, "2y"),
    (800 * DAY, "2y70d"),
    (2919 * DAY, "7y364d"),
    (2920 * DAY, "8y"),
    (4000 * DAY, "10y"),
]
IMPLEMENTATIONS: dict[str, Callable[[float], str]] = {
    "product": human_duration,
    "simulator": tables.human_duration,
}


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(("seconds", "expected"), AGES)
def test_ages_read_as_kubectl_prints_them(name: str, seconds: float, expected: str) -> None:
    assert IMPLEMENTATIONS[name](seconds) == expected


def test_the_cli_prints_ages_with_the_product_function() -> None:
    from starter.cli_common import age

    assert age(12_000) == "3h20m"
    assert age(None) == "<unknown>"
