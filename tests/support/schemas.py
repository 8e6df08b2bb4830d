"""What schema validation answered before any split or shortcut: the reference the
simulator's faster validation paths are compared with."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from simulator.cel import MISSING
from simulator.reference import find_reference_dir, load_reference, manifest_documents
from simulator.schemas import KindSchema, _describe, swagger_definitions

REFERENCE = find_reference_dir()


def reference_definitions() -> dict[str, Any]:
    """The reference swagger's definitions (KubeVirt's and the core types)."""
    return swagger_definitions(load_reference(REFERENCE, None).swagger)


def crd_schema(file: str, definitions: dict[str, Any]) -> KindSchema:
    """The storage version's schema of a CSI snapshot CRD of the reference."""
    crd = manifest_documents(REFERENCE / "csi-snapshot" / file)[0]
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    return KindSchema.for_crd_version(version["schema"]["openAPIV3Schema"], definitions)


def whole_document_errors(schema: KindSchema, obj: Any) -> list[tuple[str, str]]:
    """One jsonschema pass over the whole object, sorted by path, then the CEL checks."""
    errors: list[tuple[str, str]] = []
    for error in sorted(schema._validator.iter_errors(obj),
                        key=lambda e: list(map(str, e.absolute_path))):
        errors.extend(_describe(error))
    schema._walk_checks(schema.root, obj, MISSING, [], errors, transition=False)
    return errors


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document, deepest first (mutation tests replace each)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    if path:
        yield path


def content_document() -> dict[str, Any]:
    """A valid VolumeSnapshotContent (the reference has no example of one)."""
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
        "metadata": {"name": "snapcontent-1", "finalizers": ["a/b"]},
        "spec": {"deletionPolicy": "Delete", "driver": "hostpath.csi.k8s.io",
                 "source": {"volumeHandle": "vol-1"}, "volumeSnapshotClassName": "c",
                 "volumeSnapshotRef": {"name": "s", "namespace": "ns", "uid": "u"}},
        "status": {"readyToUse": True, "restoreSize": 1073741824, "creationTime": 1,
                   "snapshotHandle": "snap-1"},
    }


def replaced(document: dict[str, Any], path: tuple[Any, ...], leaf: Any) -> dict[str, Any]:
    """A copy of the document with the value at `path` replaced by (a copy of) `leaf`."""
    changed = copy.deepcopy(document)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = copy.deepcopy(leaf)
    return changed


def removed(document: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """A copy of the document without the value at `path`."""
    changed = copy.deepcopy(document)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return changed
