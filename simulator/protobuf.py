"""Just enough Kubernetes protobuf to read what kubectl's typed commands send.

`kubectl create namespace` posts a Namespace in Kubernetes' protobuf
encoding (magic `k8s\\0`, a `runtime.Unknown` envelope, then the object),
with no JSON fallback. This decodes that envelope and the fields of a
Namespace (ObjectMeta, spec.finalizers) into the JSON form the rest of the
server works on; any other kind is answered 415, as a server that does not
speak protobuf for it would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.errors import ApiError

MAGIC = b"k8s\x00"

Field = tuple[int, int, Any]  # (number, wire type, value: int or bytes)


class ProtobufError(ValueError):
    """The bytes are not valid protobuf."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(data: bytes) -> list[Field]:
    """The (number, wire type, value) triples of one message, in order."""
    found: list[Field] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            found.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated length-delimited field")
            found.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            found.append((number, wire, data[pos : pos + 8]))
            pos += 8
        elif wire == 5:
            found.append((number, wire, data[pos : pos + 4]))
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return found


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8")


def _string_map(entries: list[bytes]) -> dict[str, str]:
    result = {}
    for entry in entries:
        parts = {number: _text(value) for number, _, value in fields(entry)}
        result[parts.get(1, "")] = parts.get(2, "")
    return result


def object_meta(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    labels: list[bytes] = []
    annotations: list[bytes] = []
    finalizers: list[str] = []
    names = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for number, _, value in fields(data):
        if number in names:
            if value:  # gogo-protobuf writes empty optional strings; JSON omits them
                meta[names[number]] = _text(value)
        elif number == 11:
            labels.append(value)
        elif number == 12:
            annotations.append(value)
        elif number == 14:
            finalizers.append(_text(value))
    if labels:
        meta["labels"] = _string_map(labels)
    if annotations:
        meta["annotations"] = _string_map(annotations)
    if finalizers:
        meta["finalizers"] = finalizers
    return meta


def _namespace(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace"}
    for number, _, value in fields(raw):
        if number == 1:
            obj["metadata"] = object_meta(value)
        elif number == 2:
            finalizers = [_text(v) for n, _, v in fields(value) if n == 1]
            obj["spec"] = {"finalizers": finalizers} if finalizers else {}
    return obj


_DECODERS: dict[tuple[str, str], Callable[[bytes], dict[str, Any]]] = {
    ("v1", "Namespace"): _namespace,
}


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded object as JSON; 415 for kinds this module does not read."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s magic prefix")
    try:
        envelope = fields(body[len(MAGIC) :])
        type_meta: dict[str, str] = {}
        raw = b""
        for number, _, value in envelope:
            if number == 1:
                parts = {n: _text(v) for n, _, v in fields(value)}
                type_meta = {"apiVersion": parts.get(1, ""), "kind": parts.get(2, "")}
            elif number == 2:
                raw = bytes(value)
        decoder = _DECODERS.get((type_meta.get("apiVersion", ""), type_meta.get("kind", "")))
        if decoder is None:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the simulator reads protobuf only for Namespace, not {type_meta or 'this body'}; "
                "send application/json",
            )
        return decoder(raw)
    except (ProtobufError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"cannot decode the protobuf body: {exc}") from exc
