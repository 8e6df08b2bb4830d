"""AES-GCM payload codec: round trip, metadata, key rotation, wrong keys; and the
codec server's HTTP protocol, served in-process on a real port."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from starter.codec import (
    CodecDecryptError,
    CodecKey,
    CodecKeyError,
    CodecSettings,
    EncryptionCodec,
    KeyRing,
    codec_from_env,
    fingerprint,
    generate_key,
    parse_key,
    parse_keys,
)
from starter.codec_server import build_app

MARKER = b"cloud-init-password: hunter2-vmsnap-marker"
OLD = CodecKey("2025-01", bytes(range(32)))
NEW = CodecKey("2026-06", bytes(range(100, 132)))


def plain(data: bytes = b'{"user_data": "' + MARKER + b'"}') -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def codec(*keys: CodecKey) -> EncryptionCodec:
    return EncryptionCodec(KeyRing(list(keys)))


# ---- the codec ------------------------------------------------------------------------


async def test_round_trip_restores_the_payload_exactly() -> None:
    original = [plain(), Payload(metadata={"encoding": b"binary/null"}), plain(b"x" * 100_000)]
    sealed = await codec(NEW).encode(original)
    assert len(sealed) == 3
    for payload in sealed:
        assert payload.metadata["encoding"] == b"binary/encrypted"
        assert payload.metadata["encryption-key-id"] == b"2026-06"
        assert set(payload.metadata) == {"encoding", "encryption-key-id"}
        assert MARKER not in payload.data and b"json/plain" not in payload.data
    assert await codec(NEW).decode(sealed) == original


async def test_each_seal_uses_a_fresh_nonce() -> None:
    first, second = await codec(NEW).encode([plain(), plain()])
    assert first.data != second.data
    assert first.data[:12] != second.data[:12]


async def test_rotation_opens_old_payloads_and_seals_with_the_current_key() -> None:
    sealed_by_old = await codec(OLD).encode([plain()])
    rotated = codec(NEW, OLD)
    assert await rotated.decode(sealed_by_old) == [plain()]
    (resealed,) = await rotated.encode([plain()])
    assert resealed.metadata["encryption-key-id"] == b"2026-06"
    with pytest.raises(CodecKeyError) as caught:
        await codec(OLD).decode([resealed])
    assert "codec key id '2026-06'" in str(caught.value)
    assert "(2025-01)" in str(caught.value)


async def test_wrong_key_material_is_a_clear_error() -> None:
    sealed = await codec(OLD).encode([plain()])
    impostor = CodecKey("2025-01", bytes(32))
    with pytest.raises(
        CodecDecryptError, match="cannot decrypt payload with codec key id '2025-01'"
    ):
        await codec(impostor).decode(sealed)


async def test_altered_ciphertext_is_refused() -> None:
    (sealed,) = await codec(NEW).encode([plain()])
    flipped = bytearray(sealed.data)
    flipped[20] ^= 0x01
    altered = Payload(metadata=dict(sealed.metadata), data=bytes(flipped))
    with pytest.raises(CodecDecryptError, match="altered"):
        await codec(NEW).decode([altered])
    truncated = Payload(metadata=dict(sealed.metadata), data=sealed.data[:20])
    with pytest.raises(CodecDecryptError, match="truncated"):
        await codec(NEW).decode([truncated])


async def test_payload_without_key_id_is_refused() -> None:
    (sealed,) = await codec(NEW).encode([plain()])
    anonymous = Payload(metadata={"encoding": b"binary/encrypted"}, data=sealed.data)
    with pytest.raises(CodecDecryptError, match="encryption-key-id"):
        await codec(NEW).decode([anonymous])


async def test_plain_payloads_pass_decode_and_sealed_ones_are_not_sealed_twice() -> None:
    assert await codec(NEW).decode([plain()]) == [plain()]
    sealed = await codec(NEW).encode([plain()])
    assert await codec(NEW).encode(sealed) == sealed


class VmSpec(BaseModel):
    name: str
    user_data: str


async def test_pydantic_converter_with_codec_round_trips_models() -> None:
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=codec(NEW))
    spec = VmSpec(name="web-1", user_data=MARKER.decode())
    (payload,) = await converter.encode([spec])
    assert MARKER not in payload.data
    assert await converter.decode([payload], [VmSpec]) == [spec]


# ---- keys -----------------------------------------------------------------------------


def test_key_material_in_hex_base64_and_urlsafe_base64() -> None:
    material = bytes(range(200, 232))
    standard = base64.b64encode(material).decode()
    urlsafe = base64.urlsafe_b64encode(material).decode().rstrip("=")
    for text in (material.hex(), material.hex().upper(), standard, urlsafe):
        assert parse_key(text).material == material
    assert parse_key(f"ops-2026:{standard}") == CodecKey("ops-2026", material)


def test_default_key_id_is_a_stable_fingerprint() -> None:
    key = parse_key(OLD.material.hex())
    assert key.key_id == fingerprint(OLD.material) == parse_key(OLD.material.hex()).key_id
    assert key.key_id != fingerprint(NEW.material)
    assert OLD.material.hex()[:8] not in key.key_id


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (base64.b64encode(bytes(16)).decode(), "16 bytes; AES-256 needs 32"),
        ("ab" * 31, "decodes to 46 bytes; AES-256 needs 32"),  # 62 hex digits read as base64
        ("not a key!", "neither 64 hex digits nor base64"),
        ("bad id:" + bytes(32).hex(), "key id 'bad id' is invalid"),
    ],
)
def test_bad_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(CodecKeyError, match=message):
        parse_key(text)


def test_key_lists_skip_comments_and_first_key_is_current() -> None:
    text = f"""
    # current key first
    {NEW.key_id}:{NEW.material.hex()}
    {OLD.key_id}:{base64.b64encode(OLD.material).decode()}  # kept to read old histories
    """
    ring = KeyRing(parse_keys(text))
    assert ring.current == NEW
    assert ring.key_ids == ["2026-06", "2025-01"]
    assert parse_keys(f"{NEW.key_id}:{NEW.material.hex()},{OLD.material.hex()}")[1].material == (
        OLD.material
    )


def test_conflicting_key_ids_are_refused() -> None:
    with pytest.raises(CodecKeyError, match="given twice"):
        KeyRing([OLD, CodecKey(OLD.key_id, NEW.material)])
    assert KeyRing([OLD, OLD]).key_ids == [OLD.key_id]


def test_key_material_never_shows_in_reprs() -> None:
    assert OLD.material.hex() not in repr(OLD)
    assert str(OLD.material) not in repr(KeyRing([OLD]))


def test_settings_from_environment_and_file(tmp_path: Path) -> None:
    assert CodecSettings.from_env({}) is None
    assert codec_from_env({"VMSNAP_CODEC_KEY": ""}) is None
    from_env = codec_from_env({"VMSNAP_CODEC_KEY": generate_key()})
    assert from_env is not None and len(from_env.keyring.key_ids) == 1
    key_file = tmp_path / "codec.keys"
    key_file.write_text(f"{NEW.key_id}:{NEW.material.hex()}\n{OLD.key_id}:{OLD.material.hex()}\n")
    from_file = codec_from_env({"VMSNAP_CODEC_KEY_FILE": str(key_file)})
    assert from_file is not None and from_file.keyring.current == NEW


def test_settings_errors_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(CodecKeyError, match="exactly one of"):
        codec_from_env({"VMSNAP_CODEC_KEY": generate_key(), "VMSNAP_CODEC_KEY_FILE": "/x"})
    with pytest.raises(CodecKeyError, match="cannot read codec key file"):
        codec_from_env({"VMSNAP_CODEC_KEY_FILE": str(tmp_path / "missing")})
    empty = tmp_path / "empty.keys"
    empty.write_text("# nothing yet\n")
    with pytest.raises(
        CodecKeyError, match=re.escape(f"VMSNAP_CODEC_KEY_FILE {empty}: no codec key")
    ):
        codec_from_env({"VMSNAP_CODEC_KEY_FILE": str(empty)})


# ---- the codec server over HTTP -------------------------------------------------------

UI = "http://localhost:8233"
AUTH = "Bearer codec-test-token"


def payload_json(payload: Payload) -> dict[str, object]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def payload_from_json(item: dict[str, object]) -> Payload:
    metadata = item.get("metadata", {})
    assert isinstance(metadata, dict)
    return Payload(
        metadata={k: base64.b64decode(v) for k, v in metadata.items()},
        data=base64.b64decode(str(item.get("data", ""))),
    )


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app: web.Application = build_app(
        codec(NEW, OLD), cors_origins=[UI], auth=AUTH, namespaces=["default", "vmsnap"]
    )
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


async def post(
    server: TestServer, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object], dict[str, str]]:
    all_headers = {"Authorization": AUTH, "X-Namespace": "default", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.make_url(path),
            data=body if isinstance(body, bytes) else json.dumps(body),
            headers={"Content-Type": "application/json", **all_headers},
        ) as response,
    ):
        return response.status, await response.json(), dict(response.headers)


async def test_server_encodes_and_decodes(server: TestServer) -> None:
    status, encoded, headers = await post(
        server, "/encode", {"payloads": [payload_json(plain())]}, {"Origin": UI}
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == UI
    items = encoded["payloads"]
    assert isinstance(items, list) and len(items) == 1
    sealed = payload_from_json(items[0])
    assert sealed.metadata["encryption-key-id"] == b"2026-06"
    assert MARKER not in sealed.data

    status, decoded, _ = await post(server, "/decode", encoded)
    assert status == 200
    items = decoded["payloads"]
    assert isinstance(items, list)
    assert [payload_from_json(item) for item in items] == [plain()]


async def test_server_decodes_payloads_sealed_by_an_older_key(server: TestServer) -> None:
    (old_sealed,) = await codec(OLD).encode([plain()])
    status, decoded, _ = await post(server, "/decode", {"payloads": [payload_json(old_sealed)]})
    assert status == 200
    items = decoded["payloads"]
    assert isinstance(items, list) and payload_from_json(items[0]) == plain()


async def test_server_answers_the_ui_preflight_without_auth(server: TestServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.options(
            server.make_url("/decode"),
            headers={
                "Origin": UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            },
        ) as response,
    ):
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == UI
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert {"content-type", "x-namespace", "authorization"} <= {
            h.strip() for h in allowed.split(",")
        }


async def test_server_gives_no_cors_grant_to_other_origins(server: TestServer) -> None:
    status, _, headers = await post(
        server, "/decode", {"payloads": []}, {"Origin": "http://evil.example"}
    )
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers


async def test_server_refuses_wrong_or_missing_auth(server: TestServer) -> None:
    status, body, _ = await post(server, "/decode", {"payloads": []}, {"Authorization": "Bearer x"})
    assert (status, body) == (401, {"error": "missing or wrong Authorization header"})
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/encode"), json={"payloads": []}) as response,
    ):
        assert response.status == 401


async def test_server_refuses_other_namespaces(server: TestServer) -> None:
    status, body, _ = await post(server, "/decode", {"payloads": []}, {"X-Namespace": "other"})
    assert status == 403
    assert "namespace 'other'" in str(body["error"])


async def test_server_reports_bad_bodies_and_unknown_keys(server: TestServer) -> None:
    status, body, _ = await post(server, "/decode", b"not json")
    assert status == 400 and "payloads" in str(body["error"])
    (foreign,) = await codec(CodecKey("elsewhere", bytes(32))).encode([plain()])
    status, body, _ = await post(server, "/decode", {"payloads": [payload_json(foreign)]})
    assert status == 400
    assert "codec key id 'elsewhere'" in str(body["error"])


def test_server_refuses_a_wildcard_origin() -> None:
    with pytest.raises(ValueError, match="Temporal UI's origin"):
        build_app(codec(NEW), cors_origins=["*"])
