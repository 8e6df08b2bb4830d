"""What a name, a label, a selector or a duration in an input must look like.

Every input model applies these where the input enters (the workflow's own JSON,
typed at the Temporal CLI, included), so a bad value is refused with the field named
before any step runs.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

from rules.durations import parse_duration

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
RESERVED_LABEL_PREFIX = "vmsnap.io/"

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


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax; the `vmsnap.io/` prefix is the project's own."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix:
            check_dns_subdomain(prefix, f"label prefix of {key!r}:")
        if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"label key {key!r} is not valid")
        if key.startswith(RESERVED_LABEL_PREFIX):
            raise ValueError(f"label key {key!r}: the {RESERVED_LABEL_PREFIX} prefix is reserved")
        if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
            raise ValueError(f"label value {value!r} of {key!r} is not valid")
    return labels


def check_selector(selector: str) -> str:
    """A Kubernetes label selector (`app=web`, `tier in (a,b)`, `!legacy`, comma = AND)."""
    text = selector.strip()
    if not text:
        raise ValueError("the label selector is empty")
    terms = re.split(r",(?![^()]*\))", text)
    for term in terms:
        if not _SELECTOR_TERM.fullmatch(term.strip()):
            raise ValueError(
                f"label selector {selector!r}: {term.strip()!r} is not a valid requirement "
                "(use key=value, key!=value, key in (a,b), key notin (a,b), key or !key)"
            )
    return text
