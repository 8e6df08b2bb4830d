"""Structural schema checks against the real reference schemas: unknown fields, types, rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from simulator.reference import manifest_documents
from simulator.schemas import KindSchema, apply_defaults, to_draft4
from tests.support.schemas import REFERENCE, crd_schema, reference_definitions


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return reference_definitions()


@pytest.fixture(scope="module")
def volume_snapshot(definitions: dict[str, Any]) -> KindSchema:
    return crd_schema("snapshot.storage.k8s.io_volumesnapshots.yaml", definitions)


@pytest.fixture(scope="module")
def virtual_machine(definitions: dict[str, Any]) -> KindSchema:
    return KindSchema.for_definition("v1.VirtualMachine", definitions)


def _example(name: str) -> dict[str, Any]:
    return manifest_documents(REFERENCE / "examples" / name)[0]


def test_every_reference_vm_example_is_valid(virtual_machine: KindSchema) -> None:
    examples = sorted((REFERENCE / "examples").glob("vm-*.yaml"))
    assert len(examples) >= 5
    for path in examples:
        vm = manifest_documents(Path(path))[0]
        assert virtual_machine.validate(vm) == [], path.name
        assert virtual_machine.unknown_fields(copy.deepcopy(vm), prune=False) == [], path.name


def test_wrong_types_and_missing_required_fields_name_the_field(
    virtual_machine: KindSchema,
) -> None:
    vm = _example("vm-cirros.yaml")
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = 7
    errors = dict(virtual_machine.validate(vm))
    assert "spec.template.spec.domain.devices.disks[0].disk.bus" in errors
    assert "must be of type string" in errors["spec.template.spec.domain.devices.disks[0].disk.bus"]
    del vm["spec"]
    assert ("spec", "Required value") in virtual_machine.validate(vm)


def test_quantities_and_int_or_string_accept_numbers(virtual_machine: KindSchema) -> None:
    vm = _example("vm-cirros.yaml")
    vm["spec"]["template"]["spec"]["domain"]["resources"] = {"requests": {"memory": 134217728}}
    assert virtual_machine.validate(vm) == []


def test_unknown_fields_are_found_and_pruned(virtual_machine: KindSchema) -> None:
    vm = _example("vm-cirros.yaml")
    vm["spec"]["tempalte"] = {}
    vm["spec"]["template"]["spec"]["volumes"][0]["containerDisk"]["imag"] = "x"
    vm["metadata"]["labelz"] = {}
    vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"] = [
        {"name": "default", "masquerade": {"unexpected": True}}
    ]
    found = virtual_machine.unknown_fields(vm, prune=True)
    assert sorted(found) == [
        "metadata.labelz",
        "spec.tempalte",
        "spec.template.spec.domain.devices.interfaces[0].masquerade.unexpected",
        "spec.template.spec.volumes[0].containerDisk.imag",
    ]
    assert "tempalte" not in vm["spec"]
    assert vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]["masquerade"] == {}
    assert virtual_machine.unknown_fields(vm, prune=False) == []


def test_volume_snapshot_source_needs_exactly_one_of_two(volume_snapshot: KindSchema) -> None:
    good = _example("csi-snapshot-v1.yaml")
    assert volume_snapshot.validate(good) == []
    none = copy.deepcopy(good)
    none["spec"]["source"] = {}
    both = copy.deepcopy(good)
    both["spec"]["source"]["volumeSnapshotContentName"] = "content"
    for bad in (none, both):
        fields = [field for field, _ in volume_snapshot.validate(bad)]
        assert fields == ["spec.source"]
    del none["spec"]["source"]
    assert ("spec.source", "Required value") in volume_snapshot.validate(none)


def test_volume_snapshot_source_is_immutable(volume_snapshot: KindSchema) -> None:
    old = _example("csi-snapshot-v1.yaml")
    new = copy.deepcopy(old)
    assert volume_snapshot.transition_errors(new, old) == []
    new["spec"]["source"]["persistentVolumeClaimName"] = "other"
    errors = volume_snapshot.transition_errors(new, old)
    assert errors and errors[0][0] == "spec.source.persistentVolumeClaimName"
    assert "immutable" in errors[0][1]
    new["spec"]["volumeSnapshotClassName"] = ""
    assert any(f == "spec.volumeSnapshotClassName" for f, _ in volume_snapshot.validate(new))


def test_set_lists_refuse_duplicates(definitions: dict[str, Any]) -> None:
    schema = KindSchema(
        {
            "type": "object",
            "properties": {
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                }
            },
        },
        definitions,
    )
    assert schema.validate({"tags": ["a", "b"]}) == []
    assert schema.validate({"tags": ["a", "a"]}) == [("tags[1]", 'Duplicate value: "a"')]


def test_nullable_and_defaults(definitions: dict[str, Any]) -> None:
    raw = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "policy": {"type": "string", "default": "Delete"},
                    "when": {"type": "string", "nullable": True},
                },
            }
        },
    }
    assert to_draft4(raw)["properties"]["spec"]["properties"]["when"]["type"] == ["string", "null"]
    schema = KindSchema.for_crd_version(raw, definitions)
    obj: dict[str, Any] = {"metadata": {"name": "x"}, "spec": {"when": None}}
    apply_defaults(schema, obj)
    assert obj["spec"] == {"when": None, "policy": "Delete"}
    assert schema.validate(obj) == []
