"""How a restored or cloned VM's volumes point at the PVCs made for it, as KubeVirt does.

Pure: given the snapshot's copy of the VM and which volumes got a new PVC, it says which
volumes the snapshot left out, names the new PVCs, carries over what the source PVC's
metadata says about its data, and writes the VM spec that uses them:

- a PVC volume points at its new PVC;
- a DataVolume volume whose DataVolume came from the VM's `dataVolumeTemplates` keeps its
  template, renamed to the new PVC: the restored PVC carries CDI's
  `cdi.kubevirt.io/storage.populatedFor` annotation, so the DataVolume the VM makes adopts
  it instead of importing again, and owns it;
- a DataVolume volume without a template becomes a PVC volume;
- a memory-dump volume is not restored;
- a volume the snapshot left out is either dropped (with its disk, and its template), or,
  in place, kept as the VM has it now (`keep`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from rules.naming import MAX_LABEL, bounded

POPULATED_FOR = "cdi.kubevirt.io/storage.populatedFor"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"  # a StorageClass's volumeBindingMode
CONTENT_TYPE = "cdi.kubevirt.io/storage.contentType"
# Annotations that describe the source PVC's own binding and provisioning, not its data:
# a restored PVC must not inherit them (KubeVirt drops the same prefixes).
_NOT_CARRIED = ("pv.kubernetes.io", "volume.beta.kubernetes.io", "cdi.kubevirt.io",
                "volume.kubernetes.io", "k8s.io/CloneRequest", "k8s.io/CloneOf")
BACKEND_STORAGE_LABEL = "persistent-state-for"


def _template_spec(vm: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}


def claim_of(volume: Mapping[str, Any]) -> str | None:
    """The PVC or DataVolume a volume uses; None for a volume of another kind."""
    pvc = volume.get("persistentVolumeClaim")
    if isinstance(pvc, Mapping):
        return str(pvc.get("claimName") or "") or None
    dv = volume.get("dataVolume")
    if isinstance(dv, Mapping):
        return str(dv.get("name") or "") or None
    return None


def template_names(vm: Mapping[str, Any]) -> set[str]:
    return {str((t.get("metadata") or {}).get("name") or "")
            for t in (vm.get("spec") or {}).get("dataVolumeTemplates") or []}


def is_template_backed(vm: Mapping[str, Any], volume_name: str) -> bool:
    """A DataVolume volume whose DataVolume comes from the VM's own templates."""
    for volume in _template_spec(vm).get("volumes") or []:
        if volume.get("name") == volume_name and isinstance(volume.get("dataVolume"), Mapping):
            return str(volume["dataVolume"].get("name") or "") in template_names(vm)
    return False


def volumes_without_backup(vm: Mapping[str, Any], backed_up: Sequence[str]) -> list[str]:
    """The PVC and DataVolume volumes of the snapshot's VM that have no backup (memory-dump
    volumes are never restored, so they do not count)."""
    have = set(backed_up)
    return [str(v.get("name")) for v in _template_spec(vm).get("volumes") or []
            if claim_of(v) and v.get("memoryDump") is None and v.get("name") not in have]


def restored_pvc_name(owner: str, target: str, volume: str, policy: str) -> str:
    """`{owner}-{volume}` (RandomizeNames: new per restore), or `{target}-{volume}`
    (PrefixTargetName, as KubeVirt names it), within a DNS-1035 label."""
    prefix = target if policy == "PrefixTargetName" else owner
    return bounded(f"{prefix}-{volume}", MAX_LABEL)


def carried_metadata(source_pvc: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations of the backed-up PVC that describe its data (CDI's
    content type, the user's own), without those of its binding and provisioning and
    without the label that marks a VM's backend storage."""
    metadata = source_pvc.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()
              if k != BACKEND_STORAGE_LABEL}
    annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()
                   if k == CONTENT_TYPE or not k.startswith(_NOT_CARRIED)}
    return labels, annotations


def restored_spec(
    snapshot_vm: Mapping[str, Any],
    new_claims: Mapping[str, str],
    *,
    drop: Sequence[str] = (),
    keep: Mapping[str, Mapping[str, Any]] | None = None,
    keep_templates: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The VM spec of the snapshot with volumes pointed at `new_claims` (volume name ->
    new PVC name). `drop`: volumes (with their disks and templates) to leave out. `keep`:
    volumes to take as the current VM has them (volume name -> its volume), with
    `keep_templates`, the current VM's templates those volumes use."""
    spec = copy.deepcopy(dict(snapshot_vm.get("spec") or {}))
    template_spec = spec.setdefault("template", {}).setdefault("spec", {})
    templates: list[dict[str, Any]] = list(spec.get("dataVolumeTemplates") or [])
    by_name = {str((t.get("metadata") or {}).get("name") or ""): t for t in templates}
    renamed: dict[str, str] = {}
    removed_templates: set[str] = set()
    kept_volumes = dict(keep or {})
    volumes: list[dict[str, Any]] = []
    for volume in template_spec.get("volumes") or []:
        name = str(volume.get("name") or "")
        if volume.get("memoryDump") is not None or name in drop:
            if (claim := claim_of(volume)) in by_name:
                removed_templates.add(str(claim))
            continue
        if name in kept_volumes:
            if (claim := claim_of(volume)) in by_name:
                removed_templates.add(str(claim))
            volumes.append(copy.deepcopy(dict(kept_volumes[name])))
            continue
        new_claim = new_claims.get(name)
        if new_claim is not None:
            volume = _pointed_at(volume, new_claim, by_name, renamed)
        volumes.append(volume)
    template_spec["volumes"] = volumes
    disks = ((template_spec.get("domain") or {}).get("devices") or {}).get("disks")
    if isinstance(disks, list) and drop:
        template_spec["domain"]["devices"]["disks"] = [d for d in disks
                                                       if d.get("name") not in drop]
    new_templates = []
    for template in templates:
        old = str((template.get("metadata") or {}).get("name") or "")
        if old in removed_templates:
            continue
        if old in renamed:
            template = copy.deepcopy(template)
            template.setdefault("metadata", {})["name"] = renamed[old]
        new_templates.append(template)
    present = {str((t.get("metadata") or {}).get("name") or "") for t in new_templates}
    new_templates += [copy.deepcopy(dict(t)) for t in keep_templates
                      if str((t.get("metadata") or {}).get("name") or "") not in present]
    if new_templates:
        spec["dataVolumeTemplates"] = new_templates
    else:
        spec.pop("dataVolumeTemplates", None)
    return spec


def _pointed_at(volume: dict[str, Any], new_claim: str, templates: Mapping[str, Any],
                renamed: dict[str, str]) -> dict[str, Any]:
    pvc = volume.get("persistentVolumeClaim")
    if isinstance(pvc, dict):
        pvc["claimName"] = new_claim
        return volume
    dv = volume.get("dataVolume")
    if isinstance(dv, dict) and str(dv.get("name") or "") in templates:
        renamed[str(dv["name"])] = new_claim
        dv["name"] = new_claim
        return volume
    return {"name": volume.get("name"), "persistentVolumeClaim": {"claimName": new_claim}}


def volume_named(vm: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for volume in _template_spec(vm).get("volumes") or []:
        if volume.get("name") == name:
            return dict(volume)
    return None


def templates_for(vm: Mapping[str, Any], volumes: Sequence[Mapping[str, Any]]
                  ) -> list[dict[str, Any]]:
    """The VM's DataVolume templates that `volumes` use."""
    wanted = {claim_of(v) for v in volumes}
    return [dict(t) for t in (vm.get("spec") or {}).get("dataVolumeTemplates") or []
            if (t.get("metadata") or {}).get("name") in wanted]
