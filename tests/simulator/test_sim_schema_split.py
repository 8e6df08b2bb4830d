"""The simulator validates each top-level property on its own and remembers the answers by
content (a status write does not validate an unchanged spec again): the errors must be
exactly those of one pass over the whole document, in the same order, every time."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from simulator.reference import manifest_documents
from simulator.schemas import KindSchema
from tests.support.schemas import (
    REFERENCE,
    crd_schema,
    reference_definitions,
    whole_document_errors,
)

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return reference_definitions()


def _vm() -> dict[str, Any]:
    vm = manifest_documents(REFERENCE / "examples" / "vm-alpine-multipvc.yaml")[0]
    vm["status"] = {"printableStatus": "Running", "ready": True}
    return vm


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        target: Any = obj
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return mutate


def _drop(path: list[Any]) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        target: Any = obj
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return mutate


VM_MUTATIONS: dict[str, list[Mutation]] = {
    "valid": [],
    "spec type": [_set(["spec", "runStrategy"], 5)],
    "deep spec": [_set(["spec", "template", "spec", "domain", "devices", "disks"], "nope")],
    "required in spec": [_drop(["spec", "template"])],
    "status only": [_set(["status", "ready"], "yes")],
    "status not an object": [_set(["status"], "bad")],
    "kind and metadata": [_set(["kind"], 3), _set(["metadata", "labels"], ["not", "a", "map"])],
    "several subtrees": [_set(["status", "ready"], "yes"), _set(["spec", "runStrategy"], 5),
                         _set(["apiVersion"], False)],
    "same spec error, other status": [_set(["spec", "runStrategy"], 5),
                                      _set(["status", "ready"], False)],
}


@pytest.mark.parametrize("case", list(VM_MUTATIONS))
def test_a_virtual_machine_gets_the_whole_document_errors(
    definitions: dict[str, Any], case: str
) -> None:
    schema = KindSchema.for_definition("v1.VirtualMachine", definitions)
    assert schema._split is not None, "the split must be in effect for this test to mean much"
    obj = _vm()
    for mutate in VM_MUTATIONS[case]:
        mutate(obj)
    expected = whole_document_errors(schema, copy.deepcopy(obj))
    assert (case == "valid") == (expected == [])
    assert schema.validate(obj) == expected
    assert schema.validate(obj) == expected  # answered from memory the second time


def test_answers_remembered_for_one_object_do_not_leak_into_another(
    definitions: dict[str, Any],
) -> None:
    schema = KindSchema.for_definition("v1.VirtualMachine", definitions)
    valid = _vm()
    assert schema.validate(valid) == []
    broken = copy.deepcopy(valid)
    broken["spec"]["runStrategy"] = 5
    errors = schema.validate(broken)
    assert errors and errors == whole_document_errors(schema, broken)
    assert all(field.startswith("spec.") for field, _ in errors)
    assert schema.validate(valid) == []
    # The same spec value under another property is validated against that property.
    moved = copy.deepcopy(valid)
    moved["status"] = copy.deepcopy(valid["spec"])
    assert schema.validate(moved) == whole_document_errors(schema, moved)


def test_a_volume_snapshot_crd_gets_the_whole_document_errors(
    definitions: dict[str, Any],
) -> None:
    schema = crd_schema("snapshot.storage.k8s.io_volumesnapshots.yaml", definitions)
    assert schema._split is not None
    good: dict[str, Any] = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "a", "namespace": "n"},
            "spec": {"source": {"persistentVolumeClaimName": "pvc"},
                     "volumeSnapshotClassName": "c"},
            "status": {"readyToUse": False}}
    cases: list[dict[str, Any]] = [good]
    both_sources = copy.deepcopy(good)  # a CEL rule: exactly one source
    both_sources["spec"]["source"]["volumeSnapshotContentName"] = "content"
    cases.append(both_sources)
    wrong_types = copy.deepcopy(good)
    wrong_types["status"]["readyToUse"] = "no"
    wrong_types["spec"]["volumeSnapshotClassName"] = 1
    cases.append(wrong_types)
    no_spec = copy.deepcopy(good)
    del no_spec["spec"]
    cases.append(no_spec)
    for obj in cases:
        expected = whole_document_errors(schema, copy.deepcopy(obj))
        assert (obj is good) == (expected == [])
        assert schema.validate(obj) == expected
        assert schema.validate(obj) == expected


def test_a_schema_whose_root_looks_into_its_properties_is_not_split(
    definitions: dict[str, Any],
) -> None:
    root = {"type": "object", "properties": {"spec": {"type": "object"}},
            "anyOf": [{"required": ["spec"]}]}
    schema = KindSchema(root, definitions)
    assert schema._split is None
    assert schema.validate({"spec": {}}) == whole_document_errors(schema, {"spec": {}})
    assert schema.validate({}) == whole_document_errors(schema, {}) != []
