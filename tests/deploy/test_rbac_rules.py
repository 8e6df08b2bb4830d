"""The RBAC matcher behind the proof, and the shipped manifests' shape (no wildcards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from starter.local_stack import REPO_ROOT
from tests.support.rbac import (
    RbacManifestError,
    Request,
    check,
    load_documents,
    policy_for_service_account,
)

SA = {"apiVersion": "v1", "kind": "ServiceAccount",
      "metadata": {"name": "w", "namespace": "ops"}}


def cluster_role(*rules: dict[str, Any], name: str = "r") -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": list(rules)}


def binding(kind: str = "ClusterRoleBinding", role_kind: str = "ClusterRole",
            namespace: str | None = None, subject: str = "w", role: str = "r") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "b"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": "ops"}]}


def req(verb: str, group: str, resource: str, subresource: str = "", namespace: str = "ns",
        name: str = "x") -> Request:
    return Request(verb=verb, path="/p", group=group, resource=resource,
                   subresource=subresource, namespace=namespace, name=name)


FREEZE = {"apiGroups": ["subresources.kubevirt.io"],
          "resources": ["virtualmachineinstances/freeze"], "verbs": ["update"]}


def test_subresources_are_matched_as_resource_slash_subresource() -> None:
    policy = policy_for_service_account([SA, cluster_role(FREEZE), binding()])
    assert policy.allowing(req("update", "subresources.kubevirt.io", "virtualmachineinstances",
                               "freeze"))
    assert not policy.allowing(req("update", "subresources.kubevirt.io",
                                   "virtualmachineinstances", "unfreeze"))
    assert not policy.allowing(req("update", "subresources.kubevirt.io",
                                   "virtualmachineinstances"))
    assert not policy.allowing(req("update", "kubevirt.io", "virtualmachineinstances", "freeze"))
    assert not policy.allowing(req("patch", "subresources.kubevirt.io",
                                   "virtualmachineinstances", "freeze"))


def test_resource_names_never_allow_a_collection_request() -> None:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"],
            "verbs": ["get", "list"]}
    policy = policy_for_service_account([SA, cluster_role(rule), binding()])
    assert policy.allowing(req("get", "", "configmaps", name="a"))
    assert not policy.allowing(req("get", "", "configmaps", name="b"))
    assert not policy.allowing(req("list", "", "configmaps", name=""))


def test_a_role_binding_grants_only_in_its_namespace() -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    policy = policy_for_service_account(
        [SA, cluster_role(rule), binding("RoleBinding", namespace="team")])
    assert policy.allowing(req("get", "", "pods", namespace="team"))
    assert not policy.allowing(req("get", "", "pods", namespace="other"))


def test_bindings_of_other_subjects_grant_nothing() -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    with pytest.raises(RbacManifestError, match="no rule is bound"):
        policy_for_service_account([SA, cluster_role(rule), binding(subject="someone-else")])


def test_non_resource_urls_match_paths() -> None:
    rule = {"nonResourceURLs": ["/version"], "verbs": ["get"]}
    policy = policy_for_service_account([SA, cluster_role(rule), binding()])
    assert policy.allowing(Request(verb="get", path="/version"))
    assert not policy.allowing(Request(verb="get", path="/apis"))


@pytest.mark.parametrize("field,value", [
    ("verbs", ["*"]), ("resources", ["*"]), ("apiGroups", ["*"]), ("resources", ["pods/*"]),
])
def test_wildcards_are_refused(field: str, value: list[str]) -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], field: value}
    with pytest.raises(RbacManifestError, match="wildcard"):
        policy_for_service_account([SA, cluster_role(rule), binding()])


def test_a_binding_to_a_missing_role_is_an_error() -> None:
    with pytest.raises(RbacManifestError, match="missing ClusterRole nope"):
        policy_for_service_account([SA, cluster_role(FREEZE), binding(role="nope")])


def test_check_reports_denied_requests_and_unused_grants() -> None:
    rule = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"],
            "verbs": ["get", "patch"]}
    policy = policy_for_service_account([SA, cluster_role(rule), binding()])
    verdict = check(policy, [req("get", "kubevirt.io", "virtualmachines"),
                             req("delete", "kubevirt.io", "virtualmachines")])
    assert not verdict.proven
    assert [r.verb for r in verdict.denied] == ["delete"]
    assert [grant for _, grant in verdict.unused] == [("patch", "kubevirt.io", "virtualmachines")]
    assert "denied: delete kubevirt.io/virtualmachines" in verdict.explain()
    assert check(policy, [req("get", "kubevirt.io", "virtualmachines"),
                          req("patch", "kubevirt.io", "virtualmachines")]).proven


def test_the_shipped_manifests_bind_rules_to_the_worker_and_name_everything() -> None:
    policy = policy_for_service_account(load_documents(REPO_ROOT / "deploy" / "rbac"))
    assert policy.service_account == "vmsnap-worker" and policy.namespace == "vmsnap"
    assert policy.rules and all(not rule.namespace for rule in policy.rules)


def test_the_deployment_runs_as_the_bound_service_account() -> None:
    deployment = next(d for d in yaml.safe_load_all(
        (REPO_ROOT / "deploy" / "worker" / "deployment.yaml").read_text())
        if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["metadata"]["namespace"] == "vmsnap"
    assert pod["serviceAccountName"] == "vmsnap-worker"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= container.keys()
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBECONFIG"] == ""  # in-cluster config, not the image's compose default


def test_load_documents_refuses_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(RbacManifestError, match=r"no \*\.yaml"):
        load_documents(tmp_path)
