"""JSON answers and request bodies, the way an API server encodes and decodes them."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from simulator import protobuf
from simulator.errors import ApiError, bad_request


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    return encoded_response(json.dumps(body).encode(), status, warnings)


def encoded_response(
    raw: bytes, status: int = 200, warnings: list[str] | None = None
) -> web.Response:
    """An answer whose JSON is already encoded (a stored object's cached bytes)."""
    response = web.Response(body=raw, status=status, content_type="application/json")
    for warning in warnings or []:
        response.headers.add("Warning", f'299 - "{_escape(warning)}"')
    return response


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def status_response(error: ApiError) -> web.Response:
    response = json_response(error.status(), error.code)
    retry_after = (error.details or {}).get("retryAfterSeconds")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def success_status(details: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


async def read_body(request: web.Request, *, required: bool) -> Any:
    """The decoded JSON (or YAML) body; None when empty and not required."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad_request("the body of the request was empty")
        return None
    content_type = (request.content_type or "").lower()
    if "protobuf" in content_type:
        return protobuf.decode(raw)
    if "cbor" in content_type:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")
