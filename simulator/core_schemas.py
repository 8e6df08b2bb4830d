"""Schemas of the built-in kinds the simulator serves (v1, storage.k8s.io, apps, apiextensions).

Built-in kinds have no CRD; a real server decodes them into Go structs,
which drops unknown fields (or refuses them under Strict validation) and
refuses wrong types. These schemas list the fields of the Kubernetes 1.32
types, reusing the ObjectMeta and PersistentVolumeClaimSpec definitions of
the reference swagger, so the same structural machinery applies.
"""

from __future__ import annotations

from typing import Any

from simulator.schemas import OBJECT_META_REF

_DEF = "#/definitions/"
STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
TIME: dict[str, Any] = {"type": ["string", "null"]}
QUANTITY: dict[str, Any] = {"$ref": _DEF + "k8s.io.apimachinery.pkg.api.resource.Quantity"}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": STRING}
QUANTITY_MAP: dict[str, Any] = {"type": "object", "additionalProperties": QUANTITY}
STRING_LIST: dict[str, Any] = {"type": "array", "items": STRING}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def list_of(item: dict[str, Any], **markers: Any) -> dict[str, Any]:
    return {"type": "array", "items": item, **markers}


def top_level(**properties: Any) -> dict[str, Any]:
    return obj({"apiVersion": STRING, "kind": STRING, "metadata": OBJECT_META_REF, **properties})


_CONDITION = obj(
    {
        "type": STRING,
        "status": STRING,
        "lastProbeTime": TIME,
        "lastTransitionTime": TIME,
        "reason": STRING,
        "message": STRING,
    },
    ["type", "status"],
)

OBJECT_REFERENCE = obj(
    {
        "apiVersion": STRING,
        "kind": STRING,
        "name": STRING,
        "namespace": STRING,
        "uid": STRING,
        "resourceVersion": STRING,
        "fieldPath": STRING,
    }
)

NAMESPACE = top_level(
    spec=obj({"finalizers": STRING_LIST}),
    status=obj({"phase": STRING, "conditions": list_of(_CONDITION)}),
)

PERSISTENT_VOLUME_CLAIM = top_level(
    spec={"$ref": _DEF + "k8s.io.api.core.v1.PersistentVolumeClaimSpec"},
    status=obj(
        {
            "phase": STRING,
            "accessModes": STRING_LIST,
            "capacity": QUANTITY_MAP,
            "conditions": list_of(
                _CONDITION,
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
            ),
            "allocatedResources": QUANTITY_MAP,
            "allocatedResourceStatuses": STRING_MAP,
            "currentVolumeAttributesClassName": STRING,
            "modifyVolumeStatus": obj(
                {"targetVolumeAttributesClassName": STRING, "status": STRING}
            ),
        }
    ),
)

STORAGE_CLASS = top_level(
    provisioner=STRING,
    parameters=STRING_MAP,
    reclaimPolicy=STRING,
    mountOptions=STRING_LIST,
    allowVolumeExpansion=BOOLEAN,
    volumeBindingMode=STRING,
    allowedTopologies=list_of(
        obj(
            {
                "matchLabelExpressions": list_of(
                    obj({"key": STRING, "values": STRING_LIST}, ["key", "values"])
                )
            }
        )
    ),
)
STORAGE_CLASS["required"] = ["provisioner"]

EVENT = top_level(
    involvedObject=OBJECT_REFERENCE,
    reason=STRING,
    message=STRING,
    source=obj({"component": STRING, "host": STRING}),
    firstTimestamp=TIME,
    lastTimestamp=TIME,
    count=INTEGER,
    type=STRING,
    eventTime={"type": ["string", "null"]},
    series=obj({"count": INTEGER, "lastObservedTime": TIME}),
    action=STRING,
    related=OBJECT_REFERENCE,
    reportingComponent=STRING,
    reportingInstance=STRING,
)
EVENT["required"] = ["involvedObject", "metadata"]

_PRESERVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

# v1 Pod, as far as a client reads a Pod's claims: `spec.volumes[]` is typed (name, and a
# persistentVolumeClaim source); the rest of the spec and the status are kept as sent. Nothing
# runs a Pod here: tests make them to stand for what mounts a claim (a virt-launcher).
_POD_VOLUME = obj(
    {
        "name": STRING,
        "persistentVolumeClaim": obj({"claimName": STRING, "readOnly": BOOLEAN}, ["claimName"]),
    },
    ["name"],
)
_POD_VOLUME["x-kubernetes-preserve-unknown-fields"] = True
_POD_SPEC = obj({"volumes": list_of(_POD_VOLUME), "containers": list_of(_PRESERVE)},
                ["containers"])
_POD_SPEC["x-kubernetes-preserve-unknown-fields"] = True
POD = top_level(spec=_POD_SPEC, status=_PRESERVE)
POD["required"] = ["spec"]

# apps/v1 ControllerRevision: `data` is a runtime.RawExtension (any object), `revision` int64.
CONTROLLER_REVISION = top_level(data=_PRESERVE, revision=INTEGER)
_CRD_COLUMN = obj(
    {
        "name": STRING,
        "type": STRING,
        "format": STRING,
        "description": STRING,
        "priority": INTEGER,
        "jsonPath": STRING,
    },
    ["name", "type", "jsonPath"],
)
_CRD_NAMES = obj(
    {
        "plural": STRING,
        "singular": STRING,
        "shortNames": STRING_LIST,
        "kind": STRING,
        "listKind": STRING,
        "categories": STRING_LIST,
    },
    ["plural", "kind"],
)
CUSTOM_RESOURCE_DEFINITION = top_level(
    spec=obj(
        {
            "group": STRING,
            "names": _CRD_NAMES,
            "scope": {"type": "string", "enum": ["Namespaced", "Cluster"]},
            "versions": list_of(
                obj(
                    {
                        "name": STRING,
                        "served": BOOLEAN,
                        "storage": BOOLEAN,
                        "deprecated": BOOLEAN,
                        "deprecationWarning": STRING,
                        "schema": obj({"openAPIV3Schema": _PRESERVE}),
                        "subresources": obj({"status": _PRESERVE, "scale": _PRESERVE}),
                        "additionalPrinterColumns": list_of(_CRD_COLUMN),
                        "selectableFields": list_of(obj({"jsonPath": STRING}, ["jsonPath"])),
                    },
                    ["name", "served", "storage"],
                )
            ),
            "conversion": _PRESERVE,
            "preserveUnknownFields": BOOLEAN,
        },
        ["group", "names", "scope", "versions"],
    ),
    status=obj(
        {
            "conditions": list_of(_CONDITION),
            "acceptedNames": _CRD_NAMES,
            "storedVersions": STRING_LIST,
        }
    ),
)
CUSTOM_RESOURCE_DEFINITION["required"] = ["spec"]

# core/v1 ServiceAccount and rbac.authorization.k8s.io/v1 (Kubernetes 1.32 types).
SERVICE_ACCOUNT = top_level(
    secrets=list_of(
        OBJECT_REFERENCE,
        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
    imagePullSecrets=list_of(obj({"name": STRING})),
    automountServiceAccountToken=BOOLEAN,
)
_POLICY_RULE = obj(
    {
        "verbs": STRING_LIST,
        "apiGroups": STRING_LIST,
        "resources": STRING_LIST,
        "resourceNames": STRING_LIST,
        "nonResourceURLs": STRING_LIST,
    },
    ["verbs"],
)
_LABEL_SELECTOR: dict[str, Any] = {
    "$ref": _DEF + "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector"
}
ROLE = top_level(rules=list_of(_POLICY_RULE))
CLUSTER_ROLE = top_level(
    rules=list_of(_POLICY_RULE),
    aggregationRule=obj({"clusterRoleSelectors": list_of(_LABEL_SELECTOR)}),
)
_ROLE_REF = obj({"apiGroup": STRING, "kind": STRING, "name": STRING}, ["apiGroup", "kind", "name"])
_SUBJECT = obj(
    {"kind": STRING, "apiGroup": STRING, "name": STRING, "namespace": STRING}, ["kind", "name"]
)
ROLE_BINDING = top_level(subjects=list_of(_SUBJECT), roleRef=_ROLE_REF)
ROLE_BINDING["required"] = ["roleRef"]
CLUSTER_ROLE_BINDING = top_level(subjects=list_of(_SUBJECT), roleRef=_ROLE_REF)
CLUSTER_ROLE_BINDING["required"] = ["roleRef"]
