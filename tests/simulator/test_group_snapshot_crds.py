"""The vendored VolumeGroupSnapshot CRDs: unchanged from upstream, the version the
simulator serves, and their schemas and CEL rules as the simulator checks them."""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

import pytest

from simulator.crd_versions import preferred_version, version_priority
from simulator.reference import manifest_documents
from simulator.schemas import KindSchema
from tests.support.schemas import REFERENCE, reference_definitions

FILES = (
    "groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
    "groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
    "groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
)


def served_schema(file: str) -> KindSchema:
    """The schema of the version the simulator serves (`v1`)."""
    crd = manifest_documents(REFERENCE / "csi-snapshot" / file)[0]
    version = preferred_version([v for v in crd["spec"]["versions"] if v["served"]])
    assert version["name"] == "v1"
    return KindSchema.for_crd_version(
        version["schema"]["openAPIV3Schema"], reference_definitions()
    )


@pytest.fixture(scope="module")
def schemas() -> dict[str, KindSchema]:
    return {file.split("_")[1].split(".")[0]: served_schema(file) for file in FILES}


def fields(errors: list[tuple[str, str]]) -> set[str]:
    return {field for field, _ in errors}


def test_vendored_files_match_the_checksums_of_their_provenance() -> None:
    provenance = (REFERENCE / "PROVENANCE.md").read_text()
    for file in FILES:
        row = re.search(rf"`csi-snapshot/{re.escape(file)}` \| ([0-9a-f]{{64}}) \|", provenance)
        assert row is not None, f"{file} has no checksum row"
        digest = hashlib.sha256((REFERENCE / "csi-snapshot" / file).read_bytes()).hexdigest()
        assert digest == row.group(1), file


def test_every_version_is_served_and_v1beta2_stores_as_upstream() -> None:
    for file in FILES:
        crd = manifest_documents(REFERENCE / "csi-snapshot" / file)[0]
        versions = {v["name"]: (v["served"], v["storage"]) for v in crd["spec"]["versions"]}
        assert versions == {
            "v1": (True, False), "v1beta1": (True, False), "v1beta2": (True, True)}


def test_the_preferred_version_is_ga_then_beta_then_alpha() -> None:
    names = ["v1alpha1", "v1beta1", "v2beta1", "v1", "v1beta2", "custom", "v2"]
    assert sorted(names, key=version_priority) == [
        "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "custom"]
    assert preferred_version([{"name": "v1beta2"}, {"name": "v1"}]) == {"name": "v1"}


def group(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "groupsnapshot.storage.k8s.io/v1",
        "kind": "VolumeGroupSnapshot",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": spec,
    }


def test_a_group_needs_exactly_one_source(schemas: dict[str, KindSchema]) -> None:
    schema = schemas["volumegroupsnapshots"]
    assert schema.validate(group(source={"selector": {"matchLabels": {"app": "db"}}})) == []
    assert schema.validate(group(source={"volumeGroupSnapshotContentName": "c"})) == []
    for source in ({}, {"selector": {}, "volumeGroupSnapshotContentName": "c"}):
        errors = schema.validate(group(source=source))
        assert errors == [("spec.source", 'Invalid value: "object": exactly one of selector and '
                                          "volumeGroupSnapshotContentName must be set")]
    assert ("spec.source", "Required value") in schema.validate(group())
    empty_class = group(source={"selector": {}}, volumeGroupSnapshotClassName="")
    assert fields(schema.validate(empty_class)) == {"spec.volumeGroupSnapshotClassName"}


def test_a_groups_source_and_binding_are_immutable(schemas: dict[str, KindSchema]) -> None:
    schema = schemas["volumegroupsnapshots"]
    old = group(source={"selector": {"matchLabels": {"app": "db"}}})
    old["status"] = {"boundVolumeGroupSnapshotContentName": "groupsnapcontent-1"}
    new = copy.deepcopy(old)
    assert schema.transition_errors(new, old) == []
    new["spec"]["source"]["selector"] = {"matchLabels": {"app": "web"}}
    new["status"]["boundVolumeGroupSnapshotContentName"] = "other"
    errors = schema.transition_errors(new, old)
    assert ("spec.source.selector", 'Invalid value: "object": selector is immutable') in errors
    assert fields(errors) == {"spec.source.selector", "status.boundVolumeGroupSnapshotContentName"}


def test_a_class_needs_a_driver_and_a_known_policy(schemas: dict[str, KindSchema]) -> None:
    schema = schemas["volumegroupsnapshotclasses"]
    good = {
        "apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshotClass",
        "metadata": {"name": "c"}, "driver": "d.csi.io", "deletionPolicy": "Delete",
    }
    assert schema.validate(good) == []
    assert ("deletionPolicy", 'Unsupported value: "Keep": supported values: "Delete", '
            '"Retain"') in schema.validate({**good, "deletionPolicy": "Keep"})
    assert fields(schema.validate({**good, "driver": None})) >= {"driver"}
    changed = {**good, "driver": "other.csi.io", "deletionPolicy": "Retain"}
    assert fields(schema.transition_errors(changed, good)) == {"driver", "deletionPolicy"}


def content(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "groupsnapshot.storage.k8s.io/v1",
        "kind": "VolumeGroupSnapshotContent",
        "metadata": {"name": "groupsnapcontent-1"},
        "spec": {
            "deletionPolicy": "Delete",
            "driver": "d.csi.io",
            "volumeGroupSnapshotRef": {"name": "g", "namespace": "ns"},
            "source": {"volumeHandles": ["h1", "h2"]},
            **spec,
        },
    }


def test_a_content_names_its_group_and_one_kind_of_source(
    schemas: dict[str, KindSchema],
) -> None:
    schema = schemas["volumegroupsnapshotcontents"]
    assert schema.validate(content()) == []
    no_namespace = content(volumeGroupSnapshotRef={"name": "g"})
    assert schema.validate(no_namespace) == [(
        "spec.volumeGroupSnapshotRef",
        'Invalid value: "object": both volumeGroupSnapshotRef.name and '
        "volumeGroupSnapshotRef.namespace must be set",
    )]
    both = content(source={
        "volumeHandles": ["h1"],
        "groupSnapshotHandles": {"volumeGroupSnapshotHandle": "g", "volumeSnapshotHandles": []},
    })
    assert fields(schema.validate(both)) == {"spec.source"}


def test_a_contents_binding_and_handles_are_immutable(schemas: dict[str, KindSchema]) -> None:
    schema = schemas["volumegroupsnapshotcontents"]
    old = content(volumeGroupSnapshotRef={"name": "g", "namespace": "ns", "uid": "u1"})
    old["status"] = {"volumeGroupSnapshotHandle": "gh"}
    new = copy.deepcopy(old)
    assert schema.transition_errors(new, old) == []
    new["spec"]["volumeGroupSnapshotRef"] = {"name": "g", "namespace": "other", "uid": "u2"}
    new["spec"]["source"]["volumeHandles"] = ["h1"]
    new["status"]["volumeGroupSnapshotHandle"] = "other"
    errors = schema.transition_errors(new, old)
    assert fields(errors) == {
        "spec.volumeGroupSnapshotRef", "spec.source.volumeHandles",
        "status.volumeGroupSnapshotHandle",
    }
    messages = {message for _, message in errors}
    assert any("volumeGroupSnapshotRef.uid is immutable once set" in m for m in messages)
    assert any("are immutable" in m for m in messages)
