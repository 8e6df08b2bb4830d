"""The simulator's throw-away TLS identity verifies as a server for 127.0.0.1 and localhost."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Callable

import pytest

from simulator.tls import TlsIdentity, make_identity, make_identity_with_openssl

MAKERS: list[Callable[[], TlsIdentity]] = [make_identity]
if shutil.which("openssl"):
    MAKERS.append(make_identity_with_openssl)


async def _handshake(identity: TlsIdentity, server_name: str, client: ssl.SSLContext) -> bytes:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=identity.server_context())
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=server_name
        )
        writer.write(b"hello\n")
        answer = await reader.readline()
        writer.close()
        return answer
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("make", MAKERS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost"])
async def test_clients_that_trust_the_certificate_verify_the_server(
    make: Callable[[], TlsIdentity], server_name: str
) -> None:
    identity = make()
    assert await _handshake(identity, server_name, identity.client_context()) == b"hello\n"


@pytest.mark.parametrize("make", MAKERS, ids=lambda m: m.__name__)
async def test_clients_that_do_not_trust_it_refuse_it(make: Callable[[], TlsIdentity]) -> None:
    identity, stranger = make(), make()
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(identity, "127.0.0.1", stranger.client_context())
