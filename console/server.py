"""`vmsnap console`: the application on uvicorn, at the settings' address."""

from __future__ import annotations

import asyncio

import uvicorn

from console.app import build_app
from console.settings import ConsoleSettings
from starter.sdk import VmsnapClient


def serve(settings: ConsoleSettings, client: VmsnapClient) -> None:
    """Serve until interrupted; one line says where (the demo and the tests wait for it)."""
    config = uvicorn.Config(build_app(settings, client), host=settings.host,
                            port=settings.port, log_level="warning", access_log=False,
                            proxy_headers=False, server_header=False)
    server = uvicorn.Server(config)
    mode = "actions enabled" if settings.allow_actions else "read-only"
    auth = ", ".join(filter(None, [
        "token" if settings.token else None,
        f"trusted header {settings.user_header}" if settings.user_header else None,
    ])) or "no authentication (loopback only)"

    async def main() -> None:
        running = asyncio.create_task(server.serve())
        while not server.started and not running.done():
            await asyncio.sleep(0.05)
        if server.started:
            print(f"vmsnap console listening on {settings.url} ({mode}; {auth}; namespaces: "
                  f"{settings.scope.describe()})", flush=True)
        await running

    asyncio.run(main())
