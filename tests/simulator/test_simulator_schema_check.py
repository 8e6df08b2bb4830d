"""The compiled schema check may only ever answer "valid" when jsonschema finds nothing,
and it must answer it for the valid documents the simulator stores (or it saves nothing)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from simulator.reference import manifest_documents
from simulator.schema_check import SchemaCheck
from simulator.schemas import KindSchema
from tests.support.schemas import (
    REFERENCE,
    content_document,
    crd_schema,
    leaf_paths,
    reference_definitions,
    replaced,
    whole_document_errors,
)

# Replacement leaves: every JSON type, and the Python values `==` confuses (1, 1.0, True).
_LEAVES: tuple[Any, ...] = (None, True, False, 0, 1, 1.0, 2.5, -1, "", "x", "Always", [], {})


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return reference_definitions()


def _documents(definitions: dict[str, Any]) -> list[tuple[KindSchema, dict[str, Any]]]:
    vm = KindSchema.for_definition("v1.VirtualMachine", definitions)
    found = [(vm, manifest_documents(path)[0])
             for path in sorted((REFERENCE / "examples").glob("vm-*.yaml"))]
    snapshot = crd_schema("snapshot.storage.k8s.io_volumesnapshots.yaml", definitions)
    found.append((snapshot, manifest_documents(REFERENCE / "examples" / "csi-snapshot-v1.yaml")[0]))
    content = crd_schema("snapshot.storage.k8s.io_volumesnapshotcontents.yaml", definitions)
    found.append((content, content_document()))
    return found


def test_valid_reference_documents_are_proven_valid(definitions: dict[str, Any]) -> None:
    for schema, document in _documents(definitions):
        assert whole_document_errors(schema, document) == []
        assert schema._check.proves_valid(schema._validator.schema, document), document["kind"]


def test_never_proves_valid_what_jsonschema_rejects(definitions: dict[str, Any]) -> None:
    """Every field of every document, replaced by every kind of value (and removed): the
    check says "valid" only where jsonschema agrees, and `validate` keeps its errors."""
    rejected = accepted = 0
    for schema, document in _documents(definitions)[-3:]:  # the VMs share most paths
        check = SchemaCheck(schema.definitions)
        for path in leaf_paths(document):
            variants = [replaced(document, path, leaf) for leaf in _LEAVES]
            removed = copy.deepcopy(document)
            holder: Any = removed
            for part in path[:-1]:
                holder = holder[part]
            del holder[path[-1]]
            variants.append(removed)
            for variant in variants:
                errors = list(schema._validator.iter_errors(variant))
                if check.proves_valid(schema._validator.schema, variant):
                    assert errors == [], (path, errors[0].message)
                    accepted += 1
                else:
                    rejected += 1
                if errors:
                    assert schema.validate(variant) == whole_document_errors(schema, variant)
    assert rejected > 100 and accepted > 100


@pytest.mark.parametrize(
    ("schema", "values"),
    [
        ({"type": "integer"}, [1, 1.0, True, "1", None]),
        ({"type": "number", "minimum": 1}, [1, 0.5, True, 2.0, "x"]),
        ({"type": ["string", "null"], "maxLength": 2}, ["ab", "abc", None, 3]),
        ({"enum": ["A", 1, None]}, ["A", 1, 1.0, True, None, "B"]),
        ({"pattern": "^a+$"}, ["aa", "ab", 3]),
        ({"required": ["a"], "properties": {"a": {"type": "string"}},
          "additionalProperties": False}, [{"a": "x"}, {"a": 1}, {}, {"a": "x", "b": 1}, 7]),
        ({"additionalProperties": {"type": "string"}}, [{"a": "x"}, {"a": 1}]),
        ({"items": {"type": "integer"}, "minItems": 1}, [[1], [], [1, "a"], "s"]),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a", 1.5, None]),
        ({"$ref": "#/definitions/t", "type": "string"}, [3, "a", None]),
        ({"type": "string", "multipleOf": 2}, ["a"]),  # not modelled: never "valid"
        ({"type": "number", "minimum": 1, "exclusiveMinimum": True}, [1, 2]),
    ],
)
def test_small_schemas_agree_with_jsonschema(schema: dict[str, Any], values: list[Any]) -> None:
    definitions = {"t": {"type": "integer"}}
    validator = jsonschema.Draft4Validator({**schema, "definitions": definitions})
    check = SchemaCheck(definitions)
    proven = []
    for value in values:
        if check.proves_valid(schema, value):
            assert validator.is_valid(value), value
            proven.append(value)
    modelled = "multipleOf" not in schema and "exclusiveMinimum" not in schema
    assert bool(proven) == modelled  # the check is used where it can be


def test_recursive_references_compile() -> None:
    definitions = {"node": {"type": "object",
                            "properties": {"children": {"type": "array",
                                                        "items": {"$ref": "#/definitions/node"}},
                                           "name": {"type": "string"}}}}
    check = SchemaCheck(definitions)
    schema = {"$ref": "#/definitions/node"}
    assert check.proves_valid(schema, {"name": "a", "children": [{"name": "b", "children": []}]})
    assert not check.proves_valid(schema, {"children": [{"name": 1}]})
