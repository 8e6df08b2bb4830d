"""The compiled unknown-field walk finds and prunes exactly what the plain walk did.

The reference below is the walk as it was before its per-node compilation: it resolves
and reads every schema node again at each value. Both run on real documents with
unknown fields planted at every level, and on a schema with maps, free-form and
embedded objects."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.reference import manifest_documents
from simulator.schemas import OBJECT_META_REF, KindSchema, field_path
from tests.support.schemas import REFERENCE, crd_schema, reference_definitions

_PLANTED: tuple[Any, ...] = ("x", 1, None, {"a": {"b": 1}}, [{"c": 2}], [])


def _reference_walk(schema_set: KindSchema, schema: Any, value: Any, path: list[Any],
                    prune: bool, found: list[str]) -> None:
    schema = schema_set.resolve(schema)
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _reference_walk(schema_set, items, item, [*path, index], prune, found)
        return
    if not isinstance(value, dict):
        return
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    if properties is None and not embedded:
        if isinstance(additional, dict):
            for key, item in value.items():
                _reference_walk(schema_set, additional, item, [*path, key], prune, found)
            return
        if additional is True or preserve or "anyOf" in schema or "type" not in schema:
            return
    for key in list(value):
        if properties and key in properties:
            _reference_walk(schema_set, properties[key], value[key], [*path, key], prune, found)
        elif embedded and key in ("apiVersion", "kind"):
            continue
        elif embedded and key == "metadata":
            _reference_walk(schema_set, OBJECT_META_REF, value[key], [*path, key], prune, found)
        elif isinstance(additional, dict):
            _reference_walk(schema_set, additional, value[key], [*path, key], prune, found)
        elif preserve or additional is True:
            continue
        else:
            found.append(field_path([*path, key]))
            if prune:
                del value[key]


def _containers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _containers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _containers(item, (*path, index))


def _planted(document: dict[str, Any], path: tuple[Any, ...], leaf: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target: Any = changed
    for part in path:
        target = target[part]
    target["zzUnknown"] = copy.deepcopy(leaf)
    target["aaUnknown"] = copy.deepcopy(leaf)
    return changed


_SYNTHETIC_ROOT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": OBJECT_META_REF,
        "spec": {
            "type": "object",
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "byName": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"size": {"type": "integer"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "open": {"type": "object", "additionalProperties": True},
                "untyped": {},
                "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "eitherObject": {"type": "object", "anyOf": [{"required": ["p"]}]},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {
                                 "replicas": {"type": "integer"}}}}},
                "rawTemplate": {"type": "object", "x-kubernetes-embedded-resource": True,
                                "x-kubernetes-preserve-unknown-fields": True},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "nested": {"type": "array", "items": {
                        "type": "object", "properties": {"v": {"type": "string"}}}}}}},
                "empty": {"type": "object", "properties": {}},
                "kept": {"type": "object", "properties": {"a": {"type": "string"}},
                         "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}, "conditions": {
            "type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string"}}}}}},
    },
}
_SYNTHETIC_DOC: dict[str, Any] = {
    "apiVersion": "x/v1", "kind": "X",
    "metadata": {"name": "n", "labels": {"a": "b"}, "ownerReferences": [{"name": "o"}]},
    "spec": {
        "labels": {"k": "v"}, "byName": {"one": {"size": 1}, "two": {"size": 2}},
        "free": {"any": {"thing": 1}}, "open": {"p": {"q": 1}}, "untyped": {"u": 1},
        "either": 3, "eitherObject": {"p": {"q": 1}},
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"},
                     "spec": {"replicas": 1}},
        "rawTemplate": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}},
        "items": [{"name": "a", "nested": [{"v": "x"}, {"v": "y"}]}, {"name": "b"}],
        "empty": {}, "kept": {"a": "b"},
    },
    "status": {"phase": "Ready", "conditions": [{"type": "Ready"}, {"type": "Other"}]},
}


@pytest.fixture(scope="module")
def cases() -> list[tuple[KindSchema, dict[str, Any]]]:
    definitions = reference_definitions()
    vm = KindSchema.for_definition("v1.VirtualMachine", definitions)
    found = [(vm, manifest_documents(path)[0])
             for path in sorted((REFERENCE / "examples").glob("vm-*.yaml"))]
    snapshot = crd_schema("snapshot.storage.k8s.io_volumesnapshots.yaml", definitions)
    found.append((snapshot, manifest_documents(REFERENCE / "examples" / "csi-snapshot-v1.yaml")[0]))
    found.append((KindSchema(copy.deepcopy(_SYNTHETIC_ROOT), definitions),
                  copy.deepcopy(_SYNTHETIC_DOC)))
    return found


def _compare(schema: KindSchema, document: dict[str, Any]) -> list[str]:
    for prune in (False, True):
        expected_doc, actual_doc = copy.deepcopy(document), copy.deepcopy(document)
        expected: list[str] = []
        _reference_walk(schema, schema.root, expected_doc, [], prune, expected)
        actual = schema.unknown_fields(actual_doc, prune=prune)
        assert actual == expected, (prune, expected)
        assert actual_doc == expected_doc
        assert list(map(str, actual_doc)) == list(map(str, expected_doc))
    return expected


def test_same_fields_found_and_pruned_with_unknowns_planted_everywhere(
    cases: list[tuple[KindSchema, dict[str, Any]]],
) -> None:
    planted = 0
    for schema, document in cases:
        assert _compare(schema, document) == []
        for path in list(_containers(document)):
            for leaf in _PLANTED:
                if _compare(schema, _planted(document, path, leaf)):
                    planted += 1
    assert planted > 500  # most planted fields are unknown (a walk that finds nothing fails)


def test_finds_and_prunes_in_place() -> None:
    schema = KindSchema(copy.deepcopy(_SYNTHETIC_ROOT), reference_definitions())
    document = copy.deepcopy(_SYNTHETIC_DOC)
    document["spec"]["items"][1]["extra"] = 1
    document["spec"]["template"]["spec"]["extra"] = {"x": 1}
    document["spec"]["byName"]["two"]["extra"] = [1]
    document["metadata"]["extra"] = "y"
    found = schema.unknown_fields(document, prune=True)
    assert found == ["metadata.extra", "spec.byName.two.extra", "spec.template.spec.extra",
                     "spec.items[1].extra"]
    assert document == _SYNTHETIC_DOC
