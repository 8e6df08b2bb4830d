"""Optional AES-256-GCM payload codec: VM specs (cloud-init user data often holds
passwords) must not sit in clear in Temporal's workflow histories.

Every payload the SDK sends is serialized whole (metadata and data) and sealed
with AES-GCM under the *current* key; the result carries
`encoding: binary/encrypted` and `encryption-key-id: <id>` in its metadata.
Decoding accepts any key of the key ring, so keys can rotate: put the new key
first, keep the old ones after it for as long as histories sealed with them
are kept. The sealed bytes are `nonce (12) || ciphertext || tag (16)`, the
layout of Temporal's own encryption samples, so codec servers written in other
languages can read them.

Keys come from `VMSNAP_CODEC_KEY` or the file named by `VMSNAP_CODEC_KEY_FILE`:
one key per line (or comma-separated in the variable), each `[ID:]KEY` where
KEY is 32 bytes as base64 or hex and ID defaults to a fingerprint of the key.
The first key is the current one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
ENV_KEY = "VMSNAP_CODEC_KEY"
ENV_KEY_FILE = "VMSNAP_CODEC_KEY_FILE"

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


class CodecError(ValueError):
    """Base of the codec's errors; the message is one line an operator can act on."""


class CodecKeyError(CodecError):
    """A key is malformed, missing, or not in the key ring."""


class CodecDecryptError(CodecError):
    """A sealed payload does not open: wrong key material or corrupted data."""


@dataclass(frozen=True)
class CodecKey:
    """One AES-256 key and the id written next to what it seals."""

    key_id: str
    material: bytes

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise CodecKeyError(
                f"codec key {self.key_id!r} is {len(self.material)} bytes; AES-256 needs 32"
            )
        if not _KEY_ID.match(self.key_id):
            raise CodecKeyError(
                f"codec key id {self.key_id!r} is invalid: use 1-64 of A-Z a-z 0-9 . _ -"
            )

    def __repr__(self) -> str:  # never print key material
        return f"CodecKey(key_id={self.key_id!r})"


def fingerprint(material: bytes) -> str:
    """Default key id: stable across processes, reveals nothing usable about the key."""
    return "k" + hashlib.sha256(b"vmsnap-codec-key-id:" + material).hexdigest()[:16]


def decode_key_material(text: str) -> bytes:
    """32 bytes from 64 hex digits or base64 (standard or URL-safe)."""
    text = text.strip()
    if _HEX_KEY.match(text):
        return bytes.fromhex(text)
    try:
        material = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise CodecKeyError(
            "codec key is neither 64 hex digits nor base64 (make one with: openssl rand -base64 32)"
        ) from None
    if len(material) != KEY_BYTES:
        raise CodecKeyError(f"codec key decodes to {len(material)} bytes; AES-256 needs 32")
    return material


def parse_key(spec: str) -> CodecKey:
    """`[ID:]KEY` -> CodecKey. Base64 and hex have no colon, so the split is unambiguous."""
    key_id, sep, encoded = spec.strip().rpartition(":")
    material = decode_key_material(encoded)
    return CodecKey(key_id if sep else fingerprint(material), material)


def parse_keys(text: str) -> list[CodecKey]:
    """Keys from lines or commas; blank lines and `#` comments are skipped."""
    specs: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        specs += [part for part in (p.strip() for p in line.split(",")) if part]
    return [parse_key(spec) for spec in specs]


class KeyRing:
    """The current key (seals) and every key that may still open old payloads."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise CodecKeyError("no codec key given")
        by_id: dict[str, CodecKey] = {}
        for key in keys:
            known = by_id.get(key.key_id)
            if known is not None and known.material != key.material:
                raise CodecKeyError(
                    f"codec key id {key.key_id!r} is given twice with different keys"
                )
            by_id.setdefault(key.key_id, key)
        self.current = keys[0]
        self._by_id = by_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._by_id)

    def get(self, key_id: str) -> CodecKey:
        key = self._by_id.get(key_id)
        if key is None:
            raise CodecKeyError(
                f"payload was encrypted with codec key id {key_id!r}, which is not among the "
                f"configured keys ({', '.join(self.key_ids)}); add that key after the current one"
            )
        return key

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current.key_id!r}, keys={self.key_ids!r})"


class CodecSettings(BaseModel):
    """Where the codec keys come from; exactly one of `key` and `key_file`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: SecretStr | None = None
    key_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CodecSettings | None:
        """`VMSNAP_CODEC_KEY` / `VMSNAP_CODEC_KEY_FILE`; None when neither is set (or empty)."""
        env = os.environ if env is None else env
        key = env.get(ENV_KEY) or None
        key_file = env.get(ENV_KEY_FILE) or None
        if key is None and key_file is None:
            return None
        return cls(
            key=SecretStr(key) if key else None, key_file=Path(key_file) if key_file else None
        )

    def keyring(self) -> KeyRing:
        """Read and check the keys; every problem is a CodecKeyError naming its source."""
        if (self.key is None) == (self.key_file is None):
            raise CodecKeyError(f"set exactly one of {ENV_KEY} and {ENV_KEY_FILE}")
        if self.key is not None:
            source, text = ENV_KEY, self.key.get_secret_value()
        else:
            assert self.key_file is not None
            source = f"{ENV_KEY_FILE} {self.key_file}"
            try:
                text = self.key_file.read_text()
            except OSError as error:
                raise CodecKeyError(
                    f"cannot read codec key file {self.key_file}: {error.strerror or error}"
                ) from None
        try:
            return KeyRing(parse_keys(text))
        except CodecKeyError as error:
            raise CodecKeyError(f"{source}: {error}") from None


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec over a key ring (seal with current, open with any)."""

    def __init__(self, keyring: KeyRing) -> None:
        super().__init__()
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(keyring.get(key_id).material) for key_id in keyring.key_ids}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        if is_encrypted(payload):  # already sealed (e.g. relayed by a codec server): keep as is
            return payload
        key = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key.key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key.key_id.encode()},
            data=nonce + sealed,
        )

    def open(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):  # written before the codec was on, or by a plain client
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        if not key_id:
            raise CodecDecryptError(f"encrypted payload has no {KEY_ID_METADATA} metadata")
        key = self.keyring.get(key_id)
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise CodecDecryptError(f"encrypted payload (key id {key_id!r}) is truncated")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = self._ciphers[key.key_id].decrypt(nonce, sealed, None)
        except InvalidTag:
            raise CodecDecryptError(
                f"cannot decrypt payload with codec key id {key_id!r}: "
                "the key material is wrong or the data was altered"
            ) from None
        return Payload.FromString(plain)


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def codec_from_env(env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    """The codec configured by the environment, or None when encryption is off."""
    settings = CodecSettings.from_env(env)
    return None if settings is None else EncryptionCodec(settings.keyring())


def generate_key() -> str:
    """A fresh random key, base64, for `VMSNAP_CODEC_KEY` or a key file line."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()
