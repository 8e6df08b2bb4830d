"""Resource requests: get, list, watch, create, update, patch, delete, deletecollection.

Paths follow the Kubernetes REST layout (`/api/v1/...`, `/apis/{g}/{v}/...`,
namespaced or cluster-scoped, the `status` subresource) and KubeVirt's
`subresources.kubevirt.io` group, whose PUTs go to the simulated
controllers (freeze, unfreeze, start, stop, ...).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from typing import Any

from aiohttp import web

from simulator.context import LOGGED, SimulatorContext
from simulator.errors import ApiError, bad_request
from simulator.patches import patch_kind
from simulator.registry import KUBEVIRT_SUBRESOURCES, SUBRESOURCES_GROUP, Kind
from simulator.request_info import RequestInfo
from simulator.request_paths import timestamp
from simulator.responses import (
    encoded_response,
    json_response,
    method_not_allowed,
    not_found_path,
    read_body,
    success_status,
)
from simulator.selectors import field_matcher, label_matcher
from simulator.tables import to_table, wants_table
from simulator.watch import EncodedEvent
from simulator.writes import dry_run, field_validation

_FIELD_TERM = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)")
_MAX_WATCH_SECONDS = 1800.0


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _check_field_selector(kind: Kind, selector: str | None) -> None:
    """Only the fields a real server indexes may be selected on (400 otherwise)."""
    if not selector:
        return
    for term in selector.split(","):
        if not term.strip():
            continue
        match = _FIELD_TERM.match(term)
        if not match:
            raise bad_request(f"invalid field selector: {term.strip()!r}")
        if match.group(1) not in kind.selectable_fields:
            raise bad_request(f"field label not supported: {match.group(1)}")


def _strip_type_meta(kind: Kind, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Built-in list items carry no apiVersion/kind on a real server; custom ones do."""
    if not kind.builtin:
        return items
    for item in items:
        item.pop("apiVersion", None)
        item.pop("kind", None)
    return items


def _encode_continue(namespace: str, name: str, resource_version: str) -> str:
    raw = json.dumps({"rv": resource_version, "after": [namespace, name]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        after = json.loads(raw)["after"]
        return str(after[0]), str(after[1])
    except (binascii.Error, ValueError, KeyError, IndexError, TypeError) as exc:
        raise bad_request("continue key is not valid: illegal base64 data") from exc


def _position(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta.get("name") or "")


class ResourceApi:
    def __init__(self, ctx: SimulatorContext) -> None:
        self.ctx = ctx

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if info.group == SUBRESOURCES_GROUP:
            return await self._kubevirt_subresource(request, info)
        kind = self.ctx.registry.lookup(info.group, info.version, info.resource)
        resource = kind.resource
        namespace: str | None = info.namespace or None
        if resource.key == ("", "namespaces"):
            namespace = None
        elif not resource.namespaced and info.namespace:
            raise not_found_path()
        subresource = info.subresource or None
        if subresource is not None and subresource not in resource.subresources:
            raise not_found_path()
        verb = info.verb
        allowed = ("get", "update", "patch") if subresource else kind.verbs
        if verb not in allowed:
            raise method_not_allowed()
        if resource.namespaced and not info.namespace and resource.key != ("", "namespaces"):
            if info.name:
                raise not_found_path()
            if verb not in ("list", "watch"):
                raise method_not_allowed()
        query = request.query
        if verb == "get":
            obj = self.ctx.store.view(resource, namespace, info.name)  # read only
            if wants_table(request.headers.get("Accept", "")):
                return json_response(
                    to_table(resource, [obj], include_object=query.get("includeObject", "Metadata"))
                )
            return encoded_response(self.ctx.store.encoded(resource, obj, type_meta=True))
        if verb == "list":
            return self._list(request, kind, namespace)
        if verb == "watch":
            return await self._watch(request, info, kind, namespace)
        if verb == "create":
            if info.name:
                raise method_not_allowed()
            body = await read_body(request, required=True)
            result = self.ctx.writer.create(
                kind,
                namespace,
                body,
                validation=field_validation(query.get("fieldValidation")),
                dry_run=dry_run(query.getall("dryRun", [])),
            )
            info.created = result.object.get("metadata", {}).get("name", "")
            return self._written(kind, result.object, 201, result.warnings)
        if verb == "update":
            body = await read_body(request, required=True)
            result = self.ctx.writer.update(
                kind,
                namespace,
                info.name,
                body,
                subresource=subresource,
                validation=field_validation(query.get("fieldValidation")),
                dry_run=dry_run(query.getall("dryRun", [])),
            )
            return self._written(kind, result.object, 200, result.warnings)
        if verb == "patch":
            patch_type = patch_kind(request.headers.get("Content-Type", ""), builtin=kind.builtin)
            body = await read_body(request, required=True)
            result = self.ctx.writer.patch(
                kind,
                namespace,
                info.name,
                patch_type,
                body,
                subresource=subresource,
                validation=field_validation(query.get("fieldValidation")),
                dry_run=dry_run(query.getall("dryRun", [])),
            )
            return self._written(kind, result.object, 200, result.warnings)
        if verb == "delete":
            return await self._delete(request, kind, namespace, info.name)
        return await self._delete_collection(request, kind, namespace)

    def _written(
        self, kind: Kind, obj: dict[str, Any], status: int, warnings: list[str]
    ) -> web.Response:
        """A write's answer: the stored version's JSON, encoded once for it and its watchers."""
        return encoded_response(
            self.ctx.store.encoded(kind.resource, obj, type_meta=True), status, warnings
        )

    # ---- reads ---------------------------------------------------------------------------

    def _list(self, request: web.Request, kind: Kind, namespace: str | None) -> web.Response:
        """The stored objects themselves (never changed here) and their cached JSON."""
        query = request.query
        _check_field_selector(kind, query.get("fieldSelector"))
        items, resource_version = self.ctx.store.list_view(
            kind.resource, namespace, query.get("labelSelector"), query.get("fieldSelector")
        )
        token = query.get("continue")
        if token:
            after = _decode_continue(token)
            items = [item for item in items if _position(item) > after]
        next_token, remaining = "", 0
        limit_text = query.get("limit")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError as exc:
                raise bad_request(f"invalid limit: {limit_text!r}") from exc
            if 0 < limit < len(items):
                remaining = len(items) - limit
                items = items[:limit]
                next_token = _encode_continue(*_position(items[-1]), resource_version)
        if wants_table(request.headers.get("Accept", "")):
            return json_response(
                to_table(
                    kind.resource,
                    items,
                    resource_version=resource_version,
                    include_object=query.get("includeObject", "Metadata"),
                    continue_token=next_token,
                )
            )
        metadata: dict[str, Any] = {"resourceVersion": resource_version}
        if next_token:
            metadata["continue"] = next_token
            metadata["remainingItemCount"] = remaining
        head = json.dumps(
            {"kind": kind.list_kind, "apiVersion": kind.resource.api_version, "metadata": metadata}
        ).encode()
        store, type_meta = self.ctx.store, not kind.builtin
        # Byte for byte what json.dumps of the whole list would give (items last).
        return encoded_response(
            head[:-1]
            + b', "items": ['
            + b", ".join(store.encoded(kind.resource, item, type_meta=type_meta) for item in items)
            + b"]}"
        )

    async def _watch(
        self, request: web.Request, info: RequestInfo, kind: Kind, namespace: str | None
    ) -> web.StreamResponse:
        ctx, query, resource = self.ctx, request.query, kind.resource
        field_selector = query.get("fieldSelector")
        if info.name:
            term = f"metadata.name={info.name}"
            field_selector = f"{field_selector},{term}" if field_selector else term
        _check_field_selector(kind, field_selector)
        labels, fields = label_matcher(query.get("labelSelector")), field_matcher(field_selector)

        def matches(obj: dict[str, Any]) -> bool:
            return labels(obj) and fields(obj)

        timeout = _MAX_WATCH_SECONDS
        if query.get("timeoutSeconds"):
            try:
                timeout = min(float(query["timeoutSeconds"]), _MAX_WATCH_SECONDS)
            except ValueError as exc:
                raise bad_request(f"invalid timeoutSeconds: {query['timeoutSeconds']!r}") from exc
        bookmarks = _is_true(query.get("allowWatchBookmarks"))
        send_initial = _is_true(query.get("sendInitialEvents"))
        table = wants_table(request.headers.get("Accept", ""))
        include_object = query.get("includeObject", "Metadata")
        since_text = query.get("resourceVersion", "")

        # Replay and registration happen with no await in between: no event can slip past.
        replay: list[tuple[str, dict[str, Any]]] = []
        expired: ApiError | None = None
        current: list[dict[str, Any]] | None = None
        if since_text in ("", "0") or send_initial:
            current, _ = ctx.store.list_view(resource, namespace)  # read only
            replay = [("ADDED", obj) for obj in current if matches(obj)]
        else:
            try:
                since = int(since_text)
            except ValueError as exc:
                raise bad_request(f"invalid resourceVersion: {since_text!r}") from exc
            try:
                events = ctx.store.events_since(resource, since)
            except ApiError as exc:
                expired = exc
                events = []
            for event in events:
                obj = event.object
                if namespace and obj.get("metadata", {}).get("namespace") != namespace:
                    continue
                if matches(obj):
                    replay.append((event.type, obj))
        selective = bool(query.get("labelSelector") or field_selector)
        shown: set[tuple[str, str]] = set()
        if selective and not expired:
            if current is None:
                current, _ = ctx.store.list_view(resource, namespace)
            shown = {_position(obj) for obj in current if matches(obj)}
        watcher = (
            None
            if expired
            else ctx.watches.open(
                resource.key, namespace or "", matches, selective=selective, shown=shown
            )
        )

        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            info.status, info.answered = 200, timestamp()  # a watch is answered as it starts
            ctx.requests.append(info)
            request[LOGGED] = True

            def encode(type_: str, obj: dict[str, Any]) -> bytes:
                shown = to_table(resource, [obj], include_object=include_object) if table else obj
                return json.dumps({"type": type_, "object": shown}).encode() + b"\n"

            def bookmark(initial_end: bool = False) -> bytes:
                meta: dict[str, Any] = {"resourceVersion": str(ctx.store.resource_version)}
                if initial_end:
                    meta["annotations"] = {"k8s.io/initial-events-end": "true"}
                body = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
                return json.dumps({"type": "BOOKMARK", "object": body}).encode() + b"\n"

            if expired is not None:
                await response.write(
                    json.dumps({"type": "ERROR", "object": expired.status()}).encode() + b"\n"
                )
                return response
            assert watcher is not None
            if replay:
                await response.write(b"".join(encode(t, o) for t, o in replay))
            if send_initial and bookmarks:
                await response.write(bookmark(initial_end=True))
            deadline = time.monotonic() + timeout
            while not ctx.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, ctx.bookmark_interval) if bookmarks else remaining
                try:
                    first = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        await response.write(bookmark())
                    continue
                batch = [first]
                while not watcher.queue.empty():
                    batch.append(watcher.queue.get_nowait())
                ended = None in batch
                chunk = b"".join(
                    encode(e.type, e.object) if table else e.line
                    for e in batch
                    if isinstance(e, EncodedEvent)
                )
                if chunk:
                    await response.write(chunk)
                if ended:
                    break
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if watcher is not None:
                ctx.watches.close(watcher)
        return response

    # ---- deletes -------------------------------------------------------------------------

    async def _delete_options(self, request: web.Request) -> tuple[dict[str, Any], bool]:
        body = await read_body(request, required=False)
        options: dict[str, Any] = body if isinstance(body, dict) else {}
        query = request.query
        if query.get("propagationPolicy"):
            options["propagationPolicy"] = query["propagationPolicy"]
        if query.get("orphanDependents"):
            options["orphanDependents"] = _is_true(query["orphanDependents"])
        dry_values = list(query.getall("dryRun", [])) + list(options.get("dryRun") or [])
        return options, dry_run(dry_values)

    async def _delete(
        self, request: web.Request, kind: Kind, namespace: str | None, name: str
    ) -> web.Response:
        options, is_dry_run = await self._delete_options(request)
        removed = self.ctx.writer.delete(kind, namespace, name, options=options, dry_run=is_dry_run)
        still_there = self.ctx.store.find(kind.resource, namespace, name)
        if still_there is not None or kind.delete_returns_object or is_dry_run:
            return json_response(still_there or removed)
        return json_response(
            success_status(
                {
                    "name": name,
                    "group": kind.group,
                    "kind": kind.plural,
                    "uid": removed["metadata"].get("uid"),
                }
            )
        )

    async def _delete_collection(
        self, request: web.Request, kind: Kind, namespace: str | None
    ) -> web.Response:
        options, is_dry_run = await self._delete_options(request)
        query = request.query
        _check_field_selector(kind, query.get("fieldSelector"))
        items, _ = self.ctx.store.list(
            kind.resource, namespace, query.get("labelSelector"), query.get("fieldSelector")
        )
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                deleted.append(
                    self.ctx.writer.delete(
                        kind,
                        meta.get("namespace"),
                        meta["name"],
                        options=options,
                        dry_run=is_dry_run,
                    )
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return json_response(
            {
                "kind": kind.list_kind,
                "apiVersion": kind.resource.api_version,
                "metadata": {"resourceVersion": str(self.ctx.store.resource_version)},
                "items": _strip_type_meta(kind, deleted),
            }
        )

    # ---- KubeVirt subresources -----------------------------------------------------------

    async def _kubevirt_subresource(self, request: web.Request, info: RequestInfo) -> web.Response:
        routed = KUBEVIRT_SUBRESOURCES.get(info.resource, ())
        if (
            info.version != "v1"
            or not info.namespace
            or not info.name
            or info.subresource not in routed
        ):
            raise not_found_path()
        if request.method != "PUT":
            raise method_not_allowed()
        body = await read_body(request, required=False)
        result = await self.ctx.behaviours.subresource(
            info.namespace, info.resource, info.name, info.subresource, body
        )
        if result is None:
            return web.Response(status=200)
        return json_response(result)
