"""A VM's `dataVolumeTemplates` become PVCs, as CDI would make them.

The simulator serves no `cdi.kubevirt.io` kinds; it creates what matters to
snapshots: the DataVolume's PVC, named like the DataVolume, with the
template's `pvc` spec (or its `storage` spec with CDI's defaults:
ReadWriteOnce, Filesystem). A `source.snapshot` in the same namespace becomes
the PVC's `dataSource`, so the claim is restored from that VolumeSnapshot.
The PVC is owned by the VM (a real one is owned by the DataVolume, which the
VM owns): deleting the VM removes it either way. An existing PVC of that name
is left alone.
"""

from __future__ import annotations

import copy
from typing import Any

from simulator.controllers.runtime import KUBEVIRT, SNAPSHOT, Runtime
from simulator.errors import ApiError
from simulator.store import WatchEvent

QUEUE = "cdi"
_PVC_FIELDS = (
    "accessModes",
    "resources",
    "storageClassName",
    "volumeMode",
    "selector",
    "dataSource",
    "dataSourceRef",
)

Key = tuple[str, str]


def pvc_for_template(vm: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The PVC CDI creates for one DataVolume template of `vm`."""
    metadata = template.get("metadata") or {}
    spec = template.get("spec") or {}
    if isinstance(spec.get("pvc"), dict):
        claim = {k: copy.deepcopy(v) for k, v in spec["pvc"].items() if k in _PVC_FIELDS}
    else:
        storage = spec.get("storage") or {}
        claim = {k: copy.deepcopy(v) for k, v in storage.items() if k in _PVC_FIELDS}
        claim.setdefault("accessModes", ["ReadWriteOnce"])
        claim.setdefault("volumeMode", "Filesystem")
    snapshot = (spec.get("source") or {}).get("snapshot")
    vm_meta = vm["metadata"]
    if (
        isinstance(snapshot, dict)
        and snapshot.get("name")
        and snapshot.get("namespace", vm_meta.get("namespace")) == vm_meta.get("namespace")
    ):
        claim["dataSource"] = {
            "apiGroup": SNAPSHOT,
            "kind": "VolumeSnapshot",
            "name": snapshot["name"],
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": metadata["name"],
            "namespace": vm_meta.get("namespace"),
            "labels": {
                **(metadata.get("labels") or {}),
                "app": "containerized-data-importer",
                "app.kubernetes.io/component": "storage",
                "app.kubernetes.io/managed-by": "cdi-controller",
            },
            "annotations": {
                **(metadata.get("annotations") or {}),
                "cdi.kubevirt.io/storage.contentType": "kubevirt",
                "cdi.kubevirt.io/createdForDataVolume": str(metadata["name"]),
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{KUBEVIRT}/v1",
                    "kind": "VirtualMachine",
                    "name": vm_meta["name"],
                    "uid": vm_meta["uid"],
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": claim,
    }


class DataVolumes:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        runtime.register(QUEUE, self.reconcile)

    def observe(self, event: WatchEvent) -> None:
        if event.resource.key == (KUBEVIRT, "virtualmachines") and event.type != "DELETED":
            metadata = event.object["metadata"]
            if (event.object.get("spec") or {}).get("dataVolumeTemplates"):
                self.rt.enqueue(QUEUE, (metadata.get("namespace", ""), metadata["name"]))

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        vm = self.rt.find(KUBEVIRT, "virtualmachines", namespace, name)
        if vm is None or vm["metadata"].get("deletionTimestamp"):
            return
        for template in (vm.get("spec") or {}).get("dataVolumeTemplates") or []:
            claim_name = ((template or {}).get("metadata") or {}).get("name")
            if not claim_name or self.rt.find("", "persistentvolumeclaims", namespace, claim_name):
                continue
            try:
                self.rt.create("", "persistentvolumeclaims", pvc_for_template(vm, template))
            except ApiError as exc:
                self.rt.record(
                    vm,
                    "Warning",
                    "ErrClaimNotValid",
                    f"DataVolume {claim_name}: {exc.message}",
                    "cdi-controller",
                )
