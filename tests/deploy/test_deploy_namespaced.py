"""The namespaced form (starter/namespaced_deploy.py + deploy/components/namespaced): from
one list of namespaces, a Role and a RoleBinding in each, nothing cluster-wide but the
reads of the cluster-scoped kinds, and the worker told the same list."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from starter.local_stack import REPO_ROOT
from starter.namespaced_deploy import CLUSTER_SCOPED, main, write_overlay
from tests.support.rbac import Request, load_documents, policy_for_service_account

DEPLOY = REPO_ROOT / "deploy"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl (with its built-in kustomize) is not installed")

Key = tuple[str, str, str]


def render(directory: Path) -> dict[Key, dict[str, Any]]:
    done = subprocess.run(["kubectl", "kustomize", str(directory)], check=True,
                          capture_output=True, text=True, timeout=60)
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in documents}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[Key, dict[str, Any]]:
    output = tmp_path_factory.mktemp("overlay") / "my-vmsnap"
    assert main(["--namespaces", "team-b,team-a", "--worker-namespace", "backup",
                 "--output", str(output)]) == 0
    return render(output)


def test_each_served_namespace_gets_a_role_and_its_binding(
    rendered: dict[Key, dict[str, Any]],
) -> None:
    roles = {ns for kind, ns, name in rendered if kind == "Role" and name == "vmsnap-worker"}
    bindings = {ns for kind, ns, _ in rendered if kind == "RoleBinding"}
    assert roles == bindings == {"team-a", "team-b"}
    for namespace in roles:
        binding = rendered["RoleBinding", namespace, "vmsnap-worker"]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "vmsnap-worker"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vmsnap-worker",
                                        "namespace": "backup"}]


def test_the_rules_are_the_cluster_roles_split_by_scope(
    rendered: dict[Key, dict[str, Any]],
) -> None:
    [cluster_role] = [d for d in load_documents(DEPLOY / "rbac") if d["kind"] == "ClusterRole"]
    everything = grants(cluster_role["rules"])
    role = grants(rendered["Role", "team-a", "vmsnap-worker"]["rules"])
    reads = grants(rendered["ClusterRole", "", "vmsnap-worker-cluster-reads"]["rules"])
    assert role | reads == everything and not role & reads
    assert {(g, r) for g, r, _ in reads} == CLUSTER_SCOPED
    assert {v for _, _, v in reads} <= {"get", "list", "watch"}


def test_nothing_else_is_bound_cluster_wide(rendered: dict[Key, dict[str, Any]]) -> None:
    assert [k for k in rendered if k[0] in ("ClusterRole", "ClusterRoleBinding")] == [
        ("ClusterRole", "", "vmsnap-worker-cluster-reads"),
        ("ClusterRoleBinding", "", "vmsnap-worker-cluster-reads")]
    policy = policy_for_service_account(rendered.values())
    assert (policy.service_account, policy.namespace) == ("vmsnap-worker", "backup")
    write_vm = Request(verb="create", path="/p", group="kubevirt.io",
                       resource="virtualmachines", namespace="kube-system", name="x")
    assert not policy.allowing(write_vm)
    assert policy.allowing(Request(verb="create", path="/p", group="kubevirt.io",
                                   resource="virtualmachines", namespace="team-a", name="x"))


def test_the_worker_serves_the_same_list(rendered: dict[Key, dict[str, Any]]) -> None:
    data = rendered["ConfigMap", "backup", "vmsnap-worker"]["data"]
    assert data["VMSNAP_NAMESPACES"] == "team-a,team-b"
    assert data["VMSNAP_TASK_QUEUE"] == "vmsnap"  # merged into the base's ConfigMap
    [container] = rendered["Deployment", "backup", "vmsnap-worker"]["spec"]["template"][
        "spec"]["containers"]
    assert {"configMapRef": {"name": "vmsnap-worker"}} in container["envFrom"]


@pytest.mark.parametrize("namespaces", ["*", "", "Team-A", "a.b"])
def test_a_bad_list_is_refused(tmp_path: Path, namespaces: str) -> None:
    with pytest.raises(ValueError):
        write_overlay(tmp_path, namespaces.split(","))
