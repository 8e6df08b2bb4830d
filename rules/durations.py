"""Go-style durations, as KubeVirt users write them (`5m`, `90s`, `1h30m`, `200ms`).

Pure and dependency-free: the workflows' input models, the simulator and the
adapter all parse and print durations the same way. Parsing follows Go's
`time.ParseDuration` (units ns, us/µs, ms, s, m, h; several components; a
fraction on any of them) and also takes plain seconds (`300`, `"300"`,
`"1.5"`), because users typing JSON at the Temporal CLI write numbers.
Negative durations are refused: nothing in this project waits a negative time.
Ages (`human_duration`) are printed as kubectl prints them.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

_NANOS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN, what Go prints
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU, which Go also accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}

_COMPONENT = re.compile(r"(\d+\.?\d*|\.\d+)([a-zA-Z\u00b5\u03bc]+)")
_PLAIN_SECONDS = re.compile(r"\d+\.?\d*|\.\d+")
_EXAMPLES = 'e.g. "5m", "90s", "1h30m", "200ms" or a number of seconds'


def parse_duration(value: str | int | float) -> float:
    """Seconds in a Go duration string or a plain number of seconds; ValueError when bad."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected a duration ({_EXAMPLES})")
    if isinstance(value, int | float):
        return _checked_seconds(float(value), value)
    if not isinstance(value, str):
        raise ValueError(
            f"invalid duration {value!r} of type {type(value).__name__}: "
            f"expected a string or a number ({_EXAMPLES})"
        )
    text = value.strip()
    if not text:
        raise ValueError(f"invalid duration {value!r}: empty ({_EXAMPLES})")
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: negative durations are not allowed")
    body = text[1:] if text.startswith("+") else text
    if _PLAIN_SECONDS.fullmatch(body):
        return _checked_seconds(float(Decimal(body)), value)
    return _checked_seconds(float(_parse_go_components(body, value)), value)


def _parse_go_components(body: str, original: str) -> Fraction:
    """Sum of `<number><unit>` components, exact (Fraction) so that `0.1s` stays 100ms."""
    position = 0
    total = Fraction(0)
    while position < len(body):
        match = _COMPONENT.match(body, position)
        if match is None:
            raise ValueError(
                f"invalid duration {original!r}: cannot read {body[position:]!r} ({_EXAMPLES})"
            )
        number, unit = match.groups()
        nanos = _NANOS_PER_UNIT.get(unit)
        if nanos is None:
            raise ValueError(
                f"invalid duration {original!r}: unknown unit {unit!r} "
                "(use ns, us, ms, s, m or h)"
            )
        try:
            total += Fraction(Decimal(number)) * nanos
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
            raise ValueError(f"invalid duration {original!r}: bad number {number!r}") from exc
        position = match.end()
    return total / 1_000_000_000


def _checked_seconds(seconds: float, original: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid duration {original!r}: not a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {original!r}: negative durations are not allowed")
    return seconds


def format_go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` for `seconds` (rounded to the nanosecond): `5m0s`, `1.5s`."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"cannot format {seconds!r} as a duration: expected a number of seconds")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"cannot format {seconds!r} as a duration: not finite")
    nanos = round(Fraction(seconds) * 1_000_000_000)
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _decimal(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _decimal(amount: int, unit: int) -> str:
    """`amount / unit` written without trailing zeros, as Go does (1500/1000 -> "1.5")."""
    whole, fraction = divmod(amount, unit)
    if fraction == 0:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


def human_duration(seconds: float) -> str:
    """An age as kubectl prints it (apimachinery's `duration.HumanDuration`): `90s`, `2m30s`,
    `3h20m`, `2d2h`, `2y70d`. The CLI's tables then read like `kubectl get`'s; a second
    in the future (clock skew) is `0s`, more is `<invalid>`."""
    whole = int(seconds)  # toward zero, as Go's int(d.Seconds())
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 2 * 60:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return _units(minutes, "m", whole % 60, "s")
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _units(hours, "h", minutes % 60, "m")
    if hours < 2 * 24:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return _units(days, "d", hours % 24, "h")
    if days < 2 * 365:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return _units(years, "y", days % 365, "d")
    return f"{years}y"


def _units(count: int, unit: str, rest: int, rest_unit: str) -> str:
    """`3h20m`, or `3h` when the smaller unit is zero."""
    return f"{count}{unit}{rest}{rest_unit}" if rest else f"{count}{unit}"
