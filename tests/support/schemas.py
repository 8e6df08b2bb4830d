"""What schema validation answered before any split or shortcut: the reference the
simulator's faster validation paths are compared with."""

from __future__ import annotations

from typing import Any

from simulator.cel import MISSING
from simulator.schemas import KindSchema, _describe


def whole_document_errors(schema: KindSchema, obj: Any) -> list[tuple[str, str]]:
    """One jsonschema pass over the whole object, sorted by path, then the CEL checks."""
    errors: list[tuple[str, str]] = []
    for error in sorted(schema._validator.iter_errors(obj),
                        key=lambda e: list(map(str, e.absolute_path))):
        errors.extend(_describe(error))
    schema._walk_checks(schema.root, obj, MISSING, [], errors, transition=False)
    return errors
