"""Metadata checks answer the same with their shortcuts: remembered name checks, and
metadata the same as a trusted version's not checked again."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from simulator import metadata_validation
from simulator.metadata_validation import validate_metadata
from simulator.reference import find_reference_dir, load_reference
from simulator.registry import Kind, Registry
from simulator.runtime import DEFAULT_CRDS_DIR
from simulator.store import Store

_NAMES = ("app", "example.com/app", "Example.com/app", "/app", "a/", "x" * 64, "a_b.c-d",
          "-a", "a-", "kubevirt.io/vm", "a/b/c", "", "é", "1", "x" * 63)


def _metadata_variants() -> list[dict[str, Any]]:
    base: dict[str, Any] = {"name": "vm", "namespace": "ns", "labels": {"app": "a"},
                            "annotations": {"note": "x"}, "finalizers": ["kubevirt.io/x"],
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                                                 "name": "p", "uid": "u"}]}
    variants = [base]
    for name in _NAMES:
        for field, value in (("labels", {name: "v"}), ("labels", {"k": name}),
                             ("annotations", {name: "v"}), ("finalizers", [name])):
            variants.append({**copy.deepcopy(base), field: value})
    variants += [{**base, "labels": {"k": 1}}, {**base, "labels": {"k": True}},
                 {**base, "labels": {"k": None}}, {**base, "finalizers": [1, "a"]},
                 {**base, "ownerReferences": [{"controller": True}, {"controller": 1}]},
                 {**base, "annotations": {"k": "v" * (256 * 1024)}}]
    return variants


def _uncached(meta: Any) -> list[tuple[str, str]]:
    metadata_validation._qualified_name_errors.cache_clear()
    metadata_validation._label_string_errors.cache_clear()
    return validate_metadata(meta)


def test_remembered_name_checks_answer_as_computed_afresh() -> None:
    variants = _metadata_variants()
    expected = [_uncached(copy.deepcopy(meta)) for meta in variants]
    assert sum(1 for errors in expected if errors) > 30
    for _ in range(2):  # the second pass answers from memory
        assert [validate_metadata(copy.deepcopy(meta)) for meta in variants] == expected


@pytest.fixture(scope="module")
def pvc_kind() -> Kind:
    registry = Registry(Store(), load_reference(find_reference_dir(None), DEFAULT_CRDS_DIR))
    registry.install()
    try:
        found = registry.find("", "persistentvolumeclaims")
        assert found is not None
        return found
    finally:
        registry.close()


def test_metadata_of_a_trusted_version_is_skipped_only_when_the_same(pvc_kind: Kind) -> None:
    def pvc(meta: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}

    valid = pvc({"name": "p", "namespace": "ns", "labels": {"k": "v"}})
    assert pvc_kind.validate(valid) == []
    skipped = 0
    for meta in _metadata_variants():
        new = pvc(copy.deepcopy(meta))
        expected = pvc_kind.validate(copy.deepcopy(new))
        assert pvc_kind.validate(new, valid) == expected
        trusted = pvc(copy.deepcopy(meta))
        if not expected:  # what passed may serve as the trusted version itself
            assert pvc_kind.validate(copy.deepcopy(trusted), trusted) == []
            skipped += 1
    assert skipped > 5
