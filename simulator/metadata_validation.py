"""ObjectMeta rules every kind shares on a real API server (labels, annotations, owners).

A label value with a colon or 64 characters is refused by a real cluster;
a stand-in that stores it would hide the bug until production.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_PART_RE = re.compile(f"^{_NAME_PART}$")
_LABEL_VALUE_RE = re.compile(rf"^({_NAME_PART})?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ANNOTATIONS_LIMIT = 256 * 1024

FieldErrors = list[tuple[str, str]]


@functools.lru_cache(maxsize=4096)
def _qualified_name_errors(key: str) -> tuple[str, ...]:
    """k8s.io/apimachinery IsQualifiedName, in its own words. Remembered: the same few
    label keys, annotation keys and finalizers come back on every write."""
    errors: list[str] = []
    prefix, slash, name = key.rpartition("/")
    if not slash:
        prefix, name = "", key
    elif not prefix:
        errors.append("prefix part must be non-empty")
    elif len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix):
        errors.append(
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _NAME_PART_RE.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
            f"regex used for validation is '{_NAME_PART}')"
        )
    return tuple(errors)


def _label_value_errors(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ("must be a string",)
    return _label_string_errors(value)


@functools.lru_cache(maxsize=4096)
def _label_string_errors(value: str) -> tuple[str, ...]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
            f"or 'my_value',  or '12345', regex used for validation is '({_NAME_PART})?')"
        )
    return tuple(errors)


def validate_metadata(
    meta: Any, *, namespace_kind: bool = False, base: str = "metadata"
) -> FieldErrors:
    """Errors in `metadata` (labels, annotations, finalizers, ownerReferences)."""
    if not isinstance(meta, dict):
        return [(base, "Invalid value: must be an object")]
    errors: FieldErrors = []
    name = meta.get("name")
    if (
        namespace_kind
        and isinstance(name, str)
        and name
        and (len(name) > 63 or not _DNS_LABEL_RE.match(name))
    ):
        errors.append(
            (
                f"{base}.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                "alphanumeric characters or '-', and must start and end with an alphanumeric "
                "character",
            )
        )
    labels = meta.get("labels") or {}
    if isinstance(labels, dict):
        for key, value in labels.items():
            errors.extend(
                (f"{base}.labels", f"Invalid value: {json.dumps(key)}: {message}")
                for message in _qualified_name_errors(key)
            )
            errors.extend(
                (f"{base}.labels", f"Invalid value: {json.dumps(value)}: {message}")
                for message in _label_value_errors(value)
            )
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict):
        total = 0
        for key, value in annotations.items():
            errors.extend(
                (f"{base}.annotations", f"Invalid value: {json.dumps(key)}: {message}")
                for message in _qualified_name_errors(key.lower())
            )
            total += len(key) + len(value if isinstance(value, str) else json.dumps(value))
        if total > _ANNOTATIONS_LIMIT:
            errors.append(
                (f"{base}.annotations", f"Too long: must have at most {_ANNOTATIONS_LIMIT} bytes")
            )
    finalizers = meta.get("finalizers") or []
    if isinstance(finalizers, list):
        for index, finalizer in enumerate(finalizers):
            if not isinstance(finalizer, str):
                continue
            errors.extend(
                (
                    f"{base}.finalizers[{index}]",
                    f"Invalid value: {json.dumps(finalizer)}: {message}",
                )
                for message in _qualified_name_errors(finalizer)
            )
    errors.extend(_owner_reference_errors(meta.get("ownerReferences"), base))
    return errors


def _owner_reference_errors(refs: Any, base: str) -> FieldErrors:
    if not isinstance(refs, list):
        return []
    errors: FieldErrors = []
    controllers = 0
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        where = f"{base}.ownerReferences"
        if not ref.get("apiVersion"):
            errors.append((f"{where}.apiVersion", 'Invalid value: "": version must not be empty'))
        if not ref.get("kind"):
            errors.append((f"{where}.kind", 'Invalid value: "": kind must not be empty'))
        if not ref.get("name"):
            errors.append((f"{where}.name", 'Invalid value: "": name must not be empty'))
        if not ref.get("uid"):
            errors.append((f"{where}.uid", 'Invalid value: "": uid must not be empty'))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        errors.append(
            (
                f"{base}.ownerReferences",
                "Invalid value: []: Only one reference can have Controller set to true",
            )
        )
    return errors
