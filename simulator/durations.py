"""Go durations as the simulated components read and print them.

KubeVirt reads `unfreezeTimeout` with Go's `time.ParseDuration` (a `metav1.Duration`),
so the guest agent here does too: a unit is required (`300` alone is refused, `0` is
allowed), components add up (`1h30m`), any component may carry a fraction. The
simulator's own settings (seed annotations, fault rules) are written the same way and
may also be plain seconds, which test code writes as numbers. The simulator keeps this
apart from the product's parser on purpose: it plays the cluster, and must not inherit
the product's leniency.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_NANOS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # MICRO SIGN, what Go prints
    "\u03bcs": 10**3,  # GREEK SMALL LETTER MU, which Go also reads
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([^\d.]+)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def go_seconds(text: str) -> float:
    """Seconds in a Go duration (`time.ParseDuration`); ValueError as Go's error reads."""
    original, sign = text, 1
    if text[:1] in ("+", "-"):
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total, position = Fraction(0), 0
    while position < len(text):
        part = _PART.match(text, position)
        if part is None:
            missing = _NUMBER.fullmatch(text, position) is not None
            reason = "missing unit in duration" if missing else "invalid duration"
            raise ValueError(f'time: {reason} "{original}"')
        amount, unit = part.groups()
        if unit not in _NANOS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        total += Fraction(amount) * _NANOS[unit]
        position = part.end()
    return sign * float(total / 10**9)


def setting_seconds(value: str | int | float) -> float:
    """A simulator setting: a Go duration or plain seconds, finite and not negative."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif _NUMBER.fullmatch(value.strip()):
        seconds = float(value.strip())
    else:
        try:
            seconds = go_seconds(value.strip())
        except ValueError as exc:
            raise ValueError(f"invalid duration {value!r} ({exc})") from None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: expected a finite, non-negative time")
    return seconds


def go_string(seconds: float) -> str:
    """Go's `Duration.String()`: `5m0s`, `1.5s`, `200ms`, `0s`."""
    nanos = round(Fraction(seconds) * 10**9)
    if nanos == 0:
        return "0s"
    sign, nanos = ("-" if nanos < 0 else ""), abs(nanos)
    if nanos < 10**9:
        unit, size = next((u, s) for u, s in (("ms", 10**6), ("\u00b5s", 10**3), ("ns", 1))
                          if nanos >= s)
        return sign + _fraction_text(nanos, size) + unit
    hours, nanos = divmod(nanos, 3600 * 10**9)
    minutes, nanos = divmod(nanos, 60 * 10**9)
    head = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + head + _fraction_text(nanos, 10**9) + "s"


def _fraction_text(amount: int, unit: int) -> str:
    whole, rest = divmod(amount, unit)
    if not rest:
        return str(whole)
    return (str(whole) + "." + str(rest).rjust(len(str(unit)) - 1, "0")).rstrip("0")
