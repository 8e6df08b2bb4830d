"""The kinds the simulator serves and how each is checked, as a real cluster would.

Built-in kinds (namespaces, PVCs, events, StorageClasses, CRDs) come with
their Go-type schemas and strategies; KubeVirt's VirtualMachine and
VirtualMachineInstance with the reference swagger; every CRD (the CSI
snapshot ones, the project's, and any created through the API) from its
`openAPIV3Schema`. CRDs are stored as objects, so `kubectl get crd` lists
them, and creating or deleting one adds or removes its kind while running.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator import builtin_rules, core_schemas, kubevirt_admission, rbac_rules
from simulator.bootstrap_policy import RBAC_GROUP
from simulator.cel import MISSING
from simulator.crd_versions import preferred_version
from simulator.errors import ApiError, invalid
from simulator.metadata_validation import validate_metadata
from simulator.reference import Reference
from simulator.resource_types import ResourceType
from simulator.schemas import KindSchema, same_data, swagger_definitions
from simulator.store import Store, WatchEvent, now_rfc3339

FieldErrors = list[tuple[str, str]]
UpdateRule = Callable[[dict[str, Any], dict[str, Any] | None], FieldErrors]
Denials = Callable[[dict[str, Any], dict[str, Any] | None], list[str]]

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
CRD_GROUP = "apiextensions.k8s.io"
KUBEVIRT_GROUP = "kubevirt.io"
KUBEVIRT_SNAPSHOT_GROUP = "snapshot.kubevirt.io"
KUBEVIRT_CLONE_GROUP = "clone.kubevirt.io"
INSTANCETYPE_GROUP = "instancetype.kubevirt.io"
APPS_GROUP = "apps"
SUBRESOURCES_GROUP = "subresources.kubevirt.io"
# The kubevirt.io subresources the simulator routes to its behaviours (all PUT).
KUBEVIRT_SUBRESOURCES = {
    "virtualmachineinstances": ("freeze", "unfreeze", "pause", "unpause"),
    "virtualmachines": ("start", "stop", "restart"),
}
_BASE_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
# KubeVirt's kinds, validated against the definitions of its swagger document (the version
# the simulator serves is the storage one: `v1` and `v1beta1`).
SWAGGER_DEFINITIONS = {
    (KUBEVIRT_GROUP, "virtualmachines"): "v1.VirtualMachine",
    (KUBEVIRT_GROUP, "virtualmachineinstances"): "v1.VirtualMachineInstance",
    (KUBEVIRT_SNAPSHOT_GROUP, "virtualmachinesnapshots"): "v1beta1.VirtualMachineSnapshot",
    (KUBEVIRT_SNAPSHOT_GROUP, "virtualmachinesnapshotcontents"):
        "v1beta1.VirtualMachineSnapshotContent",
    (KUBEVIRT_SNAPSHOT_GROUP, "virtualmachinerestores"): "v1beta1.VirtualMachineRestore",
    (KUBEVIRT_CLONE_GROUP, "virtualmachineclones"): "v1beta1.VirtualMachineClone",
    (KUBEVIRT_GROUP, "kubevirts"): "v1.KubeVirt",
    (INSTANCETYPE_GROUP, "virtualmachineinstancetypes"): "v1beta1.VirtualMachineInstancetype",
    (INSTANCETYPE_GROUP, "virtualmachineclusterinstancetypes"):
        "v1beta1.VirtualMachineClusterInstancetype",
    (INSTANCETYPE_GROUP, "virtualmachinepreferences"): "v1beta1.VirtualMachinePreference",
    (INSTANCETYPE_GROUP, "virtualmachineclusterpreferences"):
        "v1beta1.VirtualMachineClusterPreference",
}


@dataclass
class Kind:
    """A served kind: its REST identity plus what a real server does on each write."""

    resource: ResourceType
    schema: KindSchema | None
    builtin: bool  # a Go type (strategic merge patch, no kind/apiVersion on list items)
    verbs: tuple[str, ...] = STANDARD_VERBS
    list_kind: str = ""
    selectable_fields: frozenset[str] = _BASE_FIELDS
    crd_defaults: bool = False
    defaulter: Callable[[dict[str, Any]], None] | None = None
    strategy: UpdateRule | None = None  # validation beyond the schema; old is None on create
    webhook: tuple[str, Denials] | None = None
    crd_name: str = ""
    # What DELETE answers once the object is gone: the object (PVCs, StorageClasses and
    # custom resources, as their registries do) or a Status (namespaces, events, CRDs).
    delete_returns_object: bool = True
    # The strategy's AllowUnconditionalUpdate: a PUT may leave out metadata.resourceVersion
    # (true for the built-in kinds served here; false for CRDs and custom resources).
    unconditional_update: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.resource.group

    @property
    def version(self) -> str:
        return self.resource.version

    @property
    def plural(self) -> str:
        return self.resource.plural

    @property
    def kind(self) -> str:
        return self.resource.kind

    def validate(self, obj: dict[str, Any], valid: dict[str, Any] | None = None) -> FieldErrors:
        """Everything that holds for any stored state: metadata rules and the schema.

        `valid`: an object this kind passed before (see `KindSchema.validate`); metadata
        the same as its own (a status write's, mostly) passed with it and is not checked again.
        """
        meta = obj.get("metadata")
        before = valid.get("metadata", MISSING) if isinstance(valid, dict) else MISSING
        if before is not MISSING and (meta is before or (meta == before
                                                         and same_data(meta, before))):
            errors: FieldErrors = []
        else:
            errors = validate_metadata(meta, namespace_kind=self.resource.key == ("", "namespaces"))
        if self.schema is not None:
            errors.extend(self.schema.validate(obj, valid))
        return errors


def _kubevirt_crd(
    group: str,
    versions: list[str],
    plural: str,
    kind: str,
    short: list[str],
    columns: list[dict[str, Any]],
    status: bool,
    *,
    namespaced: bool = True,
    categories: tuple[str, ...] = ("all",),
) -> dict[str, Any]:
    """A CRD as virt-operator writes it, with the versions the simulator serves.

    virt-operator also serves the older `v1alpha1` of the snapshot and clone groups; the
    simulator serves only the storage version, which is what clients use.
    """
    served: list[dict[str, Any]] = []
    for name in versions:
        version: dict[str, Any] = {
            "name": name,
            "served": True,
            "storage": name == versions[-1],
            "schema": {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            },
        }
        if columns:
            version["additionalPrinterColumns"] = columns
        if status:
            version["subresources"] = {"status": {}}
        served.append(version)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"kubevirt.io": ""}},
        "spec": {
            "group": group,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
                "shortNames": short,
                **({"categories": list(categories)} if categories else {}),
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": served,
        },
    }


def _printer_columns(version: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    columns = version.get("additionalPrinterColumns")
    if not columns:
        return ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)
    return tuple(dict(c) for c in columns)


def _served_version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = [v for v in crd["spec"].get("versions") or [] if v.get("served", True)]
    if not versions:
        raise invalid(
            "CustomResourceDefinition",
            CRD_GROUP,
            crd.get("metadata", {}).get("name", ""),
            [
                {
                    "field": "spec.versions",
                    "message": "Invalid value: must have at least one served version",
                }
            ],
        )
    return preferred_version(versions)


def crd_errors(crd: dict[str, Any]) -> FieldErrors:
    """The CRD rules that matter for serving it: names, scope, one storage version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    errors: FieldErrors = []
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    name = (crd.get("metadata") or {}).get("name", "")
    if name != expected:
        errors.append(
            ("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    if "." not in str(spec.get("group", "")):
        errors.append(
            (
                "spec.group",
                f'Invalid value: "{spec.get("group", "")}": '
                "should be a domain with at least one dot",
            )
        )
    versions = spec.get("versions") or []
    if sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(
            (
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    return errors


class Registry:
    """Served kinds keyed by (group, plural), their versions, and the CRD lifecycle."""

    def __init__(self, store: Store, reference: Reference) -> None:
        self.store = store
        self.reference = reference
        self.definitions = swagger_definitions(reference.swagger)
        self._kinds: dict[tuple[str, str], Kind] = {}
        self.generation = 0  # bumps whenever the set of kinds changes (discovery caches)
        self._crd_specs: dict[str, Any] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # ---- set-up ------------------------------------------------------------------------

    def install(self) -> None:
        """Register the built-in and KubeVirt kinds, then create every reference CRD."""
        for kind in self._builtin_kinds():
            self._add(kind)
        self._unsubscribe = self.store.subscribe(self._on_store_event)
        for crd in [*self._kubevirt_crds(), *self.reference.crds]:
            crd = copy.deepcopy(crd)
            crd.pop("status", None)
            meta = crd.setdefault("metadata", {})
            for server_field in ("creationTimestamp", "resourceVersion", "uid", "generation"):
                meta.pop(server_field, None)
            errors = crd_errors(crd)
            if errors:
                raise ValueError(f"CRD {meta.get('name')!r} cannot be served: {errors}")
            self.prepare_crd(crd)
            existing = self.store.find(
                self.lookup(CRD_GROUP, "v1", "customresourcedefinitions").resource,
                None,
                meta["name"],
            )
            if existing is None:
                self.store.create(
                    self.lookup(CRD_GROUP, "v1", "customresourcedefinitions").resource,
                    None,
                    crd,
                    keep_status=True,
                )

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _add(self, kind: Kind) -> None:
        resource = kind.resource
        validator = kind.validate
        resource = ResourceType(
            group=resource.group,
            version=resource.version,
            plural=resource.plural,
            singular=resource.singular,
            kind=resource.kind,
            namespaced=resource.namespaced,
            short_names=resource.short_names,
            subresources=resource.subresources,
            categories=resource.categories,
            printer_columns=resource.printer_columns,
            path_segment_names=resource.path_segment_names,
            validator=validator,
        )
        kind.resource = resource
        self.store.register(resource)
        self._kinds[resource.key] = kind
        self.generation += 1

    def _builtin_kinds(self) -> list[Kind]:
        defs = self.definitions

        def builtin(schema: dict[str, Any]) -> KindSchema:
            return KindSchema(schema, defs)

        return [
            Kind(
                ResourceType(
                    "", "v1", "namespaces", "namespace", "Namespace", False, ("ns",), ("status",)
                ),
                builtin(core_schemas.NAMESPACE),
                True,
                verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                list_kind="NamespaceList",
                selectable_fields=_BASE_FIELDS | {"status.phase"},
                defaulter=builtin_rules.default_namespace,
                delete_returns_object=False,
            ),
            Kind(
                ResourceType(
                    "",
                    "v1",
                    "persistentvolumeclaims",
                    "persistentvolumeclaim",
                    "PersistentVolumeClaim",
                    True,
                    ("pvc",),
                    ("status",),
                ),
                builtin(core_schemas.PERSISTENT_VOLUME_CLAIM),
                True,
                list_kind="PersistentVolumeClaimList",
                defaulter=builtin_rules.default_persistent_volume_claim,
                strategy=builtin_rules.validate_persistent_volume_claim,
            ),
            Kind(
                ResourceType("", "v1", "pods", "pod", "Pod", True, ("po",), ("status",),
                             ("all",)),
                builtin(core_schemas.POD),
                True,
                list_kind="PodList",
                strategy=builtin_rules.validate_pod,
            ),
            Kind(
                ResourceType("", "v1", "events", "event", "Event", True, ("ev",)),
                builtin(core_schemas.EVENT),
                True,
                list_kind="EventList",
                delete_returns_object=False,
                selectable_fields=_BASE_FIELDS
                | {
                    "involvedObject.kind",
                    "involvedObject.namespace",
                    "involvedObject.name",
                    "involvedObject.uid",
                    "involvedObject.apiVersion",
                    "involvedObject.resourceVersion",
                    "involvedObject.fieldPath",
                    "reason",
                    "reportingComponent",
                    "source",
                    "type",
                },
            ),
            Kind(
                ResourceType(
                    "storage.k8s.io",
                    "v1",
                    "storageclasses",
                    "storageclass",
                    "StorageClass",
                    False,
                    ("sc",),
                ),
                builtin(core_schemas.STORAGE_CLASS),
                True,
                list_kind="StorageClassList",
                defaulter=builtin_rules.default_storage_class,
                strategy=builtin_rules.validate_storage_class,
            ),
            Kind(
                ResourceType(
                    APPS_GROUP,
                    "v1",
                    "controllerrevisions",
                    "controllerrevision",
                    "ControllerRevision",
                    True,
                ),
                builtin(core_schemas.CONTROLLER_REVISION),
                True,
                list_kind="ControllerRevisionList",
                strategy=builtin_rules.validate_controller_revision,
            ),
            Kind(
                ResourceType(
                    "", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)
                ),
                builtin(core_schemas.SERVICE_ACCOUNT),
                True,
                list_kind="ServiceAccountList",
            ),
            Kind(
                ResourceType(
                    RBAC_GROUP, "v1", "roles", "role", "Role", True, path_segment_names=True
                ),
                builtin(core_schemas.ROLE),
                True,
                list_kind="RoleList",
                strategy=rbac_rules.validate_role,
            ),
            Kind(
                ResourceType(
                    RBAC_GROUP,
                    "v1",
                    "clusterroles",
                    "clusterrole",
                    "ClusterRole",
                    False,
                    path_segment_names=True,
                ),
                builtin(core_schemas.CLUSTER_ROLE),
                True,
                list_kind="ClusterRoleList",
                strategy=rbac_rules.validate_cluster_role,
            ),
            Kind(
                ResourceType(
                    RBAC_GROUP,
                    "v1",
                    "rolebindings",
                    "rolebinding",
                    "RoleBinding",
                    True,
                    path_segment_names=True,
                ),
                builtin(core_schemas.ROLE_BINDING),
                True,
                list_kind="RoleBindingList",
                defaulter=rbac_rules.default_binding,
                strategy=rbac_rules.validate_role_binding,
            ),
            Kind(
                ResourceType(
                    RBAC_GROUP,
                    "v1",
                    "clusterrolebindings",
                    "clusterrolebinding",
                    "ClusterRoleBinding",
                    False,
                    path_segment_names=True,
                ),
                builtin(core_schemas.CLUSTER_ROLE_BINDING),
                True,
                list_kind="ClusterRoleBindingList",
                defaulter=rbac_rules.default_binding,
                strategy=rbac_rules.validate_cluster_role_binding,
            ),
            Kind(
                ResourceType(
                    CRD_GROUP,
                    "v1",
                    "customresourcedefinitions",
                    "customresourcedefinition",
                    "CustomResourceDefinition",
                    False,
                    ("crd", "crds"),
                    ("status",),
                    ("api-extensions",),
                ),
                builtin(core_schemas.CUSTOM_RESOURCE_DEFINITION),
                True,
                list_kind="CustomResourceDefinitionList",
                delete_returns_object=False,
                strategy=lambda new, old: crd_errors(new),
                unconditional_update=False,
            ),
        ]

    def _kubevirt_crds(self) -> list[dict[str, Any]]:
        """The CRDs virt-operator installs that the simulator serves; schemas from the swagger.

        Names, short names, categories, versions and printer columns are KubeVirt's own, so
        that kubectl resolves names here as on a cluster with KubeVirt installed: the
        project's records must stay unambiguous beside `snapshot.kubevirt.io` and
        `clone.kubevirt.io`, which serve kinds of the same names.
        """
        age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ready = {
            "name": "Ready",
            "type": "string",
            "jsonPath": ".status.conditions[?(@.type=='Ready')].status",
        }
        phase = {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
        error = {"name": "Error", "type": "string", "jsonPath": ".status.error.message"}
        return [
            _kubevirt_crd(
                KUBEVIRT_GROUP,
                ["v1"],
                "virtualmachines",
                "VirtualMachine",
                ["vm", "vms"],
                [
                    age,
                    {
                        "name": "Status",
                        "type": "string",
                        "description": "Human Readable Status",
                        "jsonPath": ".status.printableStatus",
                    },
                    ready,
                ],
                status=True,
            ),
            _kubevirt_crd(
                KUBEVIRT_GROUP,
                ["v1"],
                "virtualmachineinstances",
                "VirtualMachineInstance",
                ["vmi", "vmis"],
                [
                    age,
                    phase,
                    {"name": "IP", "type": "string", "jsonPath": ".status.interfaces[0].ipAddress"},
                    {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeName"},
                    ready,
                    {
                        "name": "Live-Migratable",
                        "type": "string",
                        "priority": 1,
                        "jsonPath": ".status.conditions[?(@.type=='LiveMigratable')].status",
                    },
                    {
                        "name": "Paused",
                        "type": "string",
                        "priority": 1,
                        "jsonPath": ".status.conditions[?(@.type=='Paused')].status",
                    },
                ],
                status=False,
            ),
            _kubevirt_crd(
                KUBEVIRT_SNAPSHOT_GROUP,
                ["v1beta1"],
                "virtualmachinesnapshots",
                "VirtualMachineSnapshot",
                ["vmsnapshot", "vmsnapshots"],
                [
                    {"name": "SourceKind", "type": "string", "jsonPath": ".spec.source.kind"},
                    {"name": "SourceName", "type": "string", "jsonPath": ".spec.source.name"},
                    phase,
                    {"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
                    {"name": "CreationTime", "type": "date", "jsonPath": ".status.creationTime"},
                    error,
                ],
                status=True,
            ),
            _kubevirt_crd(
                KUBEVIRT_SNAPSHOT_GROUP,
                ["v1beta1"],
                "virtualmachinesnapshotcontents",
                "VirtualMachineSnapshotContent",
                ["vmsnapshotcontent", "vmsnapshotcontents"],
                [
                    {"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
                    {"name": "CreationTime", "type": "date", "jsonPath": ".status.creationTime"},
                    error,
                ],
                status=True,
            ),
            _kubevirt_crd(
                KUBEVIRT_SNAPSHOT_GROUP,
                ["v1beta1"],
                "virtualmachinerestores",
                "VirtualMachineRestore",
                ["vmrestore", "vmrestores"],
                [
                    {"name": "TargetKind", "type": "string", "jsonPath": ".spec.target.kind"},
                    {"name": "TargetName", "type": "string", "jsonPath": ".spec.target.name"},
                    {"name": "Complete", "type": "boolean", "jsonPath": ".status.complete"},
                    {"name": "RestoreTime", "type": "date", "jsonPath": ".status.restoreTime"},
                ],
                status=True,
            ),
            _kubevirt_crd(
                KUBEVIRT_CLONE_GROUP,
                ["v1beta1"],
                "virtualmachineclones",
                "VirtualMachineClone",
                ["vmclone", "vmclones"],
                [
                    phase,
                    {"name": "SourceVirtualMachine", "type": "string",
                     "jsonPath": ".spec.source.name"},
                    {"name": "TargetVirtualMachine", "type": "string",
                     "jsonPath": ".spec.target.name"},
                ],
                status=True,
            ),
            _kubevirt_crd(
                KUBEVIRT_GROUP, ["v1"], "kubevirts", "KubeVirt", ["kv", "kvs"], [age, phase],
                status=True,
            ),
            _kubevirt_crd(
                INSTANCETYPE_GROUP,
                ["v1beta1"],
                "virtualmachineinstancetypes",
                "VirtualMachineInstancetype",
                ["vminstancetype", "vminstancetypes", "vmf", "vmfs"],
                [],
                status=False,
            ),
            _kubevirt_crd(
                INSTANCETYPE_GROUP,
                ["v1beta1"],
                "virtualmachineclusterinstancetypes",
                "VirtualMachineClusterInstancetype",
                ["vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs"],
                [],
                status=False,
                namespaced=False,
                categories=(),
            ),
            _kubevirt_crd(
                INSTANCETYPE_GROUP,
                ["v1beta1"],
                "virtualmachinepreferences",
                "VirtualMachinePreference",
                ["vmpref", "vmprefs", "vmp", "vmps"],
                [],
                status=False,
            ),
            _kubevirt_crd(
                INSTANCETYPE_GROUP,
                ["v1beta1"],
                "virtualmachineclusterpreferences",
                "VirtualMachineClusterPreference",
                ["vmcp", "vmcps"],
                [],
                status=False,
                namespaced=False,
                categories=(),
            ),
        ]

    # ---- CRDs --------------------------------------------------------------------------

    def prepare_crd(self, crd: dict[str, Any]) -> None:
        """Set the status an established CRD shows (the apiextensions controller's job)."""
        spec = crd.get("spec") or {}
        now = now_rfc3339()
        crd["status"] = {
            "acceptedNames": copy.deepcopy(spec.get("names") or {}),
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
        }

    def kind_from_crd(self, crd: dict[str, Any]) -> Kind:
        spec = crd["spec"]
        names = spec["names"]
        version = _served_version(crd)
        group = spec["group"]
        subresources = ("status",) if "status" in (version.get("subresources") or {}) else ()
        resource = ResourceType(
            group=group,
            version=version["name"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            subresources=subresources,
            categories=tuple(names.get("categories") or ()),
            printer_columns=_printer_columns(version),
        )
        selectable = _BASE_FIELDS | {
            str(f.get("jsonPath", "")).lstrip(".") for f in version.get("selectableFields") or []
        }
        definition = SWAGGER_DEFINITIONS.get((group, names["plural"]))
        if definition is not None:
            webhook: tuple[str, Denials] | None = None
            if names["kind"] == "VirtualMachine":
                webhook = (
                    kubevirt_admission.VM_WEBHOOK, kubevirt_admission.virtual_machine_denials
                )
            elif names["kind"] == "VirtualMachineInstance":
                webhook = (
                    kubevirt_admission.VMI_WEBHOOK,
                    kubevirt_admission.virtual_machine_instance_denials,
                )
            return Kind(
                resource,
                KindSchema.for_definition(definition, self.definitions),
                False,
                list_kind=names.get("listKind") or f"{names['kind']}List",
                selectable_fields=frozenset(selectable),
                webhook=webhook,
                crd_name=crd["metadata"]["name"],
                unconditional_update=False,
            )
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
        return Kind(
            resource,
            KindSchema.for_crd_version(schema, self.definitions),
            False,
            list_kind=names.get("listKind") or f"{names['kind']}List",
            selectable_fields=frozenset(selectable),
            crd_defaults=True,
            crd_name=crd["metadata"]["name"],
            unconditional_update=False,
        )

    def _on_store_event(self, event: WatchEvent) -> None:
        if event.resource.key != (CRD_GROUP, "customresourcedefinitions"):
            return
        crd = event.object
        if event.type == "DELETED" or crd["metadata"].get("deletionTimestamp"):
            self._remove_crd(crd)
            return
        name = crd["metadata"]["name"]
        if self._crd_specs.get(name) == crd.get("spec"):
            return  # metadata or status changed: the served kind is the same
        kind = self.kind_from_crd(crd)
        current = self._kinds.get(kind.resource.key)
        if current is not None and current.crd_name != kind.crd_name:
            return  # a built-in kind wins over a CRD claiming the same names
        self._crd_specs[name] = copy.deepcopy(crd.get("spec"))
        self._add(kind)

    def _remove_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        kind = self._kinds.get(key)
        if kind is None or kind.crd_name != crd["metadata"]["name"]:
            return
        self._crd_specs.pop(kind.crd_name, None)
        del self._kinds[key]
        self.generation += 1
        resource = kind.resource

        def delete_instances() -> None:
            # Outside the store's notification: deleting a CRD deletes all its objects.
            items, _ = self.store.list(resource)
            for item in items:
                meta = item["metadata"]
                try:
                    self.store.delete(resource, meta.get("namespace"), meta["name"])
                except ApiError:
                    continue

        try:
            asyncio.get_running_loop().call_soon(delete_instances)
        except RuntimeError:
            delete_instances()

    # ---- lookups -----------------------------------------------------------------------

    def kinds(self) -> list[Kind]:
        return list(self._kinds.values())

    def find(self, group: str, plural: str) -> Kind | None:
        return self._kinds.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> Kind:
        kind = self._kinds.get((group, plural))
        if kind is None or kind.version != version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return kind

    def lookup_kind(self, api_version: str, kind_name: str) -> Kind:
        group, _, version = api_version.rpartition("/")
        for kind in self._kinds.values():
            if kind.group == group and kind.version == version and kind.kind == kind_name:
                return kind
        raise ApiError(
            400,
            "BadRequest",
            f'no matches for kind "{kind_name}" in version "{api_version}"',
        )

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, core group as ""; KubeVirt's subresource group included."""
        groups: dict[str, list[str]] = {}
        for kind in self._kinds.values():
            versions = groups.setdefault(kind.group, [])
            if kind.version not in versions:
                versions.append(kind.version)
        if KUBEVIRT_GROUP in groups:
            groups[SUBRESOURCES_GROUP] = ["v1"]
        return groups
