"""What one API request is about: the unit of the request log, RBAC checks and fault rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class RequestInfo:
    """A request as kube-apiserver's RequestInfo resolver names it.

    `verb` uses Kubernetes' RBAC verbs: get, list, watch, create, update, patch,
    delete, deletecollection (and the HTTP method for non-resource paths).
    """

    method: str
    path: str
    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    user: str = ""  # who made it, as authenticated (empty on the unauthenticated probes)
    status: int = 0
    time: str = ""  # when the request arrived (RFC 3339, microseconds)
    answered: str = ""  # when its answer was ready (a watch: when its stream began)
    # A create's object, named by its body as an audit event's objectRef.name is; empty
    # for every other verb (their name is in the path) and a create that failed.
    created: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
