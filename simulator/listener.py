"""One port, both HTTPS and plain HTTP, told apart by the first byte a client sends.

The kubeconfig points at `https://` because kubectl only sends a bearer
token over TLS (and real clusters only speak TLS); test helpers, curl and
the admin endpoints may use `http://` on the same port with the same token.
A TLS connection starts with a handshake record (0x16); anything else is
HTTP. The first byte is peeked, not read, so the chosen protocol sees the
whole stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

_TLS_HANDSHAKE = 0x16
_FIRST_BYTE_TIMEOUT = 30.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class DualProtocolListener:
    def __init__(
        self, sock: socket.socket, factory: ProtocolFactory, ssl_context: ssl.SSLContext
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self._accepting: asyncio.Task[None] | None = None
        self._handoffs: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._accepting = asyncio.get_running_loop().create_task(self._accept_forever())

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        for task in list(self._handoffs):
            task.cancel()
        self.sock.close()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = await loop.sock_accept(self.sock)
            except OSError:
                await asyncio.sleep(0.05)  # EMFILE and friends: back off, keep serving
                continue
            task = loop.create_task(self._hand_off(connection))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)

    async def _first_byte(self, connection: socket.socket) -> bytes:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(connection.fileno(), ready)
        try:
            await asyncio.wait_for(readable, _FIRST_BYTE_TIMEOUT)
        finally:
            loop.remove_reader(connection.fileno())
        return connection.recv(1, socket.MSG_PEEK)

    async def _hand_off(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = await self._first_byte(connection)
            if not first:
                connection.close()
                return
            tls = self.ssl_context if first[0] == _TLS_HANDSHAKE else None
            await asyncio.get_running_loop().connect_accepted_socket(
                self.factory, connection, ssl=tls
            )
        except (OSError, TimeoutError, ssl.SSLError):
            connection.close()
        except asyncio.CancelledError:
            connection.close()
            raise
