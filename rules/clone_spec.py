"""The VM spec of a clone: a copy of a snapshot's VM that can run beside the original.

Pure functions on plain dicts (no I/O), so every rule is unit-tested and the
clone activity only reads, calls `clone_vm` and creates. The rules follow
KubeVirt's VirtualMachineClone:

- every interface MAC is replaced by `new_mac_addresses[interface]` or cleared
  (two VMs with one MAC break the network); an unknown interface is an error;
- `firmware.serial` is replaced by `new_smbios_serial` or cleared, and
  `firmware.uuid` is cleared: the guest must see a different machine;
- labels and annotations are filtered (`*` wildcard at the end, `!` negation
  at the start, negation wins; no filters keep everything);
- volumes are pointed at the clone's PVCs; DataVolume volumes become plain PVC
  volumes and their templates are dropped (the data comes from the snapshot);
- the user's JSON patches run last, each within the patch policy
  (`rules.patch_policy`: an allowlist of paths; credential volumes, sidecar
  annotations and vmsnap's own keys never);
- `runStrategy` comes from the input (`spec.running` is dropped), and the label
  naming the clone is set after the patches, so no patch removes it.

Bad input raises `CloneSpecError` (a ValueError), a patch outside the policy
`PatchRefused` (a ValueError too), and nothing is changed: the source dict is
never mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch

from rules.patch_policy import PatchPolicy, PatchRefused, check_patch_syntax
from rules.restored_volumes import restored_spec
from rules.validation import check_mac as check_mac

OUR_PREFIX = "vmsnap.io/"
RUN_STRATEGIES = ("Always", "Halted", "Manual", "RerunOnFailure", "Once")


class CloneSpecError(ValueError):
    """The clone's input cannot produce a valid VM (bad filter, patch, MAC or strategy)."""


def filter_matches(key: str, pattern: str) -> bool:
    """Whether `key` matches one filter pattern (without its `!`): exact, or `prefix*`."""
    if pattern.endswith("*"):
        return key.startswith(pattern[:-1])
    return key == pattern


def validate_filters(filters: Sequence[str], what: str) -> None:
    """A filter is non-empty, and `*` may only end it (`!` may only start it)."""
    for raw in filters:
        pattern = raw[1:] if raw.startswith("!") else raw
        if not pattern:
            raise CloneSpecError(f"empty {what} filter {raw!r}")
        if "*" in pattern[:-1] or "!" in pattern:
            raise CloneSpecError(
                f"bad {what} filter {raw!r}: '*' may only end a filter and '!' only start it")


def key_kept(key: str, filters: Sequence[str] | None) -> bool:
    """Kept when no filter is given, or when a positive filter matches and no negation does."""
    if not filters:
        return True
    negative = [f[1:] for f in filters if f.startswith("!")]
    positive = [f for f in filters if not f.startswith("!")]
    if any(filter_matches(key, p) for p in negative):
        return False
    # Only negations: everything else is kept.
    return not positive or any(filter_matches(key, p) for p in positive)


def filter_keys(
    mapping: Mapping[str, str] | None, filters: Sequence[str] | None
) -> dict[str, str]:
    """The entries of `mapping` whose key the filters keep."""
    return {k: v for k, v in (mapping or {}).items() if key_kept(k, filters)}


def parse_patches(patches: Sequence[str]) -> list[dict[str, Any]]:
    """JSON patch strings (each one operation or a list of them) as operations, checked for
    syntax only: JSON, objects, known operations, JSON pointers. Which paths they may
    touch is the patch policy's (`rules.patch_policy`), which `clone_vm` applies."""
    try:
        return check_patch_syntax(patches)
    except PatchRefused as exc:
        raise CloneSpecError(str(exc)) from None


def _template_spec(vm: dict[str, Any]) -> dict[str, Any]:
    spec = vm.setdefault("spec", {})
    template = spec.setdefault("template", {})
    return template.setdefault("spec", {})


def _set_macs(domain_spec: dict[str, Any], new_macs: Mapping[str, str]) -> None:
    interfaces = ((domain_spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []
    known = {i.get("name") for i in interfaces}
    unknown = sorted(set(new_macs) - known)
    if unknown:
        raise CloneSpecError(
            f"new_mac_addresses names interfaces the VM does not have: {', '.join(unknown)} "
            f"(it has {', '.join(sorted(str(k) for k in known)) or 'none'})")
    for interface in interfaces:
        mac = new_macs.get(interface.get("name"))
        if mac:
            interface["macAddress"] = mac
        else:
            interface.pop("macAddress", None)


def _set_firmware(domain_spec: dict[str, Any], serial: str | None) -> None:
    domain = domain_spec.get("domain")
    if domain is None:
        return
    firmware = domain.get("firmware")
    if firmware is None and not serial:
        return
    firmware = domain.setdefault("firmware", {})
    firmware.pop("uuid", None)
    if serial:
        firmware["serial"] = serial
    else:
        firmware.pop("serial", None)


def new_identity(vm: dict[str, Any], new_mac_addresses: Mapping[str, str] | None = None,
                 new_smbios_serial: str | None = None) -> None:
    """A copy's own identity, as KubeVirt's clone gives it: every interface's MAC cleared or
    replaced, the SMBIOS serial cleared or replaced, the firmware UUID cleared (KubeVirt
    derives a new one from the name). Mutates `vm` (callers pass a copy)."""
    domain_spec = _template_spec(vm)
    _set_macs(domain_spec, new_mac_addresses or {})
    _set_firmware(domain_spec, new_smbios_serial)


def _without_our_marks(keys: dict[str, str]) -> dict[str, str]:
    """Drop `vmsnap.io/` labels and annotations: they name operations on the source (a
    restore, an earlier clone, the lock), which a copy did not undergo."""
    return {k: v for k, v in keys.items() if not k.startswith(OUR_PREFIX)}


def clone_vm(
    source_vm: Mapping[str, Any],
    target: str,
    claims: Mapping[str, str],
    *,
    drop: Sequence[str] = (),
    new_mac_addresses: Mapping[str, str] | None = None,
    new_smbios_serial: str | None = None,
    label_filters: Sequence[str] | None = None,
    annotation_filters: Sequence[str] | None = None,
    patches: Sequence[str] = (),
    run_strategy: str = "Halted",
    extra_labels: Mapping[str, str] | None = None,
    policy: PatchPolicy | None = None,
) -> dict[str, Any]:
    """The new VM object named `target`, from `source_vm` (the snapshot's copy or the live
    VM), with volumes pointed at `claims` (volume name -> new PVC name) and `drop`
    left out, as `rules.restored_volumes` points a restored VM's.

    `extra_labels` (which clone made it) are added after filtering and again after the
    patches. `policy` (default: the default allowlist) judges the patches.
    """
    if not target:
        raise CloneSpecError("a clone needs a target VM name")
    if run_strategy not in RUN_STRATEGIES:
        raise CloneSpecError(
            f"run_strategy {run_strategy!r} is not one of {', '.join(RUN_STRATEGIES)}")
    validate_filters(label_filters or [], "label")
    validate_filters(annotation_filters or [], "annotation")
    operations = parse_patches(patches)
    (policy or PatchPolicy()).check(operations)

    source_metadata = source_vm.get("metadata") or {}
    vm: dict[str, Any] = {
        "apiVersion": source_vm.get("apiVersion", "kubevirt.io/v1"),
        "kind": source_vm.get("kind", "VirtualMachine"),
        "metadata": {"name": target},
        "spec": copy.deepcopy(dict(source_vm.get("spec") or {})),
    }
    metadata = vm["metadata"]
    if source_metadata.get("namespace"):
        metadata["namespace"] = source_metadata["namespace"]
    labels = {**_without_our_marks(filter_keys(source_metadata.get("labels"), label_filters)),
              **(extra_labels or {})}
    annotations = _without_our_marks(
        filter_keys(source_metadata.get("annotations"), annotation_filters))
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations

    new_identity(vm, new_mac_addresses, new_smbios_serial)
    vm["spec"] = restored_spec(vm, claims, drop=drop)
    vm["spec"].pop("running", None)
    vm["spec"]["runStrategy"] = run_strategy

    if operations:
        try:
            vm = jsonpatch.JsonPatch(operations).apply(vm)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise CloneSpecError(f"a patch does not apply to the cloned VM: {exc}") from exc
        if extra_labels:
            metadata = vm.setdefault("metadata", {})
            metadata["labels"] = {**(metadata.get("labels") or {}), **extra_labels}
    return vm
