"""What a snapshot keeps of a VM beyond its spec, as KubeVirt's snapshot keeps it.

- **The spec the VM runs.** A running VM whose template was edited since it started
  (condition `RestartRequired`) runs the spec stored in its start revision
  (`vmi.status.virtualMachineRevisionName`, a ControllerRevision of the VM); the snapshot
  copies that one, with today's volumes, disks and DataVolume templates (KubeVirt's
  snapshot source does the same), so a restore brings back the VM that ran.
- **Instance types and preferences.** A VM that names an instance type or a preference
  depends on ControllerRevisions holding them as they were. The snapshot copies each
  into a revision of its own (the source VM's name in the revision's name replaced by
  the snapshot's, owned by the snapshot record) and points its copy of the VM at it; a
  restore or clone copies those again for the new VM (the snapshot's name replaced by
  the VM's), so the copy still starts when the source and its revisions are gone.
- **DataVolumes still importing.** A disk whose DataVolume has not Succeeded holds a
  half-written image (CDI's `IsPopulated`): the snapshot waits for it.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

from cluster.apis import CustomResource, KubeApis
from cluster.errors import AlreadyExists, NotFound

CONTROLLER_REVISIONS = CustomResource("apps", "v1", "controllerrevisions", "ControllerRevision")
DATA_VOLUMES = CustomResource("cdi.kubevirt.io", "v1beta1", "datavolumes", "DataVolume")
_KINDS = (("instancetype", "instancetypeRef"), ("preference", "preferenceRef"))


def revision_names(vm: Mapping[str, Any]) -> dict[str, str]:
    """The ControllerRevisions that hold the VM's instance type and preference: the one
    its spec names, else the one its status records."""
    found: dict[str, str] = {}
    for field, status_field in _KINDS:
        matcher = (vm.get("spec") or {}).get(field) or {}
        if not matcher:
            continue
        recorded = (((vm.get("status") or {}).get(status_field) or {})
                    .get("controllerRevisionRef") or {}).get("name")
        name = matcher.get("revisionName") or recorded
        if name:
            found[field] = str(name)
    return found


def restart_required(vm: Mapping[str, Any]) -> bool:
    """KubeVirt's RestartRequired condition: the template differs from what runs."""
    return any(c.get("type") == "RestartRequired" and c.get("status") == "True"
               for c in (vm.get("status") or {}).get("conditions") or []
               if isinstance(c, dict))


class VmRevisionOperations(KubeApis):
    """Reading a VM's revisions and copying them for a snapshot, a restore or a clone."""

    def running_spec(self, namespace: str, vm: Mapping[str, Any],
                     vmi: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The spec the VMI started from (with today's volumes, disks and DataVolume
        templates), or None when there is no VMI or no start revision to read, or when
        the VM's spec is what runs: without a RestartRequired condition every change
        since the start was applied live, and the VM's spec is read already (a request
        saved on every snapshot)."""
        revision = ((vmi or {}).get("status") or {}).get("virtualMachineRevisionName")
        if not revision or not restart_required(vm):
            return None
        try:
            stored = self.get_custom(CONTROLLER_REVISIONS, namespace, str(revision))
        except NotFound:
            return None
        ran = copy.deepcopy(dict(((stored.get("data") or {}).get("spec")) or {}))
        now = vm.get("spec") or {}
        template = ran.setdefault("template", {}).setdefault("spec", {})
        current = (now.get("template") or {}).get("spec") or {}
        template["volumes"] = copy.deepcopy(current.get("volumes") or [])
        devices = template.setdefault("domain", {}).setdefault("devices", {})
        devices["disks"] = copy.deepcopy(((current.get("domain") or {}).get("devices") or {})
                                         .get("disks") or [])
        if now.get("dataVolumeTemplates"):
            ran["dataVolumeTemplates"] = copy.deepcopy(now["dataVolumeTemplates"])
        else:
            ran.pop("dataVolumeTemplates", None)
        for key in ("runStrategy", "running", "instancetype", "preference"):
            if key in now:
                ran[key] = copy.deepcopy(now[key])
        return ran

    def copy_revisions(self, namespace: str, vm_spec: dict[str, Any], names: dict[str, str],
                       old: str, new: str, owner: Mapping[str, Any] | None) -> None:
        """Copy the revisions `names` (field -> revision) under names with `old` replaced
        by `new`, owned by `owner`, and point `vm_spec` at the copies. A copy that exists
        already (a retried step) is kept."""
        for field, name in names.items():
            source = self.get_custom(CONTROLLER_REVISIONS, namespace, name)
            copy_name = name.replace(old, new, 1) if old in name else f"{new}-{name}"
            metadata: dict[str, Any] = {
                "name": copy_name, "namespace": namespace,
                "labels": dict((source.get("metadata") or {}).get("labels") or {})}
            if owner is not None:
                metadata["ownerReferences"] = [dict(owner)]
            body = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": metadata,
                    "data": copy.deepcopy(source.get("data")),
                    "revision": source.get("revision") or 1}
            with contextlib.suppress(AlreadyExists):  # a retried step made it already
                self.create_custom(CONTROLLER_REVISIONS, namespace, body)
            vm_spec.setdefault(field, {})["revisionName"] = copy_name

    def own_revisions(self, namespace: str, vm_spec: Mapping[str, Any],
                      owner: Mapping[str, Any]) -> None:
        """Give the revisions a new VM points at their owner, once the VM exists."""
        for field, _ in _KINDS:
            name = ((vm_spec.get(field) or {}).get("revisionName"))
            if not name:
                continue
            found = self.get_custom(CONTROLLER_REVISIONS, namespace, str(name))
            if (found.get("metadata") or {}).get("ownerReferences"):
                continue
            self.patch_custom(CONTROLLER_REVISIONS, namespace, str(name),
                              {"metadata": {"ownerReferences": [dict(owner)],
                                            "resourceVersion": found["metadata"].get(
                                                "resourceVersion")}})

    def unpopulated(self, namespace: str, pvcs: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """The PVCs whose DataVolume has not Succeeded yet (CDI's IsPopulated): `name
        (DataVolume phase, progress)` for each."""
        waiting = []
        for name, pvc in pvcs.items():
            owner = next((o for o in (pvc.get("metadata") or {}).get("ownerReferences") or []
                          if o.get("kind") == "DataVolume" and o.get("controller")), None)
            if owner is None:
                continue
            try:
                dv = self.get_custom(DATA_VOLUMES, namespace, str(owner.get("name")))
            except NotFound:
                waiting.append(f"{name} (its DataVolume {owner.get('name')} is gone)")
                continue
            status = dv.get("status") or {}
            if status.get("phase") != "Succeeded":
                progress = f", {status['progress']}" if status.get("progress") else ""
                waiting.append(f"{name} (DataVolume phase {status.get('phase') or 'unknown'}"
                               f"{progress})")
        return waiting
