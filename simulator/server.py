"""The simulator's HTTP server: authentication, routing, the request log, admin endpoints.

One aiohttp application on one event loop with the store and the simulated
controllers. Every request needs a known bearer token (except the health
probes) and, under RBAC enforcement, a role that allows it; resource
requests go through the fault injector next; every request but `/sim/*`
lands in the request log with its status code and user.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable

from aiohttp import web

from simulator.authorization import forbidden
from simulator.context import INFO, IS_RESOURCE, LOGGED, SimulatorContext
from simulator.errors import ApiError
from simulator.request_info import RequestInfo
from simulator.request_paths import resolve, timestamp
from simulator.resource_api import ResourceApi
from simulator.responses import (
    json_response,
    method_not_allowed,
    not_found_path,
    read_body,
    status_response,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
MAX_BODY_BYTES = 3 * 1024 * 1024 + 1024  # etcd's request limit, as a real server enforces


class Server:
    """Routes requests to discovery, OpenAPI, resources and the admin endpoints."""

    def __init__(self, ctx: SimulatorContext) -> None:
        self.ctx = ctx
        self.resources = ResourceApi(ctx)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info, is_resource = resolve(request.method, request.path, request.query)
        request[INFO], request[IS_RESOURCE] = info, is_resource
        admin = request.path == "/sim" or request.path.startswith("/sim/")
        counted = False
        try:
            if request.path not in PUBLIC_PATHS:
                self.authenticate_and_authorize(request, info, is_resource)
            if is_resource:
                injected = await self.ctx.faults.before(info)
                if injected is not None:
                    raise injected
                # Controllers wait while an API call is answered (not a watch: it streams
                # for long; not an injected hold above: that is time the server is idle).
                counted = info.verb != "watch"
                if counted:
                    self.ctx.behaviours.runtime.request_started()
            response = await handler(request)
        except ApiError as exc:
            response = status_response(exc)
        except web.HTTPException as exc:
            response = status_response(ApiError(exc.status, exc.reason, exc.text or exc.reason))
        except (ConnectionResetError, asyncio.CancelledError):
            # The client went away (a timeout of its own, a fault-injected hold): the call
            # still happened, so it is logged, with status 0 for "no answer".
            if not admin and not request.get(LOGGED):
                info.status, info.answered = 0, timestamp()
                self.ctx.requests.append(info)
            raise
        except Exception as exc:  # a simulator bug: answer like a server would, and say so
            traceback.print_exc(file=sys.stderr)
            response = status_response(ApiError(500, "InternalError", f"simulator error: {exc!r}"))
        finally:
            if counted:
                self.ctx.behaviours.runtime.request_finished()
        if not admin and not request.get(LOGGED):
            info.status, info.answered = response.status, timestamp()
            self.ctx.requests.append(info)
        return response

    def authenticate_and_authorize(
        self, request: web.Request, info: RequestInfo, is_resource: bool
    ) -> None:
        """401 for a missing or unknown token; 403 for what the user's roles do not allow
        (the admin endpoints are non-resource paths: only `system:masters` reaches them)."""
        user = self.ctx.authenticator.authenticate(request.headers.get("Authorization", ""))
        info.user = user.name
        if self.ctx.authorizer is not None:
            decision = self.ctx.authorizer.authorize(user, info, is_resource)
            if not decision.allowed:
                raise forbidden(user, info, is_resource, decision.reason)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in PUBLIC_PATHS:
            return web.Response(text="ok")
        if path == "/sim" or path.startswith("/sim/"):
            return await self.admin(request, path)
        if request[IS_RESOURCE]:
            return await self.resources.handle(request, request[INFO])
        if request.method != "GET":
            raise method_not_allowed()
        return self.non_resource(request, path)

    # ---- discovery and OpenAPI -----------------------------------------------------------

    def non_resource(self, request: web.Request, path: str) -> web.StreamResponse:
        discovery = self.ctx.discovery
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return json_response(discovery.version())
        if path == "/api":
            return json_response(discovery.core_versions(self.ctx.server_address))
        if path == "/apis":
            return json_response(discovery.group_list())
        if parts[:1] == ["api"] and len(parts) == 2:
            found = discovery.resource_list("", parts[1])
            if found is not None:
                return json_response(found)
        if parts[:1] == ["apis"] and len(parts) == 2:
            group = discovery.group(parts[1])
            if group is not None:
                return json_response(group)
        if parts[:1] == ["apis"] and len(parts) == 3:
            found = discovery.resource_list(parts[1], parts[2])
            if found is not None:
                return json_response(found)
        if path == "/openapi/v3":
            return json_response(self.ctx.openapi.index())
        if parts[:2] == ["openapi", "v3"] and len(parts) > 2:
            document = self.ctx.openapi.document("/".join(parts[2:]))
            if document is not None:
                return web.Response(body=document, content_type="application/json")
        raise not_found_path()

    # ---- /sim ---------------------------------------------------------------------------

    async def admin(self, request: web.Request, path: str) -> web.StreamResponse:
        ctx, method = self.ctx, request.method
        if path == "/sim/requests":
            if method == "GET":
                since_text = request.query.get("since", "0")
                try:
                    since = int(since_text)
                except ValueError as exc:
                    raise ApiError(
                        400, "BadRequest", f"since must be an integer, not {since_text!r}"
                    ) from exc
                return json_response(
                    {"items": ctx.requests.since(since), "next": ctx.requests.next_index}
                )
            if method == "DELETE":
                ctx.requests.clear()
                return json_response({"next": ctx.requests.next_index})
            raise method_not_allowed()
        if path == "/sim/freeze-log":
            if method != "GET":
                raise method_not_allowed()
            return json_response({"items": ctx.behaviours.freeze_log()})
        if path == "/sim/faults":
            if method == "GET":
                return json_response(ctx.faults.active())
            if method == "PUT":
                spec = await read_body(request, required=True)
                return json_response(ctx.faults.configure(spec))
            if method == "DELETE":
                ctx.faults.clear()
                return json_response(ctx.faults.active())
            raise method_not_allowed()
        if path == "/sim/watches" and method == "GET":
            return json_response({"open": ctx.watches.open_count})
        raise not_found_path()
