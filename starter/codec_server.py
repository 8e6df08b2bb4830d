"""Codec server: lets the Temporal UI and CLI show decrypted payloads to key holders.

Implements Temporal's remote codec protocol: `POST /encode` and `POST /decode`
take and return `{"payloads": [...]}` (protobuf JSON, base64 data). The UI
calls it from the browser, so it answers CORS for the UI's origin only; when
`VMSNAP_CODEC_SERVER_AUTH` is set, requests must carry exactly that
`Authorization` header value (the CLI's `--codec-auth`). The keys are those of
the worker (`VMSNAP_CODEC_KEY` / `VMSNAP_CODEC_KEY_FILE`), so anyone who can
reach this server can read the payloads: run it where only key holders can.

    python -m starter.codec_server --port 8081 --cors-origin http://localhost:8233
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
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
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # many payloads of up to 2 MB each
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def build_app(
    codec: EncryptionCodec,
    *,
    cors_origins: Iterable[str] = (),
    auth: str | None = None,
    namespaces: Iterable[str] = (),
) -> web.Application:
    """The codec server as an aiohttp application (tests run it on a real port)."""
    origins = frozenset(cors_origins)
    allowed_namespaces = frozenset(namespaces)
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

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
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
    args = parser.parse_args(argv)
    try:
        settings = (
            CodecSettings(key_file=args.key_file) if args.key_file else CodecSettings.from_env(env)
        )
        if settings is None:
            raise CodecError("no codec key: set VMSNAP_CODEC_KEY or VMSNAP_CODEC_KEY_FILE")
        codec = EncryptionCodec(settings.keyring())
        app = build_app(
            codec,
            cors_origins=args.cors_origin,
            auth=env.get(ENV_AUTH) or None,
            namespaces=args.namespace,
        )
        print(
            json.dumps(
                {
                    "current_key_id": codec.keyring.current.key_id,
                    "key_ids": codec.keyring.key_ids,
                    "cors_origins": args.cors_origin,
                    "auth": ENV_AUTH in env and bool(env[ENV_AUTH]),
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
