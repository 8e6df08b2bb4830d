"""The orchestration benchmark's ratios per N over repeated pairs (`--repeat`)."""

from __future__ import annotations

import statistics

from bench.orchestration import Wave, median_ratios


def wave(kind: str, size: int, wall: float) -> Wave:
    return Wave(kind=kind, size=size, wall=wall, latencies=[wall], succeeded=size)


def test_ratios_are_grouped_by_size_in_the_order_measured() -> None:
    pairs = [(wave("vmsnap", 100, 15.0), wave("bare", 100, 10.0)),
             (wave("vmsnap", 100, 12.0), wave("bare", 100, 10.0)),
             (wave("vmsnap", 100, 20.0), wave("bare", 100, 10.0)),
             (wave("vmsnap", 500, 90.0), wave("bare", 500, 60.0))]
    ratios = median_ratios(pairs)
    assert ratios == {100: [1.5, 1.2, 2.0], 500: [1.5]}
    assert statistics.median(ratios[100]) == 1.5
