"""Everything a request handler needs, built once per simulator process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from simulator.discovery import Discovery
from simulator.openapi import OpenApi
from simulator.registry import Registry
from simulator.request_info import RequestInfo
from simulator.request_log import RequestLog
from simulator.store import Store
from simulator.watch import WatchHub
from simulator.writes import Writer

if TYPE_CHECKING:
    from simulator.authentication import Authenticator
    from simulator.authorization import RbacAuthorizer
    from simulator.controllers import Behaviours
    from simulator.faults import FaultInjector


# What the middleware learns about a request, for the handlers.
INFO = web.RequestKey("info", RequestInfo)
IS_RESOURCE = web.RequestKey("is_resource", bool)
LOGGED = web.RequestKey("logged", bool)  # set by a handler that logged the request itself


@dataclass
class SimulatorContext:
    store: Store
    registry: Registry
    writer: Writer
    discovery: Discovery
    openapi: OpenApi
    watches: WatchHub
    requests: RequestLog
    behaviours: Behaviours
    faults: FaultInjector
    token: str  # the admin's (what the written kubeconfig holds)
    authenticator: Authenticator
    # None: every authenticated request is allowed (`--authorization-mode AlwaysAllow`).
    authorizer: RbacAuthorizer | None = None
    server_address: str = ""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Seconds between watch bookmarks when a client allows them.
    bookmark_interval: float = 10.0
