"""What a clone's JSON patches may change, and what no patch may add to a VM.

The worker creates VMs with its own rights, so a patch is a request to write with them:
one that adds a `serviceAccount` volume would hand the caller that account's token, a
`secret` or `configMap` volume the namespace's secrets, a `hostDisk` the node's disk, a
`hooks.kubevirt.io` annotation a sidecar of the caller's choosing in the VM's pod. So
patches may touch only what a copy of a VM legitimately changes: an allowlist of JSON
pointer patterns (`*` matches one segment, a final `**` any number, none included).

- **Allowed** by default (`DEFAULT_ALLOWED`): labels and annotations (of the VM and of
  its template), the run strategy, hostname and subdomain, the firmware's serial and
  UUID, interface MACs, resources, CPU and memory, instance type and preference,
  eviction strategy and termination grace period, and the text of cloud-init user and
  network data. The operator widens the list (`VMSNAP_CLONE_PATCH_ALLOW`).
- **Refused** always, even when a widened list would allow it (`ALWAYS_REFUSED`):
  volumes of kinds that mount cluster credentials or host paths (`serviceAccount`,
  `secret`, `configMap`, `downwardAPI`, `downwardMetrics`, `hostDisk`, `sysprep`),
  cloud-init data taken from a Secret (`userDataSecretRef`, `networkDataSecretRef`),
  `accessCredentials` (SSH keys and passwords from Secrets), annotations of KubeVirt's
  hook sidecars (`hooks.kubevirt.io`) and of any sidecar injector, the pod-level
  annotations of the template under Kubernetes' and CNCF's domains (security profiles,
  network attachments of other namespaces), and vmsnap's own label and annotation keys
  (`vmsnap.io`, `schedule.vmsnap.io/name`).

A value is checked leaf by leaf: `add /metadata/annotations {"hooks.kubevirt.io/x": ..}`
is judged as `/metadata/annotations/hooks.kubevirt.io~1x`. `copy` and `move` are judged
by both ends. A VM that needs a credential volume is edited by someone who may read the
credential, with kubectl, under their own rights.

`added_credentials` is the second line: the VM a clone or restore is about to create,
after filters and patches, compared with the VM it was copied from; any credential
volume, access credential or sidecar annotation the source did not have is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules.validation import is_reserved_key

ENV = "VMSNAP_CLONE_PATCH_ALLOW"
VOLUMES = "/spec/template/spec/volumes"

DEFAULT_ALLOWED: tuple[str, ...] = (
    "/metadata/labels/*",
    "/metadata/annotations/*",
    "/spec/runStrategy",
    "/spec/instancetype/**",
    "/spec/preference/**",
    "/spec/template/metadata/labels/*",
    "/spec/template/metadata/annotations/*",
    "/spec/template/spec/hostname",
    "/spec/template/spec/subdomain",
    "/spec/template/spec/evictionStrategy",
    "/spec/template/spec/terminationGracePeriodSeconds",
    "/spec/template/spec/domain/firmware/serial",
    "/spec/template/spec/domain/firmware/uuid",
    "/spec/template/spec/domain/devices/interfaces/*/macAddress",
    "/spec/template/spec/domain/resources/**",
    "/spec/template/spec/domain/cpu/**",
    "/spec/template/spec/domain/memory/**",
    *(f"{VOLUMES}/*/{source}/{field}"
      for source in ("cloudInitNoCloud", "cloudInitConfigDrive")
      for field in ("userData", "userDataBase64", "networkData", "networkDataBase64")),
)

# Volume kinds that mount cluster credentials or the host into the guest.
CREDENTIAL_VOLUME_KINDS = ("serviceAccount", "secret", "configMap", "downwardAPI",
                           "downwardMetrics", "hostDisk", "sysprep")
CLOUD_INIT_KINDS = ("cloudInitNoCloud", "cloudInitConfigDrive")
SECRET_REFS = ("userDataSecretRef", "networkDataSecretRef")

ALWAYS_REFUSED: tuple[tuple[str, str], ...] = (
    *((f"{VOLUMES}/*/{kind}/**", f"a {kind} volume mounts cluster credentials or host "
       "paths into the guest") for kind in CREDENTIAL_VOLUME_KINDS),
    *((f"{VOLUMES}/*/{kind}/{ref}/**", f"{kind}.{ref} reads cloud-init data from a Secret")
      for kind in CLOUD_INIT_KINDS for ref in SECRET_REFS),
    ("/spec/template/spec/accessCredentials/**",
     "accessCredentials put SSH keys or passwords from Secrets into the guest"),
)
# Maps whose keys are judged by their name (reserved keys, sidecar annotations).
_KEYED_MAPS = ("/metadata/labels/", "/metadata/annotations/",
               "/spec/template/metadata/labels/", "/spec/template/metadata/annotations/")
_POD_SETTING_DOMAINS = ("kubernetes.io", "k8s.io", "cncf.io")
_TEMPLATE_ANNOTATIONS = "/spec/template/metadata/annotations/"
_PATCH_OPS = ("add", "remove", "replace", "move", "copy", "test")


class PatchRefused(ValueError):
    """A patch would change a path outside the policy; the message names the path."""


def is_sidecar_annotation(key: str) -> bool:
    """KubeVirt's hook sidecars (`hooks.kubevirt.io/...`) and any other sidecar injector's
    annotation (`sidecar.istio.io/inject`, ...): they add containers to the VM's pod."""
    prefix = key.rpartition("/")[0].lower()
    return (prefix == "hooks.kubevirt.io" or prefix.endswith(".hooks.kubevirt.io")
            or "sidecar" in key.lower())


def is_pod_setting(key: str) -> bool:
    """A template annotation that configures the VM's pod rather than describing it:
    Kubernetes' and CNCF's domains (AppArmor and seccomp profiles, Multus networks)."""
    domain = key.rpartition("/")[0].lower()
    return any(domain == d or domain.endswith("." + d) for d in _POD_SETTING_DOMAINS)


def pointer_segments(pointer: str) -> list[str]:
    """The escaped segments of a JSON pointer (`/a/b~1c` -> ['a', 'b~1c'])."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchRefused(f"{pointer!r} is not a JSON pointer (it must start with '/')")
    return pointer[1:].split("/")


def unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def matches(pattern: str, pointer: str) -> bool:
    """Whether `pointer` is one `pattern` covers: `*` one segment, a final `**` the rest."""
    wanted, given = pointer_segments(pattern), pointer_segments(pointer)
    if wanted and wanted[-1] == "**":
        head = wanted[:-1]
        return len(given) >= len(head) and all(
            w in ("*", g) for w, g in zip(head, given, strict=False))
    return len(wanted) == len(given) and all(w in ("*", g) for w, g in zip(wanted, given,
                                                                          strict=True))


def leaves(pointer: str, value: Any) -> Iterator[str]:
    """Every pointer a value written at `pointer` sets: objects and lists expanded."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from leaves(f"{pointer}/{escape(str(key))}", item)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(f"{pointer}/{index}", item)
    else:
        yield pointer


def check_pattern(pattern: str) -> str:
    """An allowlist entry: a JSON pointer pattern, `**` only at its end."""
    segments = pattern[1:].split("/") if pattern.startswith("/") else []
    if not segments or "**" in segments[:-1] or any(not s for s in segments):
        raise ValueError(f"{ENV}: {pattern!r} is not a JSON pointer pattern such as "
                         "/spec/template/spec/nodeSelector/* ('**' only at the end)")
    return pattern


@dataclass(frozen=True)
class PatchPolicy:
    """The allowlist of patch paths (the default, widened by the operator)."""

    allowed: tuple[str, ...] = DEFAULT_ALLOWED

    @classmethod
    def widened(cls, text: str | None) -> PatchPolicy:
        """The default allowlist plus the patterns of `VMSNAP_CLONE_PATCH_ALLOW` (comma or
        space separated)."""
        extra = [check_pattern(p) for p in re.split(r"[,\s]+", (text or "").strip()) if p]
        return cls(DEFAULT_ALLOWED + tuple(p for p in extra if p not in DEFAULT_ALLOWED))

    @property
    def extra(self) -> tuple[str, ...]:
        return tuple(p for p in self.allowed if p not in DEFAULT_ALLOWED)

    def refusal(self, pointer: str) -> str | None:
        """Why a patch may not set `pointer`; None when it may."""
        hard = always_refused(pointer)
        if hard is not None:
            return hard
        if any(matches(pattern, pointer) for pattern in self.allowed):
            return None
        return f"not in the patch allowlist (the operator widens it with {ENV})"

    def check(self, operations: Sequence[Mapping[str, Any]]) -> None:
        """Every operation's paths (and its value's leaves) within the policy; else
        PatchRefused naming the path refused and why (what is always refused first)."""
        for index, op in enumerate(operations):
            pointers = operation_pointers(op)
            for pointer, reason in ([(p, always_refused(p)) for p in pointers]
                                    + [(p, self.refusal(p)) for p in pointers]):
                if reason is not None:
                    raise PatchRefused(f"patch operation {index} ({op.get('op')} "
                                       f"{op.get('path')}): {pointer} is refused: {reason}")


def always_refused(pointer: str) -> str | None:
    """Why no policy lets a patch set `pointer` (credentials, sidecars, vmsnap's keys)."""
    for pattern, reason in ALWAYS_REFUSED:
        if matches(pattern, pointer):
            return reason
    for root in _KEYED_MAPS:
        if pointer.startswith(root) and "/" not in pointer[len(root):]:
            key = unescape(pointer[len(root):])
            if is_reserved_key(key):
                return "keys under vmsnap.io are vmsnap's own"
            if "annotations" in root and is_sidecar_annotation(key):
                return "sidecar annotations add containers to the VM's pod"
            if root == _TEMPLATE_ANNOTATIONS and is_pod_setting(key):
                return "this annotation configures the VM's pod (security, networks)"
    return None


def operation_pointers(op: Mapping[str, Any]) -> list[str]:
    """The pointers one operation writes or reads: its path (with its value's leaves for
    add, replace and test) and, for move and copy, its `from`."""
    kind, path = op.get("op"), str(op.get("path", ""))
    valued = kind in ("add", "replace", "test")
    pointers = list(leaves(path, op.get("value"))) if valued else [path]
    if kind in ("move", "copy"):
        pointers.append(str(op.get("from", "")))
    return pointers


def check_patch_syntax(patches: Iterable[str]) -> list[dict[str, Any]]:
    """JSON patch strings (each one operation or a list) as operations: JSON, objects,
    known operations, pointers; PatchRefused otherwise. Paths are the policy's business."""
    operations: list[dict[str, Any]] = []
    for index, text in enumerate(patches):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PatchRefused(f"patch {index} is not JSON: {exc}") from exc
        for op in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(op, dict):
                raise PatchRefused(f"patch {index}: an operation must be an object, not {op!r}")
            if op.get("op") not in _PATCH_OPS:
                raise PatchRefused(f"patch {index}: unknown operation {op.get('op')!r}")
            for field in ("path", "from") if op["op"] in ("move", "copy") else ("path",):
                pointer = op.get(field)
                if not isinstance(pointer, str) or not pointer.startswith("/"):
                    raise PatchRefused(f"patch {index}: {field} {pointer!r} is not a JSON "
                                       "pointer under the VM (e.g. /spec/runStrategy)")
            if op["op"] in ("add", "replace", "test") and "value" not in op:
                raise PatchRefused(f"patch {index}: {op['op']} {op['path']} has no value")
            operations.append(op)
    return operations


# ---- the VM about to be created -------------------------------------------------------------


def credentials_of(vm: Mapping[str, Any]) -> set[str]:
    """What in a VM reaches beyond its disks: credential and host volumes (by kind and
    source), cloud-init Secrets, access credentials, sidecar annotations (VM and pod) and
    the template's pod-level annotations."""
    spec = vm.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    found: set[str] = set()
    for volume in pod_spec.get("volumes") or []:
        if not isinstance(volume, Mapping):
            continue
        for kind in CREDENTIAL_VOLUME_KINDS:
            if kind in volume:
                found.add(f"{kind} volume {_canonical(volume[kind])}")
        for kind in CLOUD_INIT_KINDS:
            source = volume.get(kind)
            if isinstance(source, Mapping):
                for ref in SECRET_REFS:
                    if ref in source:
                        found.add(f"{kind}.{ref} {_canonical(source[ref])}")
    for credential in pod_spec.get("accessCredentials") or []:
        found.add(f"accessCredentials {_canonical(credential)}")
    for where, metadata in (("VM", vm.get("metadata")), ("template", template.get("metadata"))):
        for key, value in ((metadata or {}).get("annotations") or {}).items():
            if is_sidecar_annotation(str(key)) or (where == "template"
                                                   and is_pod_setting(str(key))):
                found.add(f"{where} annotation {key}={value}")
    return found


def added_credentials(source: Mapping[str, Any], created: Mapping[str, Any]) -> list[str]:
    """What `created` reaches that `source` did not (sorted); empty when nothing."""
    return sorted(credentials_of(created) - credentials_of(source))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
