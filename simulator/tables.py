"""`meta.k8s.io/v1` Table answers, so `kubectl get` prints the same columns as on a cluster.

kubectl asks for `as=Table;v=v1;g=meta.k8s.io`; the server renders rows.
Built-in kinds use kube-apiserver's printers (PVC: STATUS, VOLUME,
CAPACITY, ...); custom kinds their CRD's `additionalPrinterColumns`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator import jsonpath
from simulator.resource_types import ResourceType

Cell = Callable[[dict[str, Any]], Any]

_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically."
)
_AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created."
)
_ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def wants_table(accept: str) -> bool:
    """True when the first acceptable type the client lists is a meta.k8s.io/v1 Table."""
    for media in accept.split(","):
        params = {
            p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in media.split(";")[1:]
        }
        if (
            params.get("as") == "Table"
            and params.get("v") == "v1"
            and params.get("g") == "meta.k8s.io"
        ):
            return True
        if params.get("as") == "Table":
            continue  # a Table version we do not speak: look further
        return False
    return False


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, the AGE kubectl prints.

    The simulator's own copy (it imports nothing of the product);
    tests/rules/test_human_duration.py holds it and rules.durations.human_duration to
    one table of ages."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


def _dig(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    cell: Cell
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def _name_column() -> Column:
    return Column(
        "Name",
        "string",
        lambda o: o["metadata"].get("name"),
        format="name",
        description=_NAME_DESCRIPTION,
    )


def _age_column() -> Column:
    return Column(
        "Age",
        "string",
        lambda o: age(o["metadata"].get("creationTimestamp")),
        description=_AGE_DESCRIPTION,
    )


def _storage_class_name(obj: dict[str, Any]) -> str:
    name = str(obj["metadata"].get("name"))
    annotations = obj["metadata"].get("annotations") or {}
    default = annotations.get("storageclass.kubernetes.io/is-default-class") == "true" or (
        annotations.get("storageclass.beta.kubernetes.io/is-default-class") == "true"
    )
    return f"{name} (default)" if default else name


def _controller_of(obj: dict[str, Any]) -> str:
    """printControllerRevision: `kind.group/name` of the controller, lower case, or <none>."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            kind = f"{ref.get('kind', '')}.{group}" if group else str(ref.get("kind", ""))
            return f"{kind.lower()}/{ref.get('name', '')}"
    return "<none>"


def _event_object(obj: dict[str, Any]) -> str:
    involved = obj.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _event_last_seen(obj: dict[str, Any]) -> str:
    when = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    return age(when)


def _binding_columns() -> list[Column]:
    """printRoleBinding / printClusterRoleBinding: the role, then the subjects by kind."""

    def subjects(kind: str) -> Cell:
        def cell(obj: dict[str, Any]) -> str:
            names = []
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == kind:
                    name = subject.get("name", "")
                    if kind == "ServiceAccount":
                        name = f"{subject.get('namespace', '')}/{name}"
                    names.append(name)
            return ", ".join(names)

        return cell

    return [
        _name_column(),
        Column(
            "Role",
            "string",
            lambda o: f"{_dig(o, 'roleRef', 'kind') or ''}/{_dig(o, 'roleRef', 'name') or ''}",
        ),
        _age_column(),
        Column("Users", "string", subjects("User"), priority=1),
        Column("Groups", "string", subjects("Group"), priority=1),
        Column("ServiceAccounts", "string", subjects("ServiceAccount"), priority=1),
    ]


def _created_at_columns() -> list[Column]:
    return [
        _name_column(),
        Column("Created At", "date", lambda o: o["metadata"].get("creationTimestamp")),
    ]


_BUILTIN_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "serviceaccounts"): [
        _name_column(),
        Column("Secrets", "integer", lambda o: len(o.get("secrets") or [])),
        _age_column(),
    ],
    ("rbac.authorization.k8s.io", "roles"): _created_at_columns(),
    ("rbac.authorization.k8s.io", "clusterroles"): _created_at_columns(),
    ("rbac.authorization.k8s.io", "rolebindings"): _binding_columns(),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _binding_columns(),
    ("", "namespaces"): [
        _name_column(),
        Column("Status", "string", lambda o: _dig(o, "status", "phase")),
        _age_column(),
    ],
    ("", "persistentvolumeclaims"): [
        _name_column(),
        Column("Status", "string", lambda o: _dig(o, "status", "phase") or "Pending"),
        Column("Volume", "string", lambda o: _dig(o, "spec", "volumeName") or ""),
        Column("Capacity", "string", lambda o: _dig(o, "status", "capacity", "storage") or ""),
        Column(
            "Access Modes",
            "string",
            lambda o: ",".join(
                _ACCESS_MODES.get(m, m) for m in _dig(o, "status", "accessModes") or []
            ),
        ),
        Column("StorageClass", "string", lambda o: _dig(o, "spec", "storageClassName") or ""),
        Column(
            "VolumeAttributesClass",
            "string",
            lambda o: _dig(o, "status", "currentVolumeAttributesClassName") or "<unset>",
        ),
        _age_column(),
        Column("VolumeMode", "string", lambda o: _dig(o, "spec", "volumeMode") or "", priority=1),
    ],
    ("", "events"): [
        Column("Last Seen", "string", _event_last_seen),
        Column("Type", "string", lambda o: o.get("type", "")),
        Column("Reason", "string", lambda o: o.get("reason", "")),
        Column("Object", "string", _event_object),
        Column(
            "Subobject",
            "string",
            lambda o: _dig(o, "involvedObject", "fieldPath") or "",
            priority=1,
        ),
        Column("Source", "string", lambda o: _dig(o, "source", "component") or "", priority=1),
        Column("Message", "string", lambda o: o.get("message", "")),
        Column("First Seen", "string", lambda o: age(o.get("firstTimestamp")), priority=1),
        Column("Count", "string", lambda o: str(o.get("count", "")), priority=1),
        Column("Name", "string", lambda o: o["metadata"].get("name"), format="name", priority=1),
    ],
    ("storage.k8s.io", "storageclasses"): [
        Column("Name", "string", _storage_class_name, format="name", description=_NAME_DESCRIPTION),
        Column("Provisioner", "string", lambda o: o.get("provisioner", "")),
        Column("ReclaimPolicy", "string", lambda o: o.get("reclaimPolicy", "Delete")),
        Column("VolumeBindingMode", "string", lambda o: o.get("volumeBindingMode", "Immediate")),
        Column(
            "AllowVolumeExpansion",
            "string",
            lambda o: str(bool(o.get("allowVolumeExpansion", False))).lower(),
        ),
        _age_column(),
    ],
    ("apps", "controllerrevisions"): [
        _name_column(),
        Column("Controller", "string", _controller_of),
        Column("Revision", "integer", lambda o: o.get("revision", 0)),
        _age_column(),
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        _name_column(),
        Column("Created At", "date", lambda o: o["metadata"].get("creationTimestamp")),
    ],
}


def _custom_cell(column: dict[str, Any]) -> Cell:
    path, kind = str(column.get("jsonPath", "")), column.get("type", "string")

    def cell(obj: dict[str, Any]) -> Any:
        try:
            found = jsonpath.evaluate(path, obj)
        except jsonpath.JsonPathError:
            return None
        if not found:
            return None
        value = found[0]
        if kind == "date":
            return age(value)
        if isinstance(value, dict | list):
            import json

            return json.dumps(value)
        return value

    return cell


def columns_for(resource: ResourceType) -> list[Column]:
    if resource.key in _BUILTIN_COLUMNS:
        return _BUILTIN_COLUMNS[resource.key]
    columns = [_name_column()]
    for column in resource.printer_columns:
        columns.append(
            Column(
                str(column.get("name", "")),
                "string" if column.get("type") == "date" else str(column.get("type", "string")),
                _custom_cell(column),
                priority=int(column.get("priority", 0) or 0),
                format=str(column.get("format", "")),
                description=str(column.get("description", "")),
            )
        )
    return columns


def _row_object(obj: dict[str, Any], include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def to_table(
    resource: ResourceType,
    objects: list[dict[str, Any]],
    *,
    resource_version: str = "",
    include_object: str = "Metadata",
    continue_token: str = "",
) -> dict[str, Any]:
    columns = columns_for(resource)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [column.cell(obj) for column in columns]}
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [column.definition() for column in columns],
        "rows": rows,
    }
