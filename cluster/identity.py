"""The cluster id this process works for: configured, or read from the cluster itself.

`rules.cluster_identity` says what the id is and why; this reads `kube-system`'s uid
when the operator names no cluster (one request, once per process).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

from cluster.errors import ClusterError, translated_errors
from rules.cluster_identity import ENV, check_cluster_id, derived_cluster_id


class _Requests(Protocol):
    """What reading the id needs of the adapter (`cluster.apis.KubeApis`, which asks this
    module for its own id)."""

    def request_json(self, method: str, path: str) -> Any: ...


def configured_cluster_id(environ: Mapping[str, str] | None = None) -> str | None:
    """`VMSNAP_CLUSTER_ID` when set (checked), else None."""
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    return check_cluster_id(value) if value else None


def resolve_cluster_id(apis: _Requests, environ: Mapping[str, str] | None = None) -> str:
    """The configured id, else the one derived from the kube-system namespace's uid."""
    configured = configured_cluster_id(environ)
    if configured is not None:
        return configured
    try:
        with translated_errors("get Namespace kube-system"):
            namespace = apis.request_json("GET", "/api/v1/namespaces/kube-system")
    except ClusterError as err:
        raise ClusterError(
            f"cannot read the kube-system namespace to derive the cluster id "
            f"({err.message}); set {ENV} to name the cluster", status=err.status,
            reason=err.reason) from err
    return derived_cluster_id(str(((namespace or {}).get("metadata") or {}).get("uid", "")))
