"""`KindSchema.validate` answers one whole-document pass's errors on both fast paths:
a create proven valid in one compiled check, and a property proven valid (as a whole,
or field by field against the stored version) before any memo is consulted.

Every leaf of real documents is replaced by every kind of value or removed; each
variant is validated as a create and as an update of the valid original, twice (the
second answer may come from the memo of errors), and compared with the plain pass."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.reference import manifest_documents
from simulator.schemas import KindSchema
from tests.support.schemas import (
    REFERENCE,
    content_document,
    crd_schema,
    leaf_paths,
    reference_definitions,
    removed,
    replaced,
    whole_document_errors,
)

_LEAVES: tuple[Any, ...] = (None, True, 0, 1.0, -1, "", "x", [], {})


def _variants(document: dict[str, Any], path: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    for leaf in _LEAVES:
        yield replaced(document, path, leaf)
    yield removed(document, path)


@pytest.fixture(scope="module")
def cases() -> list[tuple[KindSchema, dict[str, Any]]]:
    definitions = reference_definitions()
    vm = KindSchema.for_definition("v1.VirtualMachine", definitions)
    snapshot = crd_schema("snapshot.storage.k8s.io_volumesnapshots.yaml", definitions)
    content = crd_schema("snapshot.storage.k8s.io_volumesnapshotcontents.yaml", definitions)
    vm_doc = manifest_documents(REFERENCE / "examples" / "vm-alpine-multipvc.yaml")[0]
    vm_doc["metadata"].update({"uid": "u-1", "resourceVersion": "7",
                               "labels": {"app": "a"}, "finalizers": ["x/y"]})
    vm_doc["status"] = {"printableStatus": "Running", "ready": True,
                        "conditions": [{"type": "Ready", "status": "True"}]}
    snapshot_doc = manifest_documents(REFERENCE / "examples" / "csi-snapshot-v1.yaml")[0]
    snapshot_doc["status"] = {"boundVolumeSnapshotContentName": "c", "readyToUse": True,
                              "restoreSize": "1Gi", "creationTime": "2024-01-01T00:00:00Z"}
    content_doc = content_document()
    return [(vm, vm_doc), (snapshot, snapshot_doc), (content, content_doc)]


def test_creates_and_updates_answer_the_whole_documents_errors(
    cases: list[tuple[KindSchema, dict[str, Any]]],
) -> None:
    failing = passing = 0
    for schema, document in cases:
        assert whole_document_errors(schema, document) == []
        assert schema.validate(document) == []
        for path in leaf_paths(document):
            for variant in _variants(document, path):
                expected = whole_document_errors(schema, variant)
                for _ in range(2):
                    assert schema.validate(variant) == expected, path
                    assert schema.validate(variant, document) == expected, path
                if expected:
                    failing += 1
                else:
                    passing += 1
    assert failing > 200 and passing > 100  # both paths taken, many times


def test_an_error_is_found_after_the_same_value_passed(
    cases: list[tuple[KindSchema, dict[str, Any]]],
) -> None:
    """A property proven valid leaves no memo entry that could hide a later error."""
    schema, document = cases[2]
    assert schema.validate(document, document) == []
    broken = copy.deepcopy(document)
    broken["status"]["restoreSize"] = "big"
    expected = whole_document_errors(schema, broken)
    assert expected and schema.validate(broken, document) == expected
    assert schema.validate(document, broken) == []
