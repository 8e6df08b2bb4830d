"""Label and field selectors with the grammar of `kubectl get -l` and `--field-selector`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from simulator.errors import bad_request

Matcher = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside a set's parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    if match := _SET_TERM.match(term):
        key, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {term.strip()!r}")


def label_matcher(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    terms = [_label_term(t) for t in _split_terms(selector)]

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return matches


def required_labels(selector: str | None) -> list[tuple[str, str]]:
    """The `key=value` (or `==`) terms of a label selector: every object it matches carries
    them, so an index of labels can narrow a LIST before the whole selector is applied.
    Other terms (`!=`, sets, existence) are left to the matcher. A selector that does not
    parse answers nothing here (the matcher refuses it)."""
    found = []
    for term in _split_terms(selector or ""):
        match = _EQ_TERM.match(term)
        if match and match.group(2) != "!=":
            found.append((match.group(1), match.group(3)))
    return found


def _field_value(obj: dict[str, Any], path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return None if value is None else str(value)


def field_matcher(selector: str | None) -> Matcher:
    """Equality on dotted paths (`metadata.name=x`, `status.phase!=Bound`)."""
    if not selector:
        return lambda obj: True
    terms: list[tuple[str, str, str]] = []
    for term in _split_terms(selector):
        match = _EQ_TERM.match(term)
        if not match:
            raise bad_request(f"invalid field selector: {term.strip()!r}")
        terms.append(match.groups())  # type: ignore[arg-type]

    def matches(obj: dict[str, Any]) -> bool:
        for path, op, value in terms:
            actual = _field_value(obj, path) or ""
            if (op == "!=") == (actual == value):
                return False
        return True

    return matches
