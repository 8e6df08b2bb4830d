"""Who may reach the codec server (auth required unless insecure on loopback, Host
allowlist, loopback by default), and failures sealed like payloads once a codec is on."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from starter.codec import CodecKey, EncryptionCodec, KeyRing, generate_key
from starter.codec_server import access_settings, build_app, host_name, main
from starter.connection import load_connection_settings

KEY = CodecKey("k1", bytes(range(32)))
AUTH = "Bearer 0123456789abcdef0123"
SECRET = "password: hunter2-in-a-failure"


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = build_app(EncryptionCodec(KeyRing([KEY])), auth=AUTH,
                    allowed_hosts=["127.0.0.1", "codec.example.internal"])
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


async def status_of(server: TestServer, host: str | None, auth: str | None = AUTH) -> int:
    headers = {"Content-Type": "application/json"}
    if host is not None:
        headers["Host"] = host
    if auth is not None:
        headers["Authorization"] = auth
    async with aiohttp.ClientSession() as session, session.post(
            server.make_url("/decode"), data='{"payloads": []}', headers=headers) as answer:
        return answer.status


async def test_a_host_not_in_the_allowlist_is_refused(server: TestServer) -> None:
    port = server.port
    assert await status_of(server, f"127.0.0.1:{port}") == 200
    assert await status_of(server, "codec.example.internal") == 200
    assert await status_of(server, f"rebound.attacker.example:{port}") == 421
    assert await status_of(server, f"localhost:{port}") == 421  # not listed here
    assert await status_of(server, f"127.0.0.1:{port}", auth=None) == 401


@pytest.mark.parametrize(("header", "name"), [
    ("localhost:8081", "localhost"), ("[::1]:8081", "::1"), ("::1", "::1"),
    ("Codec.Example:443", "codec.example"), ("127.0.0.1", "127.0.0.1")])
def test_host_names(header: str, name: str) -> None:
    assert host_name(header) == name


def test_auth_is_required_unless_insecure_on_loopback() -> None:
    assert access_settings("127.0.0.1", AUTH, False, []) == (
        AUTH, ["localhost", "127.0.0.1", "::1"])
    assert access_settings("127.0.0.1", None, True, [])[0] is None
    assert access_settings("0.0.0.0", AUTH, False, ["codec.internal"]) == (
        AUTH, ["codec.internal"])
    refusals: list[tuple[str, str | None, bool, str]] = [
        ("127.0.0.1", None, False, "set VMSNAP_CODEC_SERVER_AUTH"),
        ("0.0.0.0", None, True, "only allowed bound to a loopback"),
        ("127.0.0.1", AUTH, True, "contradict"),
        ("127.0.0.1", "Bearer short", False, "shorter than 16"),
        ("0.0.0.0", AUTH, False, "--allowed-host"),
    ]
    for host, auth, insecure, complaint in refusals:
        with pytest.raises(ValueError, match=complaint):
            access_settings(host, auth, insecure, [])


def test_the_process_refuses_to_serve_without_auth(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"VMSNAP_CODEC_KEY": generate_key()}
    assert main(["--port", "0"], env) == 2
    assert "set VMSNAP_CODEC_SERVER_AUTH" in capsys.readouterr().err
    assert main(["--host", "0.0.0.0", "--insecure-no-auth", "--port", "0"], env) == 2
    assert "loopback" in capsys.readouterr().err


def test_env_and_docker_ignore_keep_secrets_out() -> None:
    root = Path(__file__).resolve().parents[2]
    for ignore in (".gitignore", ".dockerignore"):
        assert ".env" in (root / ignore).read_text().split(), ignore


async def test_with_a_codec_failures_are_sealed_too() -> None:
    """A failure's message may echo an input value: with a codec it is encoded, and the
    codec seals it; without one it stays in clear (and the worker says so)."""
    key = base64.b64encode(bytes(range(32))).decode()
    converter = load_connection_settings(env={"VMSNAP_CODEC_KEY": key}).data_converter()
    failure = Failure()
    await converter.encode_failure(ApplicationError(SECRET, type="Probe"), failure)
    assert failure.message == "Encoded failure"
    assert SECRET.encode() not in failure.SerializeToString()
    assert failure.application_failure_info.type == "Probe"
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and decoded.message == SECRET

    plain = load_connection_settings(env={}).data_converter()
    clear = Failure()
    await plain.encode_failure(ApplicationError(SECRET, type="Probe"), clear)
    assert clear.message == SECRET
