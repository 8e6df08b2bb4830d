"""Payload encryption and TLS against the real Temporal dev server.

With the codec on, a workflow carrying a VM spec (a cloud-init password in it)
leaves no clear text in the server's stored history, as seen by the SDK and by
the Temporal CLI without the key; with the key (in-process, or through the
codec server from the Temporal CLI) the spec is there. The TLS part puts a
TLS-terminating proxy (our own certificates) in front of the dev server, which
speaks no TLS, to prove the TLS/mTLS settings really reach the handshake.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.message import Message
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from starter.codec import EncryptionCodec, generate_key
from starter.connection import (
    TemporalUnreachable,
    connect,
    load_connection_settings,
)
from starter.local_stack import (
    REPO_ROOT,
    SEARCH_ATTRIBUTES,
    DevServerProcess,
    ManagedProcess,
    spawn,
    start_dev_server,
    temporal_cli,
)

pytestmark = pytest.mark.e2e

MARKER = "chpasswd: {list: 'root:vmsnap-marker-S3cr3t'}"
CODEC_AUTH = "Bearer e2e-codec-token"


# ---- a tiny workflow of our own: a VM spec in, through an activity, out ---------------


class ProbeSpec(BaseModel):
    vm: str
    cloud_init_user_data: str


class ProbeResult(BaseModel):
    vm: str
    user_data_echo: str


@activity.defn
async def inspect_probe_spec(spec: ProbeSpec) -> ProbeResult:
    return ProbeResult(vm=spec.vm, user_data_echo=spec.cloud_init_user_data)


@workflow.defn
class CodecProbe:
    @workflow.run
    async def run(self, spec: ProbeSpec) -> ProbeResult:
        return await workflow.execute_activity(
            inspect_probe_spec, spec, start_to_close_timeout=dt.timedelta(seconds=30)
        )


# ---- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServerProcess]:
    started = start_dev_server(tmp_path_factory.mktemp("codec-dev-server"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def codec_env(server: DevServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    empty_config = tmp_path_factory.mktemp("codec-config") / "temporal.toml"
    empty_config.touch()
    return {
        "TEMPORAL_ADDRESS": server.address,
        "TEMPORAL_NAMESPACE": server.namespace,
        "TEMPORAL_CONFIG_FILE": str(empty_config),
        "VMSNAP_CODEC_KEY": f"e2e-key:{generate_key()}",
    }


@dataclass
class ProbeRun:
    workflow_id: str
    result: ProbeResult
    codec_client: Client
    plain_client: Client
    codec: EncryptionCodec


@pytest.fixture(scope="module")
async def probe_run(codec_env: dict[str, str]) -> ProbeRun:
    settings = load_connection_settings(env=codec_env)
    codec_client = await connect(settings)
    plain_env = {k: v for k, v in codec_env.items() if not k.startswith("VMSNAP_CODEC")}
    plain_client = await connect(load_connection_settings(env=plain_env))
    codec = codec_client.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec)

    task_queue = f"codec-e2e-{uuid.uuid4().hex[:8]}"
    workflow_id = f"codec-probe-{uuid.uuid4().hex[:8]}"
    async with Worker(
        codec_client,
        task_queue=task_queue,
        workflows=[CodecProbe],
        activities=[inspect_probe_spec],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result = await codec_client.execute_workflow(
            CodecProbe.run,
            ProbeSpec(vm="web-1", cloud_init_user_data=f"#cloud-config\n{MARKER}\n"),
            id=workflow_id,
            task_queue=task_queue,
            memo={"spec-note": MARKER},
        )
    return ProbeRun(workflow_id, result, codec_client, plain_client, codec)


# ---- helpers --------------------------------------------------------------------------


def payloads_in(message: Message) -> list[Payload]:
    """Every Payload anywhere inside a protobuf message (inputs, results, memo, ...)."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            found += payloads_in(value)
        else:  # a repeated field, or a map (memo, header fields) of messages
            for item in value.values() if hasattr(value, "values") else value:
                found += payloads_in(item)
    return found


def json_data_fields(document: Any) -> list[bytes]:
    """The base64 `data` of every payload in a `temporal workflow show -o json` document."""
    found: list[bytes] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "data" and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    found.append(base64.b64decode(value, validate=True))
            else:
                found += json_data_fields(value)
    elif isinstance(document, list):
        for item in document:
            found += json_data_fields(item)
    return found


def workflow_show(
    server: DevServerProcess, workflow_id: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(temporal_cli()),
            "workflow",
            "show",
            "-w",
            workflow_id,
            "-o",
            "json",
            "--address",
            server.address,
            "--namespace",
            server.namespace,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- encryption at rest ---------------------------------------------------------------


async def test_workflow_with_codec_returns_the_spec(probe_run: ProbeRun) -> None:
    assert MARKER in probe_run.result.user_data_echo


async def test_stored_history_has_no_clear_text_without_the_key(probe_run: ProbeRun) -> None:
    history = await probe_run.plain_client.get_workflow_handle(
        probe_run.workflow_id
    ).fetch_history()
    payloads = [p for event in history.events for p in payloads_in(event)]
    # workflow input, memo, activity input, activity result, workflow result
    assert len(payloads) >= 5
    for payload in payloads:
        assert payload.metadata["encoding"] == b"binary/encrypted"
        assert payload.metadata["encryption-key-id"] == b"e2e-key"
    for event in history.events:
        assert MARKER.encode() not in event.SerializeToString()
    assert "vmsnap-marker" not in history.to_json()


async def test_stored_history_decodes_with_the_key(probe_run: ProbeRun) -> None:
    history = await probe_run.plain_client.get_workflow_handle(
        probe_run.workflow_id
    ).fetch_history()
    payloads = [p for event in history.events for p in payloads_in(event)]
    decoded = await probe_run.codec.decode(payloads)
    assert sum(MARKER.encode() in p.data for p in decoded) >= 4
    assert {p.metadata["encoding"] for p in decoded} <= {b"json/plain", b"binary/null"}


async def test_plain_client_cannot_read_the_result(probe_run: ProbeRun) -> None:
    handle = probe_run.plain_client.get_workflow_handle(probe_run.workflow_id)
    with pytest.raises(Exception, match="binary/encrypted"):
        await handle.result()
    typed = probe_run.codec_client.get_workflow_handle_for(CodecProbe.run, probe_run.workflow_id)
    assert await typed.result() == probe_run.result


async def test_temporal_cli_without_codec_sees_no_clear_text(
    server: DevServerProcess, probe_run: ProbeRun
) -> None:
    shown = workflow_show(server, probe_run.workflow_id)
    assert shown.returncode == 0, shown.stderr
    assert "vmsnap-marker" not in shown.stdout
    data = json_data_fields(json.loads(shown.stdout))
    assert data, "no payload data found in the CLI's JSON"
    assert not any(b"vmsnap-marker" in d for d in data)


# ---- the codec server, used by the Temporal CLI -----------------------------------------

_LISTENING = re.compile(r"codec server listening on (http://\S+)")


def start_codec_server(folder: Path, key: str) -> tuple[ManagedProcess, str]:
    """`python -m starter.codec_server --port 0`; returns once it prints its URL."""
    process = spawn(
        "codec-server",
        [
            sys.executable,
            "-m",
            "starter.codec_server",
            "--port",
            "0",
            "--cors-origin",
            "http://localhost:8233",
        ],
        folder / "codec-server.log",
        env={
            "VMSNAP_CODEC_KEY": key,
            "VMSNAP_CODEC_SERVER_AUTH": CODEC_AUTH,
            "PYTHONUNBUFFERED": "1",
        },
    )
    deadline = time.monotonic() + 30
    while not (match := _LISTENING.search(process.log_tail())):
        if not process.running() or time.monotonic() > deadline:
            process.stop()
            pytest.fail(f"codec server did not start:\n{process.log_tail()}")
        time.sleep(0.05)
    return process, match.group(1)


@pytest.fixture(scope="module")
def codec_server(
    codec_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, str]]:
    process, url = start_codec_server(
        tmp_path_factory.mktemp("codec-server"), codec_env["VMSNAP_CODEC_KEY"]
    )
    yield process, url
    process.stop()


def test_temporal_cli_decodes_through_the_codec_server(
    server: DevServerProcess, probe_run: ProbeRun, codec_server: tuple[ManagedProcess, str]
) -> None:
    _, url = codec_server
    shown = workflow_show(
        server, probe_run.workflow_id, "--codec-endpoint", url, "--codec-auth", CODEC_AUTH
    )
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert b"binary/encrypted" not in b"".join(json_data_fields(document))
    assert "YmluYXJ5L2VuY3J5cHRlZA==" not in shown.stdout  # base64 of binary/encrypted
    decoded = [d for d in json_data_fields(document) if MARKER.encode() in d]
    assert len(decoded) >= 4  # input, memo, activity input and result, workflow result


async def test_codec_server_process_refuses_requests_without_auth(
    codec_server: tuple[ManagedProcess, str],
) -> None:
    _, url = codec_server
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/decode", json={"payloads": []}) as response,
    ):
        assert response.status == 401
        async with session.get(f"{url}/health") as health:
            assert health.status == 200


def test_codec_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process, _ = start_codec_server(tmp_path, generate_key())
    try:
        assert process.running()
    finally:
        assert process.stop() == 0


def test_codec_server_without_a_key_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "starter.codec_server", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2
    assert "no codec key: set VMSNAP_CODEC_KEY or VMSNAP_CODEC_KEY_FILE" in done.stderr


# ---- TLS and mTLS through a TLS-terminating proxy ---------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    foreign_client_cert: Path
    foreign_client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server_names: list[str] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _certificate("vmsnap test CA", ca_key, None, ca=True)
    server_key = _key()
    server = _certificate("temporal.test", server_key, (ca, ca_key), server_names=["temporal.test"])
    client_key = _key()
    client = _certificate("vmsnap-worker", client_key, (ca, ca_key), client=True)
    other_key = _key()
    other_ca = _certificate("some other CA", other_key, None, ca=True)
    foreign_key = _key()
    foreign_client = _certificate("intruder", foreign_key, (other_ca, other_key), client=True)
    return Pki(
        ca=_write_cert(ca, folder / "ca.pem"),
        server_cert=_write_cert(server, folder / "server.pem"),
        server_key=_write_key(server_key, folder / "server.key"),
        client_cert=_write_cert(client, folder / "client.pem"),
        client_key=_write_key(client_key, folder / "client.key"),
        other_ca=_write_cert(other_ca, folder / "other-ca.pem"),
        foreign_client_cert=_write_cert(foreign_client, folder / "foreign-client.pem"),
        foreign_client_key=_write_key(foreign_key, folder / "foreign-client.key"),
    )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.fixture(scope="module")
async def mtls_proxy(server: DevServerProcess, pki: Pki) -> AsyncIterator[str]:
    """TLS 1.2+ with ALPN h2, client certificate required, forwarding to the dev server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    upstream_host, upstream_port = server.address.rsplit(":", 1)
    tasks: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(upstream_host, int(upstream_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(relay(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    proxy = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=context)
    port = proxy.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    proxy.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await proxy.wait_closed()


def _tls_env(address: str, config: Path, **tls: str) -> dict[str, str]:
    config.touch()
    return {"TEMPORAL_ADDRESS": address, "TEMPORAL_CONFIG_FILE": str(config), **tls}


async def test_mtls_from_environment_reaches_the_server(
    mtls_proxy: str, pki: Pki, tmp_path: Path
) -> None:
    settings = load_connection_settings(
        env=_tls_env(
            mtls_proxy,
            tmp_path / "temporal.toml",
            TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pki.ca),
            TEMPORAL_TLS_SERVER_NAME="temporal.test",
            TEMPORAL_TLS_CLIENT_CERT_PATH=str(pki.client_cert),
            TEMPORAL_TLS_CLIENT_KEY_PATH=str(pki.client_key),
        )
    )
    client = await connect(settings, timeout=10)
    count = await client.count_workflows()
    assert count.count >= 0


async def test_mtls_from_a_profile_reaches_the_server(
    mtls_proxy: str, pki: Pki, tmp_path: Path
) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        f"""
[profile.selfhosted]
address = "{mtls_proxy}"
namespace = "default"
[profile.selfhosted.tls]
server_name = "temporal.test"
server_ca_cert_path = "{pki.ca}"
client_cert_path = "{pki.client_cert}"
client_key_path = "{pki.client_key}"
"""
    )
    settings = load_connection_settings(
        env={"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "selfhosted"}
    )
    client = await connect(settings, timeout=10)
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no client certificate", "does it require a client certificate?"),
        ("client certificate of another CA", "does it trust the client certificate?"),
        ("untrusted server CA", "server certificate not trusted"),
        ("wrong server name", "not valid for this name"),
        ("plaintext to TLS", "a TLS server reached without TLS?"),
    ],
)
async def test_bad_tls_settings_fail_with_one_line(
    mtls_proxy: str, pki: Pki, tmp_path: Path, case: str, reason: str
) -> None:
    good = {
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
        "TEMPORAL_TLS_SERVER_NAME": "temporal.test",
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key),
    }
    if case == "no client certificate":
        del good["TEMPORAL_TLS_CLIENT_CERT_PATH"], good["TEMPORAL_TLS_CLIENT_KEY_PATH"]
    elif case == "client certificate of another CA":
        good["TEMPORAL_TLS_CLIENT_CERT_PATH"] = str(pki.foreign_client_cert)
        good["TEMPORAL_TLS_CLIENT_KEY_PATH"] = str(pki.foreign_client_key)
    elif case == "untrusted server CA":
        good["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] = str(pki.other_ca)
    elif case == "wrong server name":
        good["TEMPORAL_TLS_SERVER_NAME"] = "not-temporal.test"
    else:
        good = {"TEMPORAL_TLS": "false"}
    settings = load_connection_settings(env=_tls_env(mtls_proxy, tmp_path / "t.toml", **good))
    with pytest.raises(TemporalUnreachable) as caught:
        await connect(settings, timeout=5)
    message = str(caught.value)
    assert message.startswith(f"Temporal unreachable at {mtls_proxy}: ")
    assert reason in message
    assert "\n" not in message


async def test_tls_to_a_plaintext_server_is_named(server: DevServerProcess, tmp_path: Path) -> None:
    settings = load_connection_settings(
        env=_tls_env(server.address, tmp_path / "t.toml", TEMPORAL_TLS="true")
    )
    assert settings.tls is not None
    with pytest.raises(TemporalUnreachable, match="the server does not speak TLS"):
        await connect(settings, timeout=5)


# ---- the compose stack's registration script, run against the dev server -------------


def test_compose_register_script_is_idempotent(server: DevServerProcess, tmp_path: Path) -> None:
    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": f"{temporal_cli().parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TEMPORAL_ADDRESS": server.address,
        "VMSNAP_NAMESPACE": namespace,
        "VMSNAP_RETENTION": "1d",
    }
    script = REPO_ROOT / "deploy" / "compose" / "register-namespace.sh"
    outputs = []
    for _ in range(2):
        run = subprocess.run(
            ["sh", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr
        outputs.append(run.stdout)
    assert f"namespace {namespace} created" in outputs[0]
    assert f"namespace {namespace} exists" in outputs[1]
    assert "search attribute VmName exists" in outputs[1]
    listed = subprocess.run(
        [
            str(temporal_cli()),
            "operator",
            "search-attribute",
            "list",
            "--address",
            server.address,
            "-n",
            namespace,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    custom = json.loads(listed.stdout)["customAttributes"]
    assert {name: custom.get(name) for name in SEARCH_ATTRIBUTES} == {
        name: "INDEXED_VALUE_TYPE_KEYWORD" for name in SEARCH_ATTRIBUTES
    }
