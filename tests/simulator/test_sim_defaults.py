"""Structural defaulting sets the same fields when it skips the subtrees without defaults.

The reference is the walk as it was, into every subtree; both run on CRD documents with
fields removed one at a time, and on a schema with defaults at several depths, in
lists, in maps and behind a `$ref` loop."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from simulator.reference import manifest_documents
from simulator.schemas import KindSchema, apply_defaults
from tests.support.schemas import REFERENCE, crd_schema, reference_definitions


def _reference_walk(schema_set: KindSchema, schema: Any, value: Any, *,
                    root: bool = False) -> None:
    schema = schema_set.resolve(schema)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, child in properties.items():
            if root and key == "metadata":
                continue
            child = schema_set.resolve(child)
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                _reference_walk(schema_set, child, value[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in properties:
                    _reference_walk(schema_set, additional, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _reference_walk(schema_set, schema["items"], item)


_DEFINITIONS: dict[str, Any] = {
    "node": {"type": "object", "properties": {
        "label": {"type": "string"},
        "child": {"$ref": "#/definitions/node"},
        "weight": {"type": "integer", "default": 1},
    }},
    "plain": {"type": "object", "properties": {
        "a": {"type": "string"}, "self": {"$ref": "#/definitions/plain"}}},
}
_ROOT: dict[str, Any] = {"type": "object", "properties": {
    "metadata": {"type": "object", "properties": {"x": {"type": "string", "default": "m"}}},
    "spec": {"type": "object", "properties": {
        "mode": {"type": "string", "default": "Fast"},
        "deep": {"type": "object", "properties": {"deeper": {"type": "object", "properties": {
            "flag": {"type": "boolean", "default": False}}}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "size": {"type": "integer", "default": 3}}}},
        "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "on": {"type": "boolean", "default": True}}}},
        "tree": {"$ref": "#/definitions/node"},
        "plain": {"$ref": "#/definitions/plain"},
        "none": {"type": "object", "properties": {"a": {"type": "string"}}},
    }},
}}
_DOC: dict[str, Any] = {"metadata": {}, "spec": {
    "mode": "Slow", "deep": {"deeper": {}}, "items": [{"name": "a"}, {"name": "b", "size": 9}],
    "byName": {"one": {}, "two": {"on": False}},
    "tree": {"label": "r", "child": {"label": "c", "child": {}}},
    "plain": {"a": "x", "self": {"a": "y"}}, "none": {"a": "z"}}}


def _removals(document: dict[str, Any], path: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
    target: Any = document
    for part in path:
        target = target[part]
    if isinstance(target, dict):
        for key in list(target):
            changed = copy.deepcopy(document)
            holder: Any = changed
            for part in path:
                holder = holder[part]
            del holder[key]
            yield changed
            yield from _removals(document, (*path, key))
    elif isinstance(target, list):
        for index in range(len(target)):
            yield from _removals(document, (*path, index))


def _compare(schema: KindSchema, document: dict[str, Any]) -> bool:
    expected, actual = copy.deepcopy(document), copy.deepcopy(document)
    _reference_walk(schema, schema.root, expected, root=True)
    apply_defaults(schema, actual)
    assert actual == expected
    return actual != document


def test_same_defaults_as_the_full_walk() -> None:
    definitions = {**reference_definitions(), **copy.deepcopy(_DEFINITIONS)}
    cases = [(KindSchema(copy.deepcopy(_ROOT), definitions), _DOC)]
    for file, example in (("snapshot.storage.k8s.io_volumesnapshots.yaml", "csi-snapshot-v1.yaml"),
                          ("snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
                           "csi-snapshotclass-v1.yaml")):
        cases.append((crd_schema(file, definitions),
                      manifest_documents(REFERENCE / "examples" / example)[0]))
    defaulted = 0
    for schema, document in cases:
        _compare(schema, document)
        for variant in _removals(document):
            defaulted += _compare(schema, variant)
    assert defaulted > 10  # removed fields with defaults come back (a walk that skips fails)


def test_subtrees_without_defaults_are_known() -> None:
    schema = KindSchema(copy.deepcopy(_ROOT), copy.deepcopy(_DEFINITIONS))
    spec = schema.property_schema(["spec"])
    assert spec is not None and schema.has_defaults_below(spec)
    assert schema.has_defaults_below(spec["properties"]["tree"])  # through the loop
    assert not schema.has_defaults_below(spec["properties"]["plain"])
    assert not schema.has_defaults_below(spec["properties"]["none"])
    assert schema.has_defaults_below(spec["properties"]["byName"])
    assert schema.has_defaults_below(spec["properties"]["deep"])
