"""Kubernetes label selectors for the list verbs' `-l/--selector`, read as kubectl reads them.

The API server applies a selector to what it lists (snapshot records); what Temporal
holds (schedules) is matched here, with apimachinery's meaning of each requirement:
`key=value` (or `==`), `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key`, `!key`;
commas join requirements (AND). A selector that does not parse is a usage error before
anything is contacted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = r"(?:[a-z0-9A-Z.-]+/)?[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?"
_VALUE = r"(?:[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?)?"
_EXISTS = re.compile(rf"(?P<not>!?)\s*(?P<key>{_KEY})")
_EQUALS = re.compile(rf"(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})")
_SET = re.compile(
    rf"(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\(\s*(?P<values>{_VALUE}(?:\s*,\s*{_VALUE})*)\s*\)")


@dataclass(frozen=True)
class Requirement:
    """One requirement of a selector: `key`, an operator, and the values it names."""

    key: str
    operator: str  # "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


def parse_selector(selector: str) -> list[Requirement]:
    """The requirements of a label selector; ValueError naming the one that does not parse."""
    text = selector.strip()
    if not text:
        raise ValueError("the label selector is empty")
    return [_requirement(term.strip(), selector) for term in re.split(r",(?![^()]*\))", text)]


def _requirement(term: str, selector: str) -> Requirement:
    if found := _SET.fullmatch(term):
        values = frozenset(v.strip() for v in found["values"].split(","))
        if values == {""}:
            raise ValueError(f"label selector {selector!r}: {term!r} names no value")
        return Requirement(found["key"], found["op"], values)
    if found := _EQUALS.fullmatch(term):
        operator = "notin" if found["op"] == "!=" else "in"
        return Requirement(found["key"], operator, frozenset({found["value"]}))
    if found := _EXISTS.fullmatch(term):
        return Requirement(found["key"], "!" if found["not"] else "exists")
    raise ValueError(f"label selector {selector!r}: {term!r} is not a requirement (use "
                     "key=value, key!=value, key in (a,b), key notin (a,b), key or !key)")


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy every requirement of `selector`."""
    return all(requirement.matches(labels) for requirement in parse_selector(selector))
