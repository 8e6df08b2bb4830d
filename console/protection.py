"""Pure judgements of the console: is a VM protected, and what the fleet's figures are.

A VM's protection is judged by the period of the schedule that covers it: a schedule
that snapshots nightly leaves a VM fresh for a day (plus the time a run may take),
one that snapshots hourly for an hour. A VM no schedule covers is judged against the
console's own `fresh_for` (24h by default). Only a snapshot that restore can use
(Succeeded and ready to use) protects a VM.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Protection = Literal["none", "stale", "fresh"]

PROTECTION_WORDS: dict[Protection, str] = {
    "none": "no snapshot", "stale": "stale", "fresh": "fresh"}

FREEZE_BUCKETS: list[tuple[str, float]] = [
    ("< 100 ms", 100), ("100-250 ms", 250), ("250-500 ms", 500), ("0.5-1 s", 1_000),
    ("1-2 s", 2_000), ("2-5 s", 5_000), ("≥ 5 s", float("inf"))]
"""The freeze-window histogram's buckets: a label and the exclusive upper bound in ms."""


def schedule_period(every: float | None, next_runs: Sequence[datetime]) -> float | None:
    """Seconds between a schedule's runs: its interval, else the longest gap between the
    next runs Temporal computed from its cron (a weekday schedule spans the weekend)."""
    if every:
        return every
    ordered = sorted(next_runs)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ordered)]
    gaps = [g for g in gaps if g > 0]
    return max(gaps) if gaps else None


@dataclass(frozen=True)
class Judgement:
    state: Protection
    limit_seconds: float
    """How old the last usable snapshot may be and still count as fresh."""
    basis: str
    """What the limit comes from, for the page: `schedule nightly`, `no schedule`."""


def judge(last_usable: datetime | None, now: datetime, period: float | None, grace: float,
          fresh_for: float, basis: str) -> Judgement:
    """Fresh when the last usable snapshot is younger than the period plus `grace` (the
    time a run may take); without a period (no schedule), younger than `fresh_for`."""
    limit = period + grace if period else fresh_for
    if last_usable is None:
        return Judgement("none", limit, basis)
    age = (now - last_usable).total_seconds()
    return Judgement("fresh" if age <= limit else "stale", limit, basis)


def freeze_histogram(windows_ms: Iterable[int | None]) -> list[tuple[str, int]]:
    """How many snapshots froze their guest for how long, bucket by bucket; snapshots
    that did not freeze (a stopped VM, crash-consistent) are not counted."""
    counts = [0] * len(FREEZE_BUCKETS)
    for window in windows_ms:
        if window is None:
            continue
        for index, (_, upper) in enumerate(FREEZE_BUCKETS):
            if window < upper:
                counts[index] += 1
                break
    return [(label, counts[i]) for i, (label, _) in enumerate(FREEZE_BUCKETS)]


def count_by(values: Iterable[str | None], missing: str = "unset") -> list[tuple[str, int]]:
    """Occurrences of each value, most frequent first, then by name."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value or missing] = counts.get(value or missing, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def matches_search(text: str, *fields: str | None) -> bool:
    """Every word of `text` is in one of the fields (case-insensitive)."""
    haystack = " ".join(f.lower() for f in fields if f)
    return all(word in haystack for word in text.lower().split())
