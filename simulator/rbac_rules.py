"""What kube-apiserver's strategies do for the RBAC kinds and ServiceAccounts.

Defaulting as pkg/apis/rbac/v1/defaults.go (a roleRef's and a User or Group subject's
`apiGroup` is `rbac.authorization.k8s.io`), validation as pkg/apis/rbac/validation:
every rule has verbs; a resource rule names API groups and resources; non-resource
URLs only in a ClusterRole, never beside resources; a binding's roleRef is a Role or
ClusterRole (a ClusterRoleBinding's a ClusterRole) and never changes; subjects are
Users, Groups or ServiceAccounts (a ClusterRoleBinding's ServiceAccount names its
namespace). Escalation checks (binding a role one does not hold) are not made: the
simulator's clients that write RBAC objects are administrators.
"""

from __future__ import annotations

import json
from typing import Any

from simulator.bootstrap_policy import RBAC_GROUP

FieldErrors = list[tuple[str, str]]


def default_binding(obj: dict[str, Any]) -> None:
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in obj.get("subjects") or ():
        if (
            isinstance(subject, dict)
            and not subject.get("apiGroup")
            and subject.get("kind") in ("User", "Group")
        ):
            subject["apiGroup"] = RBAC_GROUP


def _supported(value: Any, supported: list[str]) -> str:
    listed = ", ".join(json.dumps(s) for s in supported)
    return f"Unsupported value: {json.dumps(value)}: supported values: {listed}"


def _go_strings(values: list[str]) -> str:
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def _rule_errors(rule: dict[str, Any], path: str, namespaced: bool) -> FieldErrors:
    errors: FieldErrors = []
    if not rule.get("verbs"):
        errors.append((f"{path}.verbs", "Required value: verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        shown = _go_strings(urls)
        if namespaced:
            errors.append(
                (
                    f"{path}.nonResourceURLs",
                    f"Invalid value: {shown}: namespaced rules cannot apply to non-resource URLs",
                )
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errors.append(
                (
                    f"{path}.nonResourceURLs",
                    f"Invalid value: {shown}: rules cannot apply to both regular resources and "
                    "non-resource URLs",
                )
            )
        return errors
    if not rule.get("apiGroups"):
        errors.append(
            (
                f"{path}.apiGroups",
                "Required value: resource rules must supply at least one api group",
            )
        )
    if not rule.get("resources"):
        errors.append(
            (
                f"{path}.resources",
                "Required value: resource rules must supply at least one resource",
            )
        )
    if rule.get("resourceNames") and len(rule.get("resources") or []) > 1:
        errors.append(
            (
                f"{path}.resourceNames",
                "Required value: resource names cannot apply to multiple resources",
            )
        )
    return errors


def _role_errors(new: dict[str, Any], namespaced: bool) -> FieldErrors:
    errors: FieldErrors = []
    for index, rule in enumerate(new.get("rules") or []):
        errors.extend(_rule_errors(rule, f"rules[{index}]", namespaced))
    return errors


def validate_role(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    return _role_errors(new, namespaced=True)


def validate_cluster_role(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    return _role_errors(new, namespaced=False)


def _subject_errors(subject: dict[str, Any], path: str, namespaced: bool) -> FieldErrors:
    errors: FieldErrors = []
    kind, name, group = subject.get("kind"), subject.get("name", ""), subject.get("apiGroup", "")
    if kind == "ServiceAccount":
        if group:
            errors.append((f"{path}.apiGroup", _supported(group, [""])))
        if not namespaced and not subject.get("namespace"):
            errors.append((f"{path}.namespace", "Required value"))
    elif kind in ("User", "Group"):
        if not name:
            what = "user" if kind == "User" else "group"
            errors.append((f"{path}.name", f'Invalid value: "": {what} name cannot be empty'))
        if group != RBAC_GROUP:
            errors.append((f"{path}.apiGroup", _supported(group, [RBAC_GROUP])))
    else:
        errors.append((f"{path}.kind", _supported(kind, ["ServiceAccount", "User", "Group"])))
    return errors


def _binding_errors(
    new: dict[str, Any], old: dict[str, Any] | None, namespaced: bool
) -> FieldErrors:
    errors: FieldErrors = []
    ref = new.get("roleRef") or {}
    if ref.get("apiGroup") != RBAC_GROUP:
        errors.append(("roleRef.apiGroup", _supported(ref.get("apiGroup", ""), [RBAC_GROUP])))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errors.append(("roleRef.kind", _supported(ref.get("kind", ""), kinds)))
    if not ref.get("name"):
        errors.append(("roleRef.name", "Required value"))
    for index, subject in enumerate(new.get("subjects") or []):
        errors.extend(_subject_errors(subject, f"subjects[{index}]", namespaced))
    if old is not None and (old.get("roleRef") or {}) != ref:
        shown = (
            f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
            f'Name:"{ref.get("name", "")}"}}'
        )
        errors.append(("roleRef", f"Invalid value: {shown}: cannot change roleRef"))
    return errors


def validate_role_binding(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    return _binding_errors(new, old, namespaced=True)


def validate_cluster_role_binding(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    return _binding_errors(new, old, namespaced=False)
