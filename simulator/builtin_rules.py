"""What kube-apiserver's registry strategies do for the built-in kinds we serve.

Defaulting (a PVC gets `volumeMode: Filesystem`, a StorageClass
`reclaimPolicy: Delete`) and the validation that is not in any schema
(a PVC needs an access mode and a storage request; its spec is immutable
once created except for the storage request).
"""

from __future__ import annotations

import json
import re
from typing import Any

FieldErrors = list[tuple[str, str]]

_ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_VOLUME_MODES = ("Filesystem", "Block")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity (`1Gi`, `500M`, `1.5`, 3) as a number; ValueError when malformed."""
    if isinstance(value, bool):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if not _QUANTITY.match(text):
        raise ValueError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    match = re.match(r"^(.*?)([eE][+-]?\d+)$", text)
    if match and match.group(1):
        return float(text)
    suffix = text[-1] if text[-1] in _DECIMAL and not text[-1].isdigit() else ""
    number = text[: -len(suffix)] if suffix else text
    return float(number) * _DECIMAL[suffix]


def default_persistent_volume_claim(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")


def default_storage_class(obj: dict[str, Any]) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def default_namespace(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("finalizers", ["kubernetes"])


def validate_persistent_volume_claim(
    new: dict[str, Any], old: dict[str, Any] | None
) -> FieldErrors:
    spec = new.get("spec")
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    errors: FieldErrors = []
    modes = spec.get("accessModes") or []
    if not modes:
        errors.append(("spec.accessModes", "Required value: at least 1 access mode is required"))
    for mode in modes:
        if mode not in _ACCESS_MODES:
            supported = ", ".join(json.dumps(m) for m in _ACCESS_MODES)
            errors.append(
                (
                    "spec.accessModes",
                    f"Unsupported value: {json.dumps(mode)}: supported values: {supported}",
                )
            )
    if spec.get("volumeMode") not in (None, *_VOLUME_MODES):
        supported = ", ".join(json.dumps(m) for m in _VOLUME_MODES)
        errors.append(
            (
                "spec.volumeMode",
                f"Unsupported value: {json.dumps(spec.get('volumeMode'))}: "
                f"supported values: {supported}",
            )
        )
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        errors.append(("spec.resources[storage]", "Required value"))
    else:
        try:
            if parse_quantity(requests["storage"]) <= 0:
                errors.append(
                    (
                        "spec.resources[storage]",
                        f"Invalid value: {json.dumps(requests['storage'])}: "
                        "must be greater than zero",
                    )
                )
        except ValueError as exc:
            errors.append(
                (
                    "spec.resources[storage]",
                    f"Invalid value: {json.dumps(requests['storage'])}: {exc}",
                )
            )
    for source_field in ("dataSource", "dataSourceRef"):
        source = spec.get(source_field)
        if isinstance(source, dict):
            for required in ("kind", "name"):
                if not source.get(required):
                    errors.append((f"spec.{source_field}.{required}", "Required value"))
    if old is not None:
        errors.extend(_pvc_update_errors(spec, old.get("spec") or {}))
    return errors


def _pvc_update_errors(spec: dict[str, Any], old_spec: dict[str, Any]) -> FieldErrors:
    """A PVC's spec is immutable except the storage request (and binding a volume name)."""
    comparable_new = {
        k: v for k, v in spec.items() if k not in ("resources", "volumeAttributesClassName")
    }
    comparable_old = {
        k: v for k, v in old_spec.items() if k not in ("resources", "volumeAttributesClassName")
    }
    if not old_spec.get("volumeName"):
        comparable_new.pop("volumeName", None)
        comparable_old.pop("volumeName", None)
    errors: FieldErrors = []
    if comparable_new != comparable_old:
        errors.append(
            (
                "spec",
                "Forbidden: spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        )
    new_limits = (spec.get("resources") or {}).get("limits")
    if new_limits != (old_spec.get("resources") or {}).get("limits"):
        errors.append(("spec.resources.limits", "Forbidden: field is immutable"))
    return errors


def validate_storage_class(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    errors: FieldErrors = []
    if not new.get("provisioner"):
        errors.append(("provisioner", "Required value"))
    if new.get("reclaimPolicy") not in (None, "Delete", "Retain"):
        errors.append(
            (
                "reclaimPolicy",
                f"Unsupported value: {json.dumps(new.get('reclaimPolicy'))}: supported values: "
                '"Delete", "Retain"',
            )
        )
    if new.get("volumeBindingMode") not in (None, "Immediate", "WaitForFirstConsumer"):
        errors.append(
            (
                "volumeBindingMode",
                f"Unsupported value: {json.dumps(new.get('volumeBindingMode'))}: supported values: "
                '"Immediate", "WaitForFirstConsumer"',
            )
        )
    if old is not None:
        for immutable in ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"):
            if new.get(immutable) != old.get(immutable):
                errors.append((immutable, f"Forbidden: updates to {immutable} are forbidden."))
    return errors


def _go_bytes(data: Any) -> str:
    """`%#v` of the runtime.RawExtension a ControllerRevision's `data` decodes into."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return "runtime.RawExtension{Raw:[]uint8{" + ", ".join(f"0x{b:x}" for b in raw) + (
        "}, Object:runtime.Object(nil)}"
    )


def validate_pod(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    """The part of ValidatePodCreate (pkg/apis/core/validation) a claim's reader relies on:
    at least one container, each named with an image; volumes named once; a claim
    source names its claim."""
    errors: FieldErrors = []
    spec = new.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        errors.append(("spec.containers", "Required value"))
    for i, container in enumerate(containers):
        if not (container or {}).get("name"):
            errors.append((f"spec.containers[{i}].name", "Required value"))
        if not (container or {}).get("image"):
            errors.append((f"spec.containers[{i}].image", "Required value"))
    seen: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        name = str((volume or {}).get("name") or "")
        if name in seen:
            errors.append((f"spec.volumes[{i}].name", f'Duplicate value: "{name}"'))
        seen.add(name)
    if old is not None and (old.get("spec") or {}).get("volumes") != spec.get("volumes"):
        errors.append(("spec", "Forbidden: pod updates may not change fields other than "
                               "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                               "`spec.activeDeadlineSeconds`, `spec.tolerations` (only "
                               "additions to existing tolerations), "
                               "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 "
                               "if it was previously negative)"))
    return errors


def validate_controller_revision(new: dict[str, Any], old: dict[str, Any] | None) -> FieldErrors:
    """ValidateControllerRevision(Update) of pkg/apis/apps/validation."""
    errors: FieldErrors = []
    if new.get("data") is None:
        errors.append(("data", "Required value: data is mandatory"))
    revision = new.get("revision", 0)
    if isinstance(revision, int) and revision < 0:
        errors.append(
            ("revision", f"Invalid value: {revision}: must be greater than or equal to 0")
        )
    if old is not None and new.get("data") != old.get("data"):
        errors.append(("data", f"Invalid value: {_go_bytes(new.get('data'))}: field is immutable"))
    return errors
