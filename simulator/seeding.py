"""Loading seed manifests: the cluster's state when the simulator starts.

Objects are created through the same write pipeline as API requests, with
Strict field validation (a typo in a seed is an error at start, not a
silently missing field) and their `status` kept as written, since seeds
describe a cluster that has been running. CRDs go first, then namespaces,
then the rest in file order; a namespace an object names is created when
no document creates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.errors import ApiError
from simulator.reference import ReferenceError, manifest_documents
from simulator.registry import CRD_GROUP, Registry
from simulator.writes import Writer

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class SeedError(RuntimeError):
    """A seed file cannot be read or one of its objects is refused; says which and why."""


def _describe(doc: dict[str, Any], source: str) -> str:
    meta = doc.get("metadata") or {}
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    name = meta.get("name") or meta.get("generateName", "?")
    return f"{source}: {doc.get('kind', '?')} {where}{name}"


def _order(item: tuple[str, dict[str, Any]]) -> int:
    kind = item[1].get("kind")
    if kind == "CustomResourceDefinition":
        return 0
    if kind == "Namespace":
        return 1
    return 2


def ensure_namespace(writer: Writer, registry: Registry, name: str) -> None:
    namespaces = registry.lookup("", "v1", "namespaces")
    if writer.store.find(namespaces.resource, None, name) is None:
        writer.create(
            namespaces,
            None,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "status": {"phase": "Active"},
            },
            validation="Strict",
            keep_status=True,
        )


def seed_documents(
    writer: Writer, registry: Registry, documents: Iterable[tuple[str, dict[str, Any]]]
) -> int:
    """Create (source, object) pairs in seed order; returns how many were created."""
    count = 0
    for source, doc in sorted(documents, key=_order):
        try:
            kind = registry.lookup_kind(str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
            namespace = None
            if kind.resource.namespaced:
                namespace = (doc.get("metadata") or {}).get("namespace") or "default"
                ensure_namespace(writer, registry, namespace)
            body = dict(doc)
            if kind.resource.key == ("", "namespaces") and "status" not in body:
                body["status"] = {"phase": "Active"}
            existing = None
            name = (doc.get("metadata") or {}).get("name")
            if kind.resource.key == (CRD_GROUP, "customresourcedefinitions") and name:
                existing = writer.store.find(kind.resource, None, name)
            if existing is None:
                writer.create(kind, namespace, body, validation="Strict", keep_status=True)
                count += 1
        except ApiError as exc:
            raise SeedError(f"{_describe(doc, source)} refused: {exc.message}") from exc
    return count


def load_seed_files(writer: Writer, registry: Registry, paths: Iterable[Path]) -> int:
    documents: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            documents.extend((str(path), doc) for doc in manifest_documents(path))
        except ReferenceError as exc:
            raise SeedError(str(exc)) from exc
    return seed_documents(writer, registry, documents)
