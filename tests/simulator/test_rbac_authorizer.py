"""The simulator's authentication and RBAC authorizer, against upstream's rules.

Rule matching as pkg/apis/rbac/v1/evaluation_helpers.go, rule resolution as
pkg/registry/rbac/validation/rule.go (ClusterRoleBindings, then the RoleBindings of the
request's namespace; ServiceAccount subjects by username), the refusal's Status as
responsewriters.Forbidden and apierrors.NewForbidden write it, and the static token file
as tokenfile.NewCSV reads it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.authentication import (
    Authenticator,
    TokenFileError,
    UserInfo,
    read_token_file,
    service_account_user,
    token_file_line,
)
from simulator.authorization import RbacAuthorizer, forbidden, rule_allows
from simulator.bootstrap_policy import RBAC_GROUP, bootstrap_documents
from simulator.errors import ApiError
from simulator.rbac_rules import (
    default_binding,
    validate_cluster_role,
    validate_cluster_role_binding,
    validate_role,
    validate_role_binding,
)
from simulator.request_info import RequestInfo
from simulator.request_paths import resolve
from simulator.resource_types import ResourceType
from simulator.store import Store
from starter.local_stack import REPO_ROOT

WORKER = service_account_user("vmsnap", "vmsnap-worker")
WORKER_AUTHENTICATED = UserInfo(WORKER.name, "", (*WORKER.groups, "system:authenticated"))


def request(method: str, path: str, **query: str) -> tuple[RequestInfo, bool]:
    return resolve(method, path, query)


def allows(rule: dict[str, Any], method: str, path: str, **query: str) -> bool:
    info, is_resource = request(method, path, **query)
    return rule_allows(rule, info, is_resource)


VMS = "/apis/kubevirt.io/v1/namespaces/demo/virtualmachines"


# ---- RuleAllows ---------------------------------------------------------------------------


def test_verbs_groups_and_resources_match_exactly_or_by_wildcard() -> None:
    exact = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["get"]}
    assert allows(exact, "GET", f"{VMS}/vm")
    assert not allows(exact, "GET", VMS)  # list
    assert not allows(exact, "PATCH", f"{VMS}/vm")
    assert not allows(exact, "GET", VMS.replace("virtualmachines", "virtualmachineinstances"))
    assert not allows(exact, "GET", "/api/v1/namespaces/demo/virtualmachines/vm")  # core group
    every = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    for method, path in [("GET", VMS), ("DELETE", VMS), ("PUT", f"{VMS}/vm/status"),
                         ("GET", "/api/v1/namespaces/x/secrets/s")]:
        assert allows(every, method, path)


def test_a_subresource_needs_its_own_rule_or_a_star_slash_rule() -> None:
    main = {"apiGroups": ["vmsnap.io"], "resources": ["vmsnapsnapshots"], "verbs": ["patch"]}
    status = "/apis/vmsnap.io/v1alpha1/namespaces/demo/vmsnapsnapshots/s/status"
    assert not allows(main, "PATCH", status)
    assert allows({**main, "resources": ["vmsnapsnapshots/status"]}, "PATCH", status)
    assert allows({**main, "resources": ["*/status"]}, "PATCH", status)
    assert not allows({**main, "resources": ["*/scale"]}, "PATCH", status)
    assert not allows({**main, "resources": ["vmsnapsnapshots/status"]}, "PATCH",
                      "/apis/vmsnap.io/v1alpha1/namespaces/demo/vmsnapsnapshots/s")
    freeze = {"apiGroups": ["subresources.kubevirt.io"],
              "resources": ["virtualmachineinstances/freeze"], "verbs": ["update"]}
    assert allows(freeze, "PUT", "/apis/subresources.kubevirt.io/v1/namespaces/demo/"
                                 "virtualmachineinstances/vm/freeze")


def test_resource_names_never_allow_a_request_without_a_name() -> None:
    named = {"apiGroups": [""], "resources": ["persistentvolumeclaims"],
             "resourceNames": ["disk"], "verbs": ["get", "list", "watch", "create", "delete",
                                                 "deletecollection"]}
    pvcs = "/api/v1/namespaces/demo/persistentvolumeclaims"
    assert allows(named, "GET", f"{pvcs}/disk")
    assert allows(named, "DELETE", f"{pvcs}/disk")
    assert not allows(named, "GET", f"{pvcs}/other")
    assert not allows(named, "GET", pvcs)  # list
    assert not allows(named, "GET", pvcs, watch="1")
    assert not allows(named, "POST", pvcs)  # create: the name is in the body, not the URL
    assert not allows(named, "DELETE", pvcs)  # deletecollection
    # A list or watch limited to the name by a field selector carries the name.
    assert allows(named, "GET", pvcs, fieldSelector="metadata.name=disk")
    assert allows(named, "GET", pvcs, watch="true", fieldSelector="metadata.name==disk")
    assert not allows(named, "GET", pvcs, fieldSelector="metadata.name!=disk")


def test_non_resource_urls_match_exactly_or_by_a_trailing_star() -> None:
    discovery = {"nonResourceURLs": ["/api", "/apis/*", "/version"], "verbs": ["get"]}
    assert allows(discovery, "GET", "/api")
    assert allows(discovery, "GET", "/apis/vmsnap.io/v1alpha1")
    assert allows(discovery, "GET", "/apis/")
    assert not allows(discovery, "GET", "/apis")
    assert not allows(discovery, "GET", "/version/")
    assert not allows(discovery, "POST", "/api")  # non-resource verbs: the lower-case method
    assert allows({"nonResourceURLs": ["*"], "verbs": ["*"]}, "PUT", "/sim/faults")
    # A non-resource rule never allows a resource request, nor the reverse.
    assert not allows({"nonResourceURLs": ["*"], "verbs": ["*"]}, "GET", VMS)
    assert not allows({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, "GET", "/api")


# ---- rule resolution ------------------------------------------------------------------------

KINDS = {
    plural: ResourceType(RBAC_GROUP, "v1", plural, plural[:-1], kind, namespaced,
                         path_segment_names=True)
    for plural, kind, namespaced in [
        ("roles", "Role", True), ("clusterroles", "ClusterRole", False),
        ("rolebindings", "RoleBinding", True), ("clusterrolebindings", "ClusterRoleBinding", False),
    ]
}


@pytest.fixture
def store() -> Store:
    store = Store()
    namespaces = ResourceType("", "v1", "namespaces", "namespace", "Namespace", False)
    store.register(namespaces)
    for name in ("demo", "vmsnap"):
        store.create(namespaces, None, {"metadata": {"name": name}})
    for resource in KINDS.values():
        store.register(resource)
    for document in bootstrap_documents():
        add(store, document)
    return store


def add(store: Store, document: dict[str, Any]) -> None:
    plural = document["kind"].lower() + "s"
    store.create(KINDS[plural], document["metadata"].get("namespace"), document)


def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def binding(kind: str, name: str, role: tuple[str, str], *subjects: dict[str, Any],
            namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta, "subjects": list(subjects),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": role[0], "name": role[1]}}


SA = {"kind": "ServiceAccount", "name": "vmsnap-worker", "namespace": "vmsnap"}
READ_VMS = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["get"]}


def decide(store: Store, user: UserInfo, method: str, path: str) -> bool:
    info, is_resource = request(method, path)
    return RbacAuthorizer(store).authorize(user, info, is_resource).allowed


def test_a_cluster_role_binding_grants_everywhere(store: Store) -> None:
    add(store, cluster_role("reader", READ_VMS))
    add(store, binding("ClusterRoleBinding", "reader", ("ClusterRole", "reader"), SA))
    assert decide(store, WORKER_AUTHENTICATED, "GET", f"{VMS}/vm")
    assert decide(store, WORKER_AUTHENTICATED, "GET",
                  "/apis/kubevirt.io/v1/namespaces/other/virtualmachines/vm")
    other = service_account_user("vmsnap", "someone-else")
    assert not decide(store, other, "GET", f"{VMS}/vm")


def test_a_role_binding_grants_its_cluster_role_in_its_namespace_only(store: Store) -> None:
    add(store, cluster_role("reader", READ_VMS))
    # A ServiceAccount subject without a namespace is one of the binding's namespace.
    local = {"kind": "ServiceAccount", "name": "vmsnap-worker"}
    add(store, binding("RoleBinding", "reader", ("ClusterRole", "reader"), SA, namespace="demo"))
    add(store, binding("RoleBinding", "reader", ("ClusterRole", "reader"), local,
                       namespace="vmsnap"))
    assert decide(store, WORKER_AUTHENTICATED, "GET", f"{VMS}/vm")
    assert decide(store, WORKER_AUTHENTICATED, "GET",
                  "/apis/kubevirt.io/v1/namespaces/vmsnap/virtualmachines/vm")
    assert not decide(store, WORKER_AUTHENTICATED, "GET",
                      "/apis/kubevirt.io/v1/namespaces/other/virtualmachines/vm")
    assert not decide(store, WORKER_AUTHENTICATED, "GET", "/apis/kubevirt.io/v1/virtualmachines")


def test_roles_users_and_groups(store: Store) -> None:
    add(store, {"kind": "Role", "metadata": {"name": "reader", "namespace": "demo"},
                "rules": [READ_VMS]})
    add(store, binding("RoleBinding", "alice", ("Role", "reader"),
                       {"kind": "User", "name": "alice", "apiGroup": RBAC_GROUP},
                       namespace="demo"))
    add(store, binding("RoleBinding", "team", ("Role", "reader"),
                       {"kind": "Group", "name": "team", "apiGroup": RBAC_GROUP},
                       namespace="demo"))
    assert decide(store, UserInfo("alice"), "GET", f"{VMS}/vm")
    assert decide(store, UserInfo("bob", "", ("team",)), "GET", f"{VMS}/vm")
    assert not decide(store, UserInfo("bob"), "GET", f"{VMS}/vm")


def test_the_bootstrap_policy_lets_every_authenticated_user_discover(store: Store) -> None:
    for path in ["/api", "/api/v1", "/apis", "/apis/vmsnap.io/v1alpha1", "/version",
                 "/openapi/v3", "/openapi/v3/apis/kubevirt.io/v1", "/healthz"]:
        assert decide(store, WORKER_AUTHENTICATED, "GET", path), path
    assert not decide(store, WORKER, "GET", "/api")  # not authenticated: no group
    assert not decide(store, WORKER_AUTHENTICATED, "GET", "/sim/requests")
    assert not decide(store, WORKER_AUTHENTICATED, "GET", "/api/v1/namespaces")


def test_system_masters_pass_without_any_binding() -> None:
    admin = UserInfo("admin", "", ("system:masters", "system:authenticated"))
    assert decide(Store(), admin, "DELETE", "/api/v1/namespaces/demo")
    assert decide(Store(), admin, "PUT", "/sim/faults")


def test_a_change_to_the_policy_counts_at_once(store: Store) -> None:
    authorizer = RbacAuthorizer(store)
    info, _ = request("GET", f"{VMS}/vm")
    assert not authorizer.authorize(WORKER_AUTHENTICATED, info, True).allowed
    add(store, cluster_role("reader", READ_VMS))
    add(store, binding("ClusterRoleBinding", "reader", ("ClusterRole", "reader"), SA))
    assert authorizer.authorize(WORKER_AUTHENTICATED, info, True).allowed
    authorizer.close()


def test_a_binding_to_a_missing_role_is_the_refusals_reason(store: Store) -> None:
    add(store, binding("ClusterRoleBinding", "gone", ("ClusterRole", "gone"), SA))
    info, is_resource = request("GET", f"{VMS}/vm")
    decision = RbacAuthorizer(store).authorize(WORKER_AUTHENTICATED, info, is_resource)
    assert not decision.allowed
    assert decision.reason == f'RBAC: clusterrole.{RBAC_GROUP} "gone" not found'
    message = forbidden(WORKER, info, is_resource, decision.reason).message
    assert message.endswith(f'in the namespace "demo": RBAC: clusterrole.{RBAC_GROUP} '
                            '"gone" not found')


# ---- the refusal ----------------------------------------------------------------------------


def refusal(method: str, path: str, **query: str) -> dict[str, Any]:
    info, is_resource = request(method, path, **query)
    return forbidden(WORKER, info, is_resource, "").status()


def test_the_forbidden_status_of_a_named_namespaced_request() -> None:
    assert refusal("GET", "/apis/vmsnap.io/v1alpha1/namespaces/demo/virtualmachinerestores/x") \
        == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'virtualmachinerestores.vmsnap.io "x" is forbidden: User '
                   '"system:serviceaccount:vmsnap:vmsnap-worker" cannot get resource '
                   '"virtualmachinerestores" in API group "vmsnap.io" in the namespace "demo"',
        "reason": "Forbidden",
        "details": {"name": "x", "group": "vmsnap.io", "kind": "virtualmachinerestores"},
        "code": 403,
    }


def test_the_forbidden_wording_by_scope_group_subresource_and_path() -> None:
    user = '"system:serviceaccount:vmsnap:vmsnap-worker"'
    listed = refusal("GET", "/api/v1/persistentvolumeclaims")
    assert listed["message"] == (f"persistentvolumeclaims is forbidden: User {user} cannot "
                                 'list resource "persistentvolumeclaims" in API group "" at the '
                                 "cluster scope")
    assert listed["details"] == {"kind": "persistentvolumeclaims"}
    watched = refusal("GET", "/apis/kubevirt.io/v1/namespaces/demo/virtualmachines", watch="1")
    assert watched["message"].startswith("virtualmachines.kubevirt.io is forbidden: User "
                                         f'{user} cannot watch resource "virtualmachines"')
    status = refusal("PATCH", "/apis/vmsnap.io/v1alpha1/namespaces/demo/vmsnapclones/c/status")
    assert status["message"] == (f'vmsnapclones.vmsnap.io "c" is forbidden: User {user} cannot '
                                 'patch resource "vmsnapclones/status" in API group "vmsnap.io" '
                                 'in the namespace "demo"')
    path = refusal("GET", "/sim/requests")
    assert path["message"] == f'forbidden: User {user} cannot get path "/sim/requests"'
    assert path["details"] == {}


# ---- authentication -------------------------------------------------------------------------


def test_the_token_file_as_kube_apiserver_reads_it(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(
        token_file_line("t1", WORKER)
        + "t2,alice,1001\n"
        + ',nobody,1002,"g"\n'  # an empty token is skipped
        + 't3,bob,1003,"a,b"\n'
    )
    read = read_token_file(tokens)
    assert read == {"t1": WORKER, "t2": UserInfo("alice", "1001"),
                    "t3": UserInfo("bob", "1003", ("a", "b"))}
    assert WORKER.groups == ("system:serviceaccounts", "system:serviceaccounts:vmsnap")
    tokens.write_text("t1,alice\n")
    with pytest.raises(TokenFileError, match="must have at least 3 columns"):
        read_token_file(tokens)
    with pytest.raises(TokenFileError):
        read_token_file(tmp_path / "missing.csv")


def test_tokens_map_to_users_and_unknown_ones_are_401() -> None:
    authenticator = Authenticator("admin-token", {"sa-token": WORKER})
    admin = authenticator.authenticate("Bearer admin-token")
    assert admin == UserInfo("admin", "", ("system:masters", "system:authenticated"))
    assert authenticator.authenticate("bearer sa-token") == WORKER_AUTHENTICATED
    for header in ["", "Bearer", "Bearer other", "Basic sa-token"]:
        with pytest.raises(ApiError) as refused:
            authenticator.authenticate(header)
        assert refused.value.status() == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_a_bad_token_file_stops_the_start_with_a_message(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("only,two\n")
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--kubeconfig", str(tmp_path / "kubeconfig"),
         "--token-auth-file", str(tokens), "--authorization-mode", "RBAC"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 2
    assert "must have at least 3 columns (token, user name, user uid), found 2" in done.stderr
    assert not (tmp_path / "kubeconfig").exists()


# ---- the RBAC kinds' strategies -------------------------------------------------------------


def test_bindings_are_defaulted_and_validated_as_upstream() -> None:
    body: dict[str, Any] = {
        "roleRef": {"kind": "ClusterRole", "name": "reader"},
        "subjects": [{"kind": "User", "name": "alice"},
                     {"kind": "ServiceAccount", "name": "worker"}],
    }
    default_binding(body)
    assert body["roleRef"]["apiGroup"] == RBAC_GROUP
    assert body["subjects"][0]["apiGroup"] == RBAC_GROUP
    assert "apiGroup" not in body["subjects"][1]
    assert validate_role_binding(body, None) == []
    # Cluster-wide, a ServiceAccount needs its namespace; and a Role cannot be bound.
    cluster = {**body, "roleRef": {**body["roleRef"], "kind": "Role"}}
    assert validate_cluster_role_binding(cluster, None) == [
        ("roleRef.kind", 'Unsupported value: "Role": supported values: "ClusterRole"'),
        ("subjects[1].namespace", "Required value"),
    ]
    changed = {**body, "roleRef": {**body["roleRef"], "name": "writer"}}
    assert validate_role_binding(changed, body) == [("roleRef", (
        'Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", '
        'Name:"writer"}: cannot change roleRef'))]


def test_role_rules_are_validated_as_upstream() -> None:
    assert validate_role({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]}, None) == [
        ("rules[0].nonResourceURLs",
         'Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs')]
    assert validate_cluster_role({"rules": [{"verbs": [], "resources": ["a", "b"],
                                             "resourceNames": ["n"]}]}, None) == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[0].apiGroups", "Required value: resource rules must supply at least one api group"),
        ("rules[0].resourceNames",
         "Required value: resource names cannot apply to multiple resources"),
    ]
