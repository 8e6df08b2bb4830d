"""OpenAPI v3 documents, per group version, as kube-apiserver publishes them.

kubectl reads `/openapi/v3` before `create`/`apply`: when a kind's PATCH
operation (tagged with `x-kubernetes-group-version-kind`) lists the
`fieldValidation` parameter, it leaves validation to the server and sends
`fieldValidation=Strict`. The component schemas (the reference swagger's
definitions, the CRDs' schemas, the built-in schemas) also let
`kubectl explain` work.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from simulator import core_schemas
from simulator.bootstrap_policy import RBAC_GROUP
from simulator.registry import CRD_GROUP, SWAGGER_DEFINITIONS, Kind, Registry

_QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "pretty")
_BUILTIN_SCHEMAS = {
    ("", "namespaces"): core_schemas.NAMESPACE,
    ("", "persistentvolumeclaims"): core_schemas.PERSISTENT_VOLUME_CLAIM,
    ("", "events"): core_schemas.EVENT,
    ("", "pods"): core_schemas.POD,
    ("storage.k8s.io", "storageclasses"): core_schemas.STORAGE_CLASS,
    ("apps", "controllerrevisions"): core_schemas.CONTROLLER_REVISION,
    (CRD_GROUP, "customresourcedefinitions"): core_schemas.CUSTOM_RESOURCE_DEFINITION,
    ("", "serviceaccounts"): core_schemas.SERVICE_ACCOUNT,
    (RBAC_GROUP, "roles"): core_schemas.ROLE,
    (RBAC_GROUP, "clusterroles"): core_schemas.CLUSTER_ROLE,
    (RBAC_GROUP, "rolebindings"): core_schemas.ROLE_BINDING,
    (RBAC_GROUP, "clusterrolebindings"): core_schemas.CLUSTER_ROLE_BINDING,
}
_SWAGGER_DEFINITIONS = SWAGGER_DEFINITIONS


def group_version_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _rewrite_refs(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/"):
                out[key] = "#/components/schemas/" + value[len("#/definitions/") :]
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(schema, list):
        return [_rewrite_refs(item) for item in schema]
    return schema


def _referenced(schema: Any, found: set[str]) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref[len("#/definitions/") :])
        for value in schema.values():
            _referenced(value, found)
    elif isinstance(schema, list):
        for item in schema:
            _referenced(item, found)


def _operation(kind: Kind, action: str, operation_id: str, body: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": kind.group,
            "version": kind.version,
            "kind": kind.kind,
        },
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _QUERY_PARAMETERS
        ],
        "responses": {"200": {"description": "OK"}},
    }
    if body:
        operation["requestBody"] = {
            "content": {"application/json": {"schema": {"type": "object"}}},
            "required": True,
        }
    return operation


class OpenApi:
    """The `/openapi/v3` index and documents, cached until the set of kinds changes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.swagger_definitions: dict[str, Any] = registry.reference.swagger.get("definitions", {})
        self._generation = -1
        self._documents: dict[str, bytes] = {}
        self._hashes: dict[str, str] = {}

    def _refresh(self) -> None:
        if self._generation == self.registry.generation:
            return
        self._documents.clear()
        self._hashes.clear()
        by_group_version: dict[str, list[Kind]] = {}
        for kind in self.registry.kinds():
            by_group_version.setdefault(group_version_path(kind.group, kind.version), []).append(
                kind
            )
        for path in by_group_version:
            self._hashes[path] = ""  # built lazily
        self._kinds_by_path = by_group_version
        self._generation = self.registry.generation

    def index(self) -> dict[str, Any]:
        self._refresh()
        paths = {}
        for path in sorted(self._kinds_by_path):
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={self._hash(path)}"}
        return {"paths": paths}

    def _hash(self, path: str) -> str:
        if not self._hashes.get(path):
            self._documents[path] = json.dumps(self._build(path)).encode()
            self._hashes[path] = hashlib.sha512(self._documents[path]).hexdigest()[:64].upper()
        return self._hashes[path]

    def document(self, path: str) -> bytes | None:
        self._refresh()
        if path not in self._kinds_by_path:
            return None
        self._hash(path)
        return self._documents[path]

    def _kind_schema(self, kind: Kind, schemas: dict[str, Any]) -> str:
        """Put the kind's schema (and what it references) into `schemas`; return its name."""
        key = kind.resource.key
        pending: set[str] = set()
        if key in _SWAGGER_DEFINITIONS:
            name = _SWAGGER_DEFINITIONS[key]
            pending.add(name)
        else:
            prefix = ".".join(reversed(kind.group.split("."))) if kind.group else "io.k8s.api.core"
            name = f"{prefix}.{kind.version}.{kind.kind}"
            if key in _BUILTIN_SCHEMAS:
                schema = copy.deepcopy(_BUILTIN_SCHEMAS[key])
            elif kind.schema is not None:
                schema = copy.deepcopy(kind.schema.root)
            else:
                schema = {"type": "object"}
            _referenced(schema, pending)
            schemas[name] = _rewrite_refs(schema)
        while pending:
            definition = pending.pop()
            if definition in schemas or definition not in self.swagger_definitions:
                continue
            raw = self.swagger_definitions[definition]
            schemas[definition] = _rewrite_refs(raw)
            found: set[str] = set()
            _referenced(raw, found)
            pending |= found - set(schemas)
        schemas[name] = {
            **schemas[name],
            "x-kubernetes-group-version-kind": [
                {"group": kind.group, "version": kind.version, "kind": kind.kind}
            ],
        }
        return name

    def _build(self, path: str) -> dict[str, Any]:
        schemas: dict[str, Any] = {}
        paths: dict[str, Any] = {}
        prefix = "/" + path
        for kind in self._kinds_by_path[path]:
            schema_name = self._kind_schema(kind, schemas)
            resource = kind.resource
            scope = "/namespaces/{namespace}" if resource.namespaced else ""
            collection = f"{prefix}{scope}/{resource.plural}"
            suffix = ("Namespaced" if resource.namespaced else "") + kind.kind
            ref = {"$ref": f"#/components/schemas/{schema_name}"}
            item_ops = {
                "get": _operation(kind, "get", f"read{suffix}", False),
                "put": _operation(kind, "put", f"replace{suffix}", True),
                "patch": _operation(kind, "patch", f"patch{suffix}", True),
                "delete": _operation(kind, "delete", f"delete{suffix}", False),
            }
            for op in item_ops.values():
                op["responses"]["200"]["content"] = {"application/json": {"schema": ref}}
            paths[collection + "/{name}"] = item_ops
            paths[collection] = {
                "get": _operation(kind, "list", f"list{suffix}", False),
                "post": _operation(kind, "post", f"create{suffix}", True),
            }
            for sub in resource.subresources:
                paths[f"{collection}/{{name}}/{sub}"] = {
                    "get": _operation(kind, "get", f"read{suffix}Status", False),
                    "put": _operation(kind, "put", f"replace{suffix}Status", True),
                    "patch": _operation(kind, "patch", f"patch{suffix}Status", True),
                }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }
