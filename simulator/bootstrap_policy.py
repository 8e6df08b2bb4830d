"""The ClusterRoles and ClusterRoleBindings every cluster starts with, as kube-apiserver's
`rbac/bootstrap-roles` post-start hook creates them (plugin/pkg/auth/authorizer/rbac/
bootstrappolicy/policy.go): the admin role bound to `system:masters`, and the three roles
bound to every authenticated user so that any client can discover the API (`kubectl`
as a ServiceAccount included) and ask what it may do.

Only the roles a user of this simulator meets are here; the controllers' and nodes' roles
serve components the simulator does not run.
"""

from __future__ import annotations

from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"
_META = {
    "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
}
_PUBLIC_INFO = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
_DISCOVERY = [
    "/livez", "/readyz", "/healthz", "/version", "/version/",
    "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*",
]  # fmt: skip


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, **_META},
        "rules": rules,
    }


def _binding(name: str, groups: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, **_META},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
    }


def bootstrap_documents() -> list[dict[str, Any]]:
    """Fresh copies (the caller may hand them to the write pipeline)."""
    return [
        _cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_role("system:discovery", [{"nonResourceURLs": _DISCOVERY, "verbs": ["get"]}]),
        _cluster_role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        _cluster_role(
            "system:public-info-viewer", [{"nonResourceURLs": _PUBLIC_INFO, "verbs": ["get"]}]
        ),
        _binding("cluster-admin", ["system:masters"]),
        _binding("system:discovery", ["system:authenticated"]),
        _binding("system:basic-user", ["system:authenticated"]),
        _binding("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
    ]
