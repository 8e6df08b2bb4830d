"""Reading the protobuf Namespace that `kubectl create namespace` sends."""

from __future__ import annotations

import pytest

from simulator.errors import ApiError
from simulator.protobuf import MAGIC, decode


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(key: str, value: str) -> bytes:
    return _field(1, key.encode()) + _field(2, value.encode())


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, b"") + _field(4, b"")


def test_a_namespace_with_labels_annotations_and_finalizers() -> None:
    meta = (
        _field(1, b"team-a")
        + _field(2, b"")  # gogo-protobuf writes empty optional strings
        + _field(11, _entry("env", "prod"))
        + _field(11, _entry("tier", "db"))
        + _field(12, _entry("note", "from kubectl"))
    )
    spec = _field(1, b"kubernetes")
    namespace = decode(_envelope("v1", "Namespace", _field(1, meta) + _field(2, spec)))
    assert namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "team-a",
            "labels": {"env": "prod", "tier": "db"},
            "annotations": {"note": "from kubectl"},
        },
        "spec": {"finalizers": ["kubernetes"]},
    }


def test_other_kinds_and_broken_bodies_are_refused() -> None:
    with pytest.raises(ApiError) as other:
        decode(_envelope("v1", "ConfigMap", _field(1, _field(1, b"x"))))
    assert other.value.code == 415
    with pytest.raises(ApiError) as truncated:
        decode(MAGIC + _varint(1 << 3 | 2) + _varint(50) + b"short")
    assert truncated.value.code == 400
    with pytest.raises(ApiError) as no_magic:
        decode(b"{}")
    assert no_magic.value.code == 400
