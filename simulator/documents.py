"""Copies of JSON documents, the simulator's most frequent allocation."""

from __future__ import annotations

import copy
from typing import Any

_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def copy_document(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists, immutable scalars), several times
    faster than `copy.deepcopy`, which the store pays on every read and write; anything
    else (never stored by the API, possible from a seed) falls back to `copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {key: copy_document(item) for key, item in value.items()}
    if kind is list:
        return [copy_document(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)
