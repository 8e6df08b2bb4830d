"""Errors as virt-api writes them (`k8s.io/apimachinery/pkg/api/errors` on KubeVirt resources)."""

from __future__ import annotations

from simulator.errors import ApiError

_GROUP = "kubevirt.io"


def _details(kind: str, name: str) -> dict[str, str]:
    return {"name": name, "group": _GROUP, "kind": kind}


def not_found(kind: str, name: str) -> ApiError:
    """errors.NewNotFound(v1.Resource(kind), name); `kind` is singular (`virtualmachine`)."""
    return ApiError(404, "NotFound", f'{kind}.{_GROUP} "{name}" not found', _details(kind, name))


def conflict(kind: str, name: str, why: str) -> ApiError:
    """errors.NewConflict(v1.Resource(kind), name, err)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind}.{_GROUP} "{name}": {why}',
        _details(kind, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
