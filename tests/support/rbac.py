"""Kubernetes RBAC, evaluated the way kube-apiserver's authorizer does, for the RBAC proof.

The manifests under deploy/rbac are parsed as they would be applied; the rules
that reach the worker's ServiceAccount (through RoleBindings and
ClusterRoleBindings) are matched against logged requests: verb, API group,
`resource` or `resource/subresource`, resourceNames, and nonResourceURLs.
Wildcards are refused outright: the project's policy is to name everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROLE_KINDS = {"Role", "ClusterRole"}
BINDING_KINDS = {"RoleBinding", "ClusterRoleBinding"}
RBAC_GROUP_VERSION = "rbac.authorization.k8s.io/v1"


class RbacManifestError(ValueError):
    """The manifests are not a valid, wildcard-free RBAC policy for the worker."""


@dataclass(frozen=True)
class Rule:
    """One PolicyRule, as granted in one scope (`namespace` empty: cluster-wide)."""

    role: str
    index: int
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    namespace: str = ""

    @property
    def label(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        what = ",".join(self.non_resource_urls) if self.non_resource_urls else ",".join(
            f"{g or 'core'}/{r}" for g in self.api_groups for r in self.resources)
        return f"{self.role} rule {self.index} ({','.join(self.verbs)} {what}){where}"

    def grants(self) -> list[tuple[str, str, str]]:
        """Every (verb, group, resource-or-URL) the rule allows, for the unused-rule check."""
        if self.non_resource_urls:
            return [(v, "", url) for v in self.verbs for url in self.non_resource_urls]
        return [(v, g, r) for v in self.verbs for g in self.api_groups for r in self.resources]


@dataclass(frozen=True)
class Request:
    """The parts of a logged API request that RBAC looks at (simulator's request log)."""

    verb: str
    path: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @classmethod
    def from_log(cls, entry: Mapping[str, Any]) -> Request:
        return cls(
            verb=str(entry.get("verb") or ""), path=str(entry.get("path") or ""),
            group=str(entry.get("group") or ""), resource=str(entry.get("resource") or ""),
            subresource=str(entry.get("subresource") or ""),
            namespace=str(entry.get("namespace") or ""), name=str(entry.get("name") or ""))

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        if not self.is_resource:
            return f"{self.verb} {self.path}"
        where = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.group or 'core'}/{self.full_resource}{where}"


@dataclass
class Policy:
    """The rules bound to one ServiceAccount."""

    service_account: str
    namespace: str
    rules: list[Rule] = field(default_factory=list)

    def allowing(self, request: Request) -> list[Rule]:
        """The rules that allow `request` (empty: it would be Forbidden)."""
        return [rule for rule in self.rules if rule_allows(rule, request)]

    def without(self, rule: Rule) -> Policy:
        """The same policy with one rule removed (to show the proof notices)."""
        return Policy(self.service_account, self.namespace,
                      [r for r in self.rules if r != rule])


def rule_allows(rule: Rule, request: Request) -> bool:
    """kube-apiserver's RuleAllows, minus wildcards (refused when loading)."""
    if request.verb not in rule.verbs:
        return False
    if not request.is_resource:
        return request.path in rule.non_resource_urls
    if rule.namespace and request.namespace != rule.namespace:
        return False
    if request.group not in rule.api_groups:
        return False
    if request.full_resource not in rule.resources:
        return False
    if rule.resource_names:
        # As upstream: a named rule cannot allow list/watch/create/deletecollection of
        # the collection (no name in the request).
        return bool(request.name) and request.name in rule.resource_names
    return True


def load_documents(directory: Path) -> list[dict[str, Any]]:
    """Every YAML document of every *.yaml file in `directory`, in file order."""
    documents: list[dict[str, Any]] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RbacManifestError(f"no *.yaml manifests in {directory}")
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            if not isinstance(document, dict) or "kind" not in document:
                raise RbacManifestError(f"{path.name}: a document without a kind")
            documents.append(document)
    return documents


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RbacManifestError(f"{what} must be a list of strings, not {value!r}")
    if any("*" in v for v in value):
        raise RbacManifestError(f"{what} holds a wildcard: {value!r} (name every item)")
    return tuple(value)


def _rules_of(role: Mapping[str, Any], scope: str) -> list[Rule]:
    name = str(role["metadata"]["name"])
    rules: list[Rule] = []
    for index, raw in enumerate(role.get("rules") or []):
        where = f"{role['kind']} {name} rule {index}"
        verbs = _strings(raw.get("verbs"), f"{where} verbs")
        if not verbs:
            raise RbacManifestError(f"{where} has no verbs")
        urls = _strings(raw.get("nonResourceURLs"), f"{where} nonResourceURLs")
        groups = _strings(raw.get("apiGroups"), f"{where} apiGroups")
        resources = _strings(raw.get("resources"), f"{where} resources")
        if urls and (groups or resources):
            raise RbacManifestError(f"{where} mixes nonResourceURLs with resources")
        if urls and role["kind"] != "ClusterRole":
            raise RbacManifestError(f"{where}: nonResourceURLs only work in a ClusterRole")
        if not urls and not (raw.get("apiGroups") is not None and resources):
            raise RbacManifestError(f"{where} needs apiGroups and resources")
        rules.append(Rule(
            role=f"{role['kind']}/{name}", index=index, verbs=verbs, api_groups=groups,
            resources=resources,
            resource_names=_strings(raw.get("resourceNames"), f"{where} resourceNames"),
            non_resource_urls=urls, namespace=scope))
    return rules


def policy_for_service_account(
    documents: Iterable[Mapping[str, Any]], service_account: str | None = None
) -> Policy:
    """The rules bound to the one ServiceAccount in `documents` (or the one named)."""
    docs = list(documents)
    for doc in docs:
        if doc["kind"] in ROLE_KINDS | BINDING_KINDS and doc.get("apiVersion") != \
                RBAC_GROUP_VERSION:
            raise RbacManifestError(
                f"{doc['kind']} {doc.get('metadata', {}).get('name')}: apiVersion must be "
                f"{RBAC_GROUP_VERSION}")
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    if service_account is not None:
        accounts = [a for a in accounts if a["metadata"]["name"] == service_account]
    if len(accounts) != 1:
        raise RbacManifestError(f"expected one ServiceAccount, found {len(accounts)}")
    account = accounts[0]["metadata"]
    sa_name, sa_namespace = str(account["name"]), str(account.get("namespace") or "")
    if not sa_namespace:
        raise RbacManifestError(f"ServiceAccount {sa_name} needs a namespace")
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")): d
             for d in docs if d["kind"] in ROLE_KINDS}
    policy = Policy(sa_name, sa_namespace)
    for binding in (d for d in docs if d["kind"] in BINDING_KINDS):
        subjects = binding.get("subjects") or []
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name
                   and s.get("namespace") == sa_namespace for s in subjects):
            continue
        ref = binding["roleRef"]
        binding_ns = str(binding["metadata"].get("namespace") or "")
        if binding["kind"] == "ClusterRoleBinding" and ref["kind"] != "ClusterRole":
            raise RbacManifestError(
                f"ClusterRoleBinding {binding['metadata']['name']} must refer to a ClusterRole")
        if binding["kind"] == "RoleBinding" and not binding_ns:
            raise RbacManifestError(f"RoleBinding {binding['metadata']['name']} needs a namespace")
        role_ns = binding_ns if ref["kind"] == "Role" else ""
        role = roles.get((ref["kind"], ref["name"], role_ns))
        if role is None:
            raise RbacManifestError(
                f"{binding['kind']} {binding['metadata']['name']} refers to a missing "
                f"{ref['kind']} {ref['name']}")
        policy.rules.extend(_rules_of(role, binding_ns))
    if not policy.rules:
        raise RbacManifestError(f"no rule is bound to ServiceAccount {sa_name}")
    return policy


@dataclass
class Verdict:
    """The outcome of checking requests against a policy."""

    denied: list[Request]
    unused: list[tuple[Rule, tuple[str, str, str]]]

    @property
    def proven(self) -> bool:
        return not self.denied and not self.unused

    def explain(self) -> str:
        lines = [f"denied: {text}" for text in dict.fromkeys(r.describe() for r in self.denied)]
        lines += [f"unused: {rule.label} grants {verb} {group or 'core'}/{res}"
                  for rule, (verb, group, res) in self.unused]
        return "\n".join(lines)


def check(policy: Policy, requests: Iterable[Request]) -> Verdict:
    """Every request allowed, and every (verb, group, resource) each rule grants used."""
    denied: list[Request] = []
    used: set[tuple[int, tuple[str, str, str]]] = set()
    seen: set[Request] = set()
    for request in requests:
        if request in seen:
            continue
        seen.add(request)
        allowing = policy.allowing(request)
        if not allowing:
            denied.append(request)
        target = request.full_resource if request.is_resource else request.path
        for rule in allowing:
            used.add((id(rule), (request.verb, request.group, target)))
    unused = [(rule, grant) for rule in policy.rules for grant in rule.grants()
              if (id(rule), grant) not in used]
    return Verdict(denied, unused)
