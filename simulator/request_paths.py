"""Naming a request as kube-apiserver's RequestInfoFactory does.

`/apis/kubevirt.io/v1/namespaces/ns/virtualmachines/vm/status` is a
resource request: group `kubevirt.io`, version `v1`, namespace `ns`,
resource `virtualmachines`, name `vm`, subresource `status`; its verb is
the RBAC verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
`delete`, `deletecollection`); a list or watch limited to one name by a
`metadata.name` field selector has that name. Anything else is a
non-resource request, its verb the HTTP method in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping

from simulator.clock import now_micro
from simulator.request_info import RequestInfo

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _selected_name(field_selector: str) -> str:
    """The name a list or watch is limited to by `metadata.name=X` (RequiresExactMatch),
    which kube-apiserver takes as the request's name: RBAC's resourceNames apply to it."""
    for term in field_selector.split(","):
        key, operator, value = term.partition("==") if "==" in term else term.partition("=")
        if operator and not key.endswith("!") and key.strip() == "metadata.name":
            name = value.strip()
            if name and name not in (".", "..") and "/" not in name and "%" not in name:
                return name
            return ""
    return ""


def timestamp() -> str:
    """Now, as the request log writes its instants (RFC 3339, UTC, microseconds)."""
    return now_micro()


def resolve(method: str, path: str, query: Mapping[str, str]) -> tuple[RequestInfo, bool]:
    """(RequestInfo, is_resource_request) for one request."""
    info = RequestInfo(method=method, path=path, verb=method.lower(), time=timestamp())
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return info, False
    if parts[0] == "api":
        if len(parts) < 3:
            return info, False
        info.version, rest = parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return info, False
        info.group, info.version, rest = parts[1], parts[2], parts[3:]
    watch_prefix = False
    if rest and rest[0] == "watch":
        watch_prefix, rest = True, rest[1:]
        if not rest:
            return info, False
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = "/".join(rest[2:])
    if info.resource == "namespaces" and info.name and not info.subresource:
        info.namespace = info.name
    if method == "GET":
        if watch_prefix or _is_true(query.get("watch")):
            info.verb = "watch"
        else:
            info.verb = "get" if info.name else "list"
        if not info.name and info.verb != "get":
            info.name = _selected_name(query.get("fieldSelector", ""))
    elif method == "POST":
        info.verb = "create"
    elif method == "PUT":
        info.verb = "update"
    elif method == "PATCH":
        info.verb = "patch"
    elif method == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    return info, True
