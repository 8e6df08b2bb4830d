"""What a name, a label, a selector or a duration in an input must look like.

Every input model applies these where the input enters (the workflow's own JSON,
typed at the Temporal CLI, included), so a bad value is refused with the field named
before any step runs. Every duration has an upper bound (days, not centuries: a
larger one would overflow the workflow's time arithmetic), and every list and free
text a bound on its size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from rules.durations import format_go_duration, parse_duration

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
RESERVED_LABEL_PREFIX = "vmsnap.io/"
RESERVED_DOMAIN = "vmsnap.io"  # every label key under it or a subdomain of it is vmsnap's
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

_SELECTOR_KEY = r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" \
                r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_SELECTOR_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SELECTOR_TERM = re.compile(
    rf"!?{_SELECTOR_KEY}"
    rf"|{_SELECTOR_KEY}\s*(?:==|=|!=)\s*{_SELECTOR_VALUE}"
    rf"|{_SELECTOR_KEY}\s+(?:in|notin)\s+\(\s*{_SELECTOR_VALUE}(?:\s*,\s*{_SELECTOR_VALUE})*\s*\)"
)


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as \"5m\", \"90s\" or seconds, not {value!r}")


Duration = Annotated[float, BeforeValidator(_seconds)]
"""Seconds; the JSON may say `"5m"`, `"1h30m"`, `"90s"`, `300` or `"300"`."""


def _between(maximum: float, minimum: float = 0.0, *, zero: bool = False
             ) -> Callable[[object], float]:
    """A duration check: at most `maximum`, at least `minimum` seconds; with `zero`, also
    exactly 0 (which then means "none"). NaN and infinity are refused by the parser."""

    def check(value: object) -> float:
        seconds = _seconds(value)
        if zero and seconds == 0:
            return seconds
        if seconds > maximum:
            raise ValueError(f"{value!r} is too long: at most {format_go_duration(maximum)}")
        if seconds < minimum:
            raise ValueError(f"{value!r} is too short: at least {format_go_duration(minimum)}"
                             + (" (or 0 for none)" if zero else ""))
        return seconds

    return check


# The bounds of every duration an input takes (workflows/README.md lists them).
MAX_DEADLINE = DAY
MAX_READY_DEADLINE = 7 * DAY
MAX_WAIT = DAY
MAX_GRACE_PERIOD = 7 * DAY
MAX_SWEEP_GRACE = 30 * DAY
MIN_WAIT = 1.0
MIN_FREEZE_BUDGET = 1.0  # KubeVirt keeps whole seconds of unfreezeTimeout: less is no self-thaw
MAX_FREEZE_BUDGET = 5 * MINUTE  # the ceiling of the ceiling: VMSNAP_MAX_FREEZE_BUDGET is below

Deadline = Annotated[float, BeforeValidator(_between(MAX_DEADLINE, zero=True))]
"""A failure deadline: 0 (none) or up to a day."""
ReadyDeadline = Annotated[float, BeforeValidator(_between(MAX_READY_DEADLINE, zero=True))]
"""How long VolumeSnapshots may take to be ready: 0 (none) or up to a week."""
Wait = Annotated[float, BeforeValidator(_between(MAX_WAIT, MIN_WAIT))]
"""A bounded wait for the cluster (PVCs to bind, a VM to stop): 1s to a day."""
GracePeriod = Annotated[float, BeforeValidator(_between(MAX_GRACE_PERIOD, MIN_WAIT))]
"""How long a user is given to act (stop a VM): 1s to a week."""
SweepGrace = Annotated[float, BeforeValidator(_between(MAX_SWEEP_GRACE))]
"""How old an orphan must be before it goes: 0 to 30 days."""
FreezeBudget = Annotated[float, BeforeValidator(_between(MAX_FREEZE_BUDGET, MIN_FREEZE_BUDGET))]
"""How long a guest may stay frozen for one cut: 1s to 5m (the worker's own maximum,
`VMSNAP_MAX_FREEZE_BUDGET`, is checked at admission)."""


def check_freeze_budget(value: object) -> float:
    """A freeze budget in seconds, or ValueError saying why not (1s to 5m)."""
    return _between(MAX_FREEZE_BUDGET, MIN_FREEZE_BUDGET)(value)


def check_dns_label(value: str, what: str) -> str:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def check_dns_subdomain(value: str, what: str) -> str:
    if len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return value


def is_reserved_key(key: str) -> bool:
    """A label or annotation key of vmsnap's own: prefix `vmsnap.io/` or a subdomain of it
    (`schedule.vmsnap.io/name`). Users never set them: they name operations, locks and
    the schedule a snapshot belongs to."""
    prefix = key.rpartition("/")[0]
    return prefix == RESERVED_DOMAIN or prefix.endswith("." + RESERVED_DOMAIN)


MAX_LABELS = 64
MAX_SELECTOR = 1024


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax; keys under `vmsnap.io` are the project's own."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{len(labels)} labels: at most {MAX_LABELS}")
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix:
            check_dns_subdomain(prefix, f"label prefix of {key!r}:")
        if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"label key {key!r} is not valid")
        if is_reserved_key(key):
            raise ValueError(f"label key {key!r}: keys under {RESERVED_DOMAIN} are reserved "
                             "for vmsnap")
        if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
            raise ValueError(f"label value {value!r} of {key!r} is not valid")
    return labels


_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}")
MAX_INTERFACES = 32
_INTERFACE = re.compile(r"[A-Za-z0-9_-]{1,63}")


def check_mac(interface: str, mac: str) -> str:
    """A MAC as KubeVirt takes it: six hex pairs split by ':' or '-' (the same each time)."""
    if not interface:
        raise ValueError(f"MAC {mac!r}: the interface name is empty")
    if not _MAC.fullmatch(mac) or len({mac[2], mac[5], mac[8], mac[11], mac[14]}) != 1:
        raise ValueError(f"interface {interface}: {mac!r} is not a MAC address "
                         "(six hex pairs, e.g. 02:00:00:00:00:01)")
    return mac


def check_mac_addresses(macs: dict[str, str]) -> dict[str, str]:
    """{interface: MAC}: interface names as KubeVirt takes them (letters, digits, '-' and
    '_', at most 63), at most 32 of them."""
    check_count(macs, "new_mac_addresses", MAX_INTERFACES)
    for interface, mac in macs.items():
        if interface and not _INTERFACE.fullmatch(interface):
            raise ValueError(f"interface name {interface!r} is not valid: letters, digits, "
                             "'-' and '_', at most 63 characters")
        check_mac(interface, mac)
    return macs


_PRINTABLE = re.compile(r"[ -~]*")


def check_text(value: str, what: str, limit: int) -> str:
    """Free text that ends up in an object (an SMBIOS serial): printable ASCII, bounded."""
    if len(value) > limit or not _PRINTABLE.fullmatch(value):
        raise ValueError(f"{what} must be at most {limit} printable ASCII characters")
    return value


def check_count(items: object, what: str, limit: int) -> None:
    """A list or map of at most `limit` entries: inputs stay small enough for a history."""
    if isinstance(items, list | dict) and len(items) > limit:
        raise ValueError(f"{what}: {len(items)} entries, at most {limit}")


def check_selector(selector: str) -> str:
    """A Kubernetes label selector (`app=web`, `tier in (a,b)`, `!legacy`, comma = AND)."""
    text = selector.strip()
    if not text:
        raise ValueError("the label selector is empty")
    if len(text) > MAX_SELECTOR:
        raise ValueError(f"the label selector is longer than {MAX_SELECTOR} characters")
    terms = re.split(r",(?![^()]*\))", text)
    for term in terms:
        if not _SELECTOR_TERM.fullmatch(term.strip()):
            raise ValueError(
                f"label selector {selector!r}: {term.strip()!r} is not a valid requirement "
                "(use key=value, key!=value, key in (a,b), key notin (a,b), key or !key)"
            )
    return text


def _namespace(value: str) -> str:
    return check_dns_label(value, "namespace")


# A Kubernetes namespace in an input: a DNS label.
Namespace = Annotated[str, AfterValidator(_namespace)]
# Labels for what an operation makes: valid keys and values, none under `vmsnap.io`.
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
