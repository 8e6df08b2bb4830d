"""Assembling and running one simulator: reference, store, kinds, behaviours, HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from simulator.authentication import Authenticator, read_token_file
from simulator.authorization import RbacAuthorizer
from simulator.bootstrap_policy import bootstrap_documents
from simulator.context import SimulatorContext
from simulator.controllers import Behaviours
from simulator.discovery import Discovery
from simulator.faults import FaultInjector
from simulator.kubeconfig import write_kubeconfig
from simulator.listener import DualProtocolListener
from simulator.openapi import OpenApi
from simulator.reference import REPO_ROOT, find_reference_dir, load_reference
from simulator.registry import Registry
from simulator.request_log import RequestLog
from simulator.seeding import (
    DEFAULT_NAMESPACES,
    ensure_namespace,
    load_seed_files,
    seed_documents,
)
from simulator.server import Server
from simulator.store import Store
from simulator.tls import TlsIdentity, make_identity
from simulator.watch import WatchHub
from simulator.writes import Writer

DEFAULT_CRDS_DIR = REPO_ROOT / "deploy" / "crds"


@dataclass
class Options:
    port: int = 0
    kubeconfig: Path | None = None
    seeds: list[Path] = field(default_factory=list)
    host: str = "127.0.0.1"
    token: str = ""
    reference: Path | None = None
    crds: Path | None = None
    # kube-apiserver's --token-auth-file (CSV: token,user,uid[,"group1,group2"]).
    token_auth_file: Path | None = None
    # kube-apiserver's --authorization-mode: AlwaysAllow, or RBAC (enforced).
    authorization_mode: str = "AlwaysAllow"


def build_context(options: Options) -> SimulatorContext:
    """Everything but the seeds and the socket; raises ReferenceError on a bad reference.

    Must run inside the event loop: the behaviours start here, before any object is
    created, so they see every seeded object arrive.
    """
    reference = load_reference(
        find_reference_dir(options.reference), options.crds or DEFAULT_CRDS_DIR
    )
    store = Store()
    registry = Registry(store, reference)
    registry.install()
    writer = Writer(store, registry)
    behaviours = Behaviours(store)
    token = options.token or secrets.token_urlsafe(32)
    tokens = read_token_file(options.token_auth_file) if options.token_auth_file else {}
    ctx = SimulatorContext(
        store=store,
        registry=registry,
        writer=writer,
        discovery=Discovery(registry),
        openapi=OpenApi(registry),
        watches=WatchHub(store),
        requests=RequestLog(),
        behaviours=behaviours,
        faults=FaultInjector(),
        token=token,
        authenticator=Authenticator(token, tokens),
        authorizer=RbacAuthorizer(store) if options.authorization_mode == "RBAC" else None,
    )
    behaviours.start()
    return ctx


class ListenError(RuntimeError):
    """The address cannot be bound (in use, not local, no permission)."""


async def _undo(ctx: SimulatorContext) -> None:
    if ctx.authorizer is not None:
        ctx.authorizer.close()
    await ctx.behaviours.stop()
    ctx.watches.shutdown()
    ctx.registry.close()


async def _seed(ctx: SimulatorContext, seeds: list[Path]) -> None:
    """The namespaces and the RBAC policy every cluster has, then the seed files; on a bad
    seed, undo the start."""
    try:
        for namespace in DEFAULT_NAMESPACES:
            ensure_namespace(ctx.writer, ctx.registry, namespace)
        seed_documents(
            ctx.writer, ctx.registry, [("bootstrap policy", d) for d in bootstrap_documents()]
        )
        load_seed_files(ctx.writer, ctx.registry, seeds)
    except BaseException:
        await _undo(ctx)
        raise


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class RunningSimulator:
    """A started simulator (used by `python -m simulator`); `stop()` ends it cleanly."""

    def __init__(
        self,
        ctx: SimulatorContext,
        runner: web.AppRunner,
        listener: DualProtocolListener,
        address: str,
        tls: TlsIdentity,
    ) -> None:
        self.ctx = ctx
        self.runner = runner
        self.listener = listener
        self.url = f"http://{address}"  # plain HTTP: test helpers, curl, the admin endpoints
        self.https_url = f"https://{address}"  # what the kubeconfig names (kubectl needs TLS)
        self.tls = tls

    async def stop(self) -> None:
        self.ctx.stopping.set()
        self.ctx.watches.end_all()
        with contextlib.suppress(Exception):
            await self.ctx.behaviours.stop()
        await self.listener.stop()
        await self.runner.cleanup()
        self.ctx.watches.shutdown()
        if self.ctx.authorizer is not None:
            self.ctx.authorizer.close()
        self.ctx.registry.close()


async def start(options: Options) -> RunningSimulator:
    ctx = build_context(options)
    await _seed(ctx, options.seeds)
    # Seeded VMs that should run are Running (PVCs bound) before clients are told to come.
    await ctx.behaviours.settle()
    try:
        sock = _listen(options.host, options.port)
    except OSError as exc:
        await _undo(ctx)
        raise ListenError(f"cannot listen on {options.host}:{options.port}: {exc}") from exc
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere: clients on this machine use loopback
    shown_host = f"[{host}]" if ":" in host else host
    address = f"{shown_host}:{port}"
    ctx.server_address = address
    tls = make_identity(host)
    runner = web.AppRunner(
        Server(ctx).app(), handler_cancellation=True, access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    assert runner.server is not None
    listener = DualProtocolListener(sock, runner.server, tls.server_context())
    listener.start()
    if options.kubeconfig is not None:
        write_kubeconfig(options.kubeconfig, f"https://{address}", ctx.token, tls.certificate_pem)
    return RunningSimulator(ctx, runner, listener, address, tls)


async def serve(options: Options) -> int:
    """Run until SIGINT or SIGTERM; 0 on a clean stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = await start(options)
    print(f"simulator listening on {running.url}", flush=True)
    if options.kubeconfig is not None:
        print(f"simulator kubeconfig: {options.kubeconfig}", flush=True)
    await stop.wait()
    print("simulator stopping", file=sys.stderr, flush=True)
    await running.stop()
    return 0
