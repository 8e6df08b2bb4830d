"""KubeVirt's backend storage: the PVC that keeps a VM's persistent TPM and EFI state.

Followed from kubevirt/kubevirt `pkg/storage/backend-storage/backend-storage.go`
and its caller, virt-controller's `handleBackendStorage`
(`pkg/virt-controller/watch/vmi/storage.go`, `lifecycle.go`): when a VMI of a VM
with `domain.devices.tpm.persistent: true` or
`domain.firmware.bootloader.efi.persistent: true` is about to get its
launcher pod, virt-controller makes the claim (once; later starts find it by
its label):

- `generateName: persistent-state-for-<vm>-`, labels
  `persistent-state-for: <vm>` and `cdi.kubevirt.io/applyStorageProfile: "true"`;
- owned as the VMI is (by the VM, controller), so it outlives the VMI and
  goes with the VM;
- `10Mi`, Filesystem; the class is the KubeVirt CR's
  `spec.configuration.vmStateStorageClass`, else the class annotated
  `storageclass.kubevirt.io/is-default-virt-class: "true"`, else the cluster's
  default class (none: `no default storage class found`); ReadWriteMany when
  the class comes from the KubeVirt CR, ReadWriteOnce otherwise (no
  StorageProfiles are served to say more).

The launcher pod waits for it (`IsPVCReady`): Bound, or Pending on a
WaitForFirstConsumer class (the pod is its consumer); Pending otherwise is the
VMI's `Synchronized=False`, `BackendStorageNotReady`, "PVC pending". A VMI that
no longer needs it deletes it. The VMI's `volumeStatus` names it as
`persistent-state-for-this-vm`.
"""

from __future__ import annotations

from typing import Any

from simulator.controllers.runtime import CORE, KUBEVIRT, STORAGE, Runtime
from simulator.controllers.storage import is_deleting

PREFIX = "persistent-state-for"
VOLUME_NAME = PREFIX + "-this-vm"
SIZE = "10Mi"
APPLY_STORAGE_PROFILE = "cdi.kubevirt.io/applyStorageProfile"
VIRT_DEFAULT_CLASS = "storageclass.kubevirt.io/is-default-virt-class"
K8S_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


class BackendStorageError(Exception):
    """A sync error of virt-controller: the VMI's Synchronized=False reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def is_needed(instance_spec: dict[str, Any] | None) -> bool:
    """IsBackendStorageNeeded for a VMI spec (or a VM template's): a persistent TPM or EFI."""
    domain = (instance_spec or {}).get("domain") or {}
    tpm = (domain.get("devices") or {}).get("tpm")
    efi = ((domain.get("firmware") or {}).get("bootloader") or {}).get("efi")
    return (isinstance(tpm, dict) and tpm.get("persistent") is True) or (
        isinstance(efi, dict) and efi.get("persistent") is True
    )


def kubevirt_configuration(rt: Runtime) -> dict[str, Any]:
    """`spec.configuration` of the KubeVirt CR (the first one, as there is one per cluster)."""
    for kubevirt in rt.list_view(KUBEVIRT, "kubevirts"):
        return dict(((kubevirt.get("spec") or {}).get("configuration")) or {})
    return {}


class BackendStorage:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def claim_for(self, vmi: dict[str, Any]) -> dict[str, Any] | None:
        """PVCForVMI: the claim labelled for the VMI's name, else the legacy-named one."""
        namespace = vmi["metadata"].get("namespace", "")
        name = vmi["metadata"]["name"]
        labelled = self.rt.list_view(
            CORE, "persistentvolumeclaims", namespace, label_selector=f"{PREFIX}={name}"
        )
        for pvc in labelled:
            if not is_deleting(pvc):
                return pvc
        legacy = self.rt.view(CORE, "persistentvolumeclaims", namespace, f"{PREFIX}-{name}")
        return None if legacy is None or is_deleting(legacy) else legacy

    def ensure(self, vmi: dict[str, Any]) -> dict[str, Any] | None:
        """handleBackendStorage: the VMI's backend claim (made if missing), or None when it
        needs none (a claim it had is deleted then). Raises BackendStorageError."""
        pvc = self.claim_for(vmi)
        if not is_needed(vmi.get("spec")):
            if pvc is not None:
                self.rt.delete(CORE, "persistentvolumeclaims",
                               pvc["metadata"].get("namespace"), pvc["metadata"]["name"])
            return None
        if pvc is not None:
            labels = pvc["metadata"].get("labels") or {}
            if PREFIX not in labels:  # labelLegacyPVC
                pvc = self.rt.write(CORE, "persistentvolumeclaims", {
                    **pvc,
                    "metadata": {**pvc["metadata"],
                                 "labels": {**labels, PREFIX: vmi["metadata"]["name"]}},
                })
            return pvc
        return self._create(vmi)

    def _create(self, vmi: dict[str, Any]) -> dict[str, Any]:
        configured = str(kubevirt_configuration(self.rt).get("vmStateStorageClass") or "")
        storage_class = configured or self._default_class()
        if not storage_class:
            raise BackendStorageError("FailedBackendStorageCreate",
                                      "no default storage class found")
        meta = vmi["metadata"]
        owners = [dict(r) for r in meta.get("ownerReferences") or []]
        if not owners:
            owners = [{
                "apiVersion": f"{KUBEVIRT}/v1",
                "kind": "VirtualMachineInstance",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }]
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "generateName": f"{PREFIX}-{meta['name']}-",
                "namespace": meta.get("namespace"),
                "ownerReferences": owners,
                "labels": {PREFIX: meta["name"], APPLY_STORAGE_PROFILE: "true"},
            },
            "spec": {
                "accessModes": ["ReadWriteMany" if configured else "ReadWriteOnce"],
                "resources": {"requests": {"storage": SIZE}},
                "storageClassName": storage_class,
                "volumeMode": "Filesystem",
            },
        }
        return self.rt.create(CORE, "persistentvolumeclaims", claim)

    def _default_class(self) -> str:
        """getStorageClass: the default virtualization class, else the cluster default."""
        k8s_default = virt_default = ""
        for storage_class in self.rt.list_view(STORAGE, "storageclasses"):
            notes = storage_class["metadata"].get("annotations") or {}
            if notes.get(VIRT_DEFAULT_CLASS) == "true":
                virt_default = storage_class["metadata"]["name"]
            if notes.get(K8S_DEFAULT_CLASS) == "true":
                k8s_default = storage_class["metadata"]["name"]
        return virt_default or k8s_default

    def check_ready(self, pvc: dict[str, Any]) -> bool:
        """IsPVCReady: True to go on (Bound, or Pending for its first consumer); False while
        it is pending; BackendStorageError when it cannot become ready."""
        phase = (pvc.get("status") or {}).get("phase")
        if phase == "Bound":
            return True
        if phase == "Lost":
            raise BackendStorageError("FailedBackendStorageProbe", "backend storage PVC lost")
        if phase != "Pending":
            return False
        name = (pvc.get("spec") or {}).get("storageClassName")
        if not name:
            raise BackendStorageError("FailedBackendStorageProbe", "no storage class name")
        storage_class = self.rt.view(STORAGE, "storageclasses", None, name)
        if storage_class is None:
            raise BackendStorageError("FailedBackendStorageProbe",
                                      f"storage class {name} not found")
        return storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"


def volume_status(pvc: dict[str, Any]) -> dict[str, Any]:
    """UpdateVolumeStatus's entry for the backend claim."""
    return {
        "name": VOLUME_NAME,
        "target": "",  # VolumeStatus.Target is not omitempty
        "persistentVolumeClaimInfo": {
            "claimName": pvc["metadata"]["name"],
            "accessModes": list((pvc.get("spec") or {}).get("accessModes") or []),
        },
    }
