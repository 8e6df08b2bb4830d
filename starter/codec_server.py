"""Codec server: lets the Temporal UI and CLI show decrypted payloads to key holders.

Implements Temporal's remote codec protocol: `POST /encode` and `POST /decode`
take and return `{"payloads": [...]}` (protobuf JSON, base64 data). The keys are
those of the worker (`VMSNAP_CODEC_KEY` / `VMSNAP_CODEC_KEY_FILE`), so whoever can
call it can read every payload; hence:

- requests must carry exactly the `Authorization` header value in
  `VMSNAP_CODEC_SERVER_AUTH` (the CLI's `--codec-auth`; at least 16 characters), which
  is required, unless it is started with `--insecure-no-auth` bound to a loopback
  address (an operator's own machine);
- it binds to `127.0.0.1` unless told otherwise;
- the `Host` header must name an allowed host (`--allowed-host`; by default the
  loopback names when bound to loopback, and required otherwise), so a web page
  cannot reach it through a name of its own that resolves to this machine (DNS
  rebinding);
- it answers CORS for the UI's origins only.

    VMSNAP_CODEC_SERVER_AUTH="Bearer $(openssl rand -hex 24)" \
      python -m starter.codec_server --port 8081 --cors-origin http://localhost:8233
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from starter.codec import CodecError, CodecSettings, EncryptionCodec

ENV_AUTH = "VMSNAP_CODEC_SERVER_AUTH"
MIN_AUTH_LENGTH = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # many payloads of up to 2 MB each
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(header: str) -> str:
    """The host of a Host header, without its port (`[::1]:8081` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def access_settings(host: str, auth: str | None, insecure: bool,
                    allowed_hosts: Sequence[str]) -> tuple[str | None, list[str]]:
    """The auth value and Host allowlist to serve with; ValueError when unsafe."""
    if insecure and auth:
        raise ValueError(f"--insecure-no-auth and {ENV_AUTH} contradict each other")
    if insecure and not is_loopback(host):
        raise ValueError(f"--insecure-no-auth is only allowed bound to a loopback address, "
                         f"not {host}")
    if not insecure and not auth:
        raise ValueError(f"set {ENV_AUTH} to the Authorization value clients must send "
                         '(e.g. "Bearer $(openssl rand -hex 24)"), or bind to 127.0.0.1 '
                         "with --insecure-no-auth")
    if auth and len(auth) < MIN_AUTH_LENGTH:
        raise ValueError(f"{ENV_AUTH} is shorter than {MIN_AUTH_LENGTH} characters")
    if not allowed_hosts and not is_loopback(host):
        raise ValueError(f"bound to {host}: name the host names clients use with "
                         "--allowed-host (the Host header is checked)")
    return (auth or None), list(allowed_hosts) or list(LOOPBACK_NAMES)


def build_app(
    codec: EncryptionCodec,
    *,
    cors_origins: Iterable[str] = (),
    auth: str | None = None,
    namespaces: Iterable[str] = (),
    allowed_hosts: Iterable[str] = LOOPBACK_NAMES,
) -> web.Application:
    """The codec server as an aiohttp application (tests run it on a real port). `auth`
    None serves without authentication (only `main` decides when that is allowed)."""
    origins = frozenset(cors_origins)
    allowed_namespaces = frozenset(namespaces)
    hosts = frozenset(h.lower().strip("[]") for h in allowed_hosts)
    for origin in origins:
        if origin == "*" or not origin.startswith(("http://", "https://")):
            raise ValueError(
                f"CORS origin {origin!r}: give the Temporal UI's origin, e.g. http://localhost:8233"
            )

    def cors_headers(request: web.Request) -> dict[str, str]:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or origin not in origins:
            return {}
        return {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
            hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",
            hdrs.VARY: "Origin",
        }

    def error(request: web.Request, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=cors_headers(request))

    async def preflight(request: web.Request) -> web.Response:
        # Browsers send no credentials on a preflight: answer it without the auth check.
        headers = cors_headers(request)
        if headers:
            headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST, OPTIONS"
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOWED_HEADERS
            headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "600"
        return web.Response(status=204, headers=headers)

    @web.middleware
    async def known_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        """A Host header not in the allowlist is refused before anything else."""
        if host_name(request.headers.get(hdrs.HOST, "")) not in hosts:
            return web.json_response({"error": "unknown Host"}, status=421)
        return await handler(request)

    def handler(transform: Transform) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            if auth is not None and not hmac.compare_digest(
                request.headers.get(hdrs.AUTHORIZATION, "").encode(), auth.encode()
            ):
                return error(request, 401, "missing or wrong Authorization header")
            namespace = request.headers.get("X-Namespace", "")
            if allowed_namespaces and namespace not in allowed_namespaces:
                return error(request, 403, f"namespace {namespace!r} is not served here")
            try:
                body = await request.read()
                payloads = json_format.Parse(body, Payloads())
            except (json_format.ParseError, UnicodeDecodeError) as problem:
                return error(request, 400, f'body is not {{"payloads": [...]}}: {problem}')
            try:
                result = await transform(list(payloads.payloads))
            except CodecError as problem:
                return error(request, 400, str(problem))
            text = json_format.MessageToJson(Payloads(payloads=result))
            return web.Response(
                text=text, content_type="application/json", headers=cors_headers(request)
            )

        return handle

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[known_host])
    app.router.add_post("/encode", handler(codec.encode))
    app.router.add_post("/decode", handler(codec.decode))
    app.router.add_route("OPTIONS", "/encode", preflight)
    app.router.add_route("OPTIONS", "/decode", preflight)
    app.router.add_get("/health", health)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; print the bound address first (`--port 0` picks one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    shown_host = f"[{host}]" if ":" in host else host
    print(f"codec server listening on http://{shown_host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(OSError):
            sock.close()


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m starter.codec_server",
        description="Temporal codec server for vmsnap's encrypted payloads.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081; 0 = any)")
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="origin of a Temporal UI allowed to call (repeatable), e.g. http://localhost:8233",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="serve only these namespaces (X-Namespace header; repeatable; default: all)",
    )
    parser.add_argument(
        "--key-file", help="codec key file (overrides VMSNAP_CODEC_KEY / VMSNAP_CODEC_KEY_FILE)"
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="a host name clients reach it by (Host header; repeatable; default: the "
        "loopback names, when bound to loopback)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help=f"serve without {ENV_AUTH} (only bound to a loopback address)",
    )
    args = parser.parse_args(argv)
    try:
        settings = (
            CodecSettings(key_file=args.key_file) if args.key_file else CodecSettings.from_env(env)
        )
        if settings is None:
            raise CodecError("no codec key: set VMSNAP_CODEC_KEY or VMSNAP_CODEC_KEY_FILE")
        codec = EncryptionCodec(settings.keyring())
        auth, hosts = access_settings(args.host, env.get(ENV_AUTH) or None,
                                      args.insecure_no_auth, args.allowed_host)
        app = build_app(
            codec,
            cors_origins=args.cors_origin,
            auth=auth,
            namespaces=args.namespace,
            allowed_hosts=hosts,
        )
        print(
            json.dumps(
                {
                    "current_key_id": codec.keyring.current.key_id,
                    "key_ids": codec.keyring.key_ids,
                    "cors_origins": args.cors_origin,
                    "auth": auth is not None,
                    "allowed_hosts": hosts,
                }
            ),
            flush=True,
        )
        asyncio.run(serve(app, args.host, args.port))
    except (CodecError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except OSError as problem:
        print(f"error: cannot listen on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
