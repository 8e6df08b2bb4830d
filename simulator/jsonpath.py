"""The JSONPath subset of CRD printer columns and `selectableFields`.

`additionalPrinterColumns[].jsonPath` uses kubectl's JSONPath without braces:
`.status.phase`, `.status.interfaces[0].ipAddress`,
`.status.conditions[?(@.type=='Ready')].status`, `.spec.list[*].name`.
"""

from __future__ import annotations

import re
from typing import Any

_STEP = re.compile(
    r"""
    \.(?P<field>[A-Za-z0-9_\-$/]+)
  | \[(?P<index>-?\d+)\]
  | \[(?P<star>\*)\]
  | \['(?P<quoted>[^']*)'\]
  | \[\?\(@\.(?P<filter_key>[A-Za-z0-9_.\-]+)\s*(?P<filter_op>==|!=)\s*
        (?:'(?P<filter_sq>[^']*)'|"(?P<filter_dq>[^"]*)"|(?P<filter_raw>[^)\s]+))\s*\)\]
    """,
    re.VERBOSE,
)


class JsonPathError(ValueError):
    """The expression is outside the supported subset."""


def _parse(path: str) -> list[re.Match[str]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    steps, pos = [], 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if not match:
            raise JsonPathError(f"unsupported JSONPath {path!r} at {pos}")
        steps.append(match)
        pos = match.end()
    return steps


def _dig(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text


def evaluate(path: str, obj: Any) -> list[Any]:
    """Every value the path reaches (empty when none)."""
    current = [obj]
    for step in _parse(path):
        found: list[Any] = []
        for value in current:
            if step.group("field") is not None or step.group("quoted") is not None:
                key = (
                    step.group("field") if step.group("field") is not None else step.group("quoted")
                )
                if isinstance(value, dict) and key in value:
                    found.append(value[key])
            elif step.group("index") is not None:
                index = int(step.group("index"))
                if isinstance(value, list) and -len(value) <= index < len(value):
                    found.append(value[index])
            elif step.group("star"):
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value.values())
            else:
                if not isinstance(value, list):
                    continue
                raw = step.group("filter_sq")
                if raw is None:
                    raw = step.group("filter_dq")
                wanted = raw if raw is not None else _literal(step.group("filter_raw"))
                key, op = step.group("filter_key"), step.group("filter_op")
                for item in value:
                    matches = _dig(item, key) == wanted
                    if matches == (op == "=="):
                        found.append(item)
        current = found
    return current


def validate(path: str) -> None:
    """Raise `JsonPathError` if `path` is outside the subset."""
    _parse(path)
