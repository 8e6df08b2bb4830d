"""Whether a user may make a request: kube-apiserver's authorizers, in its order.

`system:masters` passes first (the privileged-group authorizer), then RBAC as
plugin/pkg/auth/authorizer/rbac does it: the rules of every ClusterRoleBinding whose
subjects include the user, then (for a namespaced request) of every RoleBinding in the
request's namespace, each rule matched by `RuleAllows` (pkg/apis/rbac/v1/
evaluation_helpers.go). A binding whose role is missing grants nothing and is named in
the refusal's reason. A refusal is 403 with the Status body of responsewriters.Forbidden.

The attributes are the request log's `RequestInfo` (simulator/request_paths.py resolves
them as the apiserver's RequestInfoFactory does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from simulator.authentication import MASTERS_GROUP, SERVICE_ACCOUNT_PREFIX, UserInfo
from simulator.bootstrap_policy import RBAC_GROUP
from simulator.errors import ApiError
from simulator.request_info import RequestInfo
from simulator.store import Store, WatchEvent

Rule = dict[str, Any]  # a PolicyRule as stored


def verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or ())


def api_group_matches(rule: Rule, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or ())


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    """`*`, the exact `resource[/subresource]`, or `*/subresource`."""
    for resource in rule.get("resources") or ():
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    """No names: any. Else the request's name must be one of them, so a named rule never
    allows a request without a name (list, watch, create, deletecollection)."""
    names = rule.get("resourceNames") or ()
    return not names or name in names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(rule: Rule, info: RequestInfo, is_resource: bool) -> bool:
    """RuleAllows."""
    if is_resource:
        combined = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        return (
            verb_matches(rule, info.verb)
            and api_group_matches(rule, info.group)
            and resource_matches(rule, combined, info.subresource)
            and resource_name_matches(rule, info.name)
        )
    return verb_matches(rule, info.verb) and non_resource_url_matches(rule, info.path)


def applies_to(user: UserInfo, subject: dict[str, Any], namespace: str) -> bool:
    """appliesToUser: a User by name, a Group by membership, a ServiceAccount by its
    username (its namespace defaulting to the RoleBinding's)."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        account_namespace = subject.get("namespace") or namespace
        return bool(account_namespace) and (
            user.name == f"{SERVICE_ACCOUNT_PREFIX}{account_namespace}:{name}"
        )
    return False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # why: the granting binding, or the resolution errors of a refusal


class RbacAuthorizer:
    """Decides from the RBAC objects in the store; what a user has in a namespace is
    remembered until an RBAC object changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rules: dict[tuple[UserInfo, str], list[tuple[str, Rule | None, str]]] = {}
        self._unsubscribe = store.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    def _on_event(self, event: WatchEvent) -> None:
        if event.resource.group == RBAC_GROUP:
            self._rules.clear()

    def authorize(self, user: UserInfo, info: RequestInfo, is_resource: bool) -> Decision:
        if MASTERS_GROUP in user.groups:
            return Decision(True, "allowed by the system:masters group")
        errors: list[str] = []
        for source, rule, error in self._visit(user, info.namespace if is_resource else ""):
            if rule is not None and rule_allows(rule, info, is_resource):
                return Decision(True, f"RBAC: allowed by {source}")
            if error:
                errors.append(error)
        return Decision(False, f"RBAC: {_aggregate(errors)}" if errors else "")

    def _visit(self, user: UserInfo, namespace: str) -> list[tuple[str, Rule | None, str]]:
        key = (user, namespace)
        found = self._rules.get(key)
        if found is None:
            found = self._rules[key] = list(self._resolve(user, namespace))
        return found

    def _resolve(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, Rule | None, str]]:
        """VisitRulesFor: (source, rule, error) for ClusterRoleBindings, then RoleBindings."""
        bindings = self.store.resource(RBAC_GROUP, "clusterrolebindings")
        for binding in self.store.list_view(bindings)[0]:
            yield from self._binding_rules(user, binding, "")
        if namespace:
            bindings = self.store.resource(RBAC_GROUP, "rolebindings")
            for binding in self.store.list_view(bindings, namespace)[0]:
                yield from self._binding_rules(user, binding, namespace)

    def _binding_rules(
        self, user: UserInfo, binding: dict[str, Any], namespace: str
    ) -> Iterator[tuple[str, Rule | None, str]]:
        subject = next(
            (s for s in binding.get("subjects") or () if applies_to(user, s, namespace)), None
        )
        if subject is None:
            return
        ref = binding.get("roleRef") or {}
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.store.find_view(self.store.resource(RBAC_GROUP, "clusterroles"), None, name)
        elif kind == "Role":
            role = self.store.find_view(self.store.resource(RBAC_GROUP, "roles"), namespace, name)
        else:
            yield "", None, f'unsupported role reference kind: "{kind}"'
            return
        if role is None:
            yield "", None, f'{kind.lower()}.{RBAC_GROUP} "{name}" not found'
            return
        where = binding["metadata"]["name"]
        if namespace:
            where = f"{where}/{namespace}"
        whom = _describe(subject, namespace)
        source = f'{binding["kind"]} "{where}" of {kind} "{name}" to {whom}'
        for rule in role.get("rules") or ():
            yield source, rule, ""


def _describe(subject: dict[str, Any], namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message alone, several in brackets."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _q(text: str) -> str:
    """Go's %q for the names that occur here."""
    return json.dumps(text, ensure_ascii=False)


_SANITIZER = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def forbidden(user: UserInfo, info: RequestInfo, is_resource: bool, reason: str) -> ApiError:
    """responsewriters.Forbidden: forbiddenMessage, then apierrors.NewForbidden."""
    if not is_resource:
        message = f"User {_q(user.name)} cannot {info.verb} path {_q(info.path)}"
    else:
        resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        scope = "at the cluster scope"
        if info.namespace:
            scope = f"in the namespace {_q(info.namespace)}"
        message = (
            f"User {_q(user.name)} cannot {info.verb} resource {_q(resource)} in API group "
            f"{_q(info.group)} {scope}"
        )
    message = message.translate(_SANITIZER)
    if reason:
        message = f"{message}: {reason}"
    details: dict[str, Any] = {}
    if not is_resource or not (info.resource or info.group):
        return ApiError(403, "Forbidden", f"forbidden: {message}", details)
    qualified = f"{info.resource}.{info.group}" if info.group else info.resource
    if info.name:
        details["name"] = info.name
        text = f"{qualified} {_q(info.name)} is forbidden: {message}"
    else:
        text = f"{qualified} is forbidden: {message}"
    if info.group:
        details["group"] = info.group
    details["kind"] = info.resource
    return ApiError(403, "Forbidden", text, details)
