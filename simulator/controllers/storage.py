"""Storage facts several controllers need: quantities, classes, drivers, volume handles.

In a real cluster a bound PVC has a PersistentVolume whose `spec.csi` names
the driver and the volume handle. The simulator serves no PersistentVolumes,
so these are derived from the PVC: the driver is the provisioner recorded on
the PVC when it bound (else its StorageClass's), and the handle is a stable
UUID of the volume name.
"""

from __future__ import annotations

import functools
import uuid
from decimal import ROUND_CEILING
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from simulator.controllers.runtime import CORE, SNAPSHOT, STORAGE, Runtime
from simulator.store import WatchEvent

DEFAULT_STORAGE_CLASS = "storageclass.kubernetes.io/is-default-class"
DEFAULT_STORAGE_CLASS_BETA = "storageclass.beta.kubernetes.io/is-default-class"
DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
STORAGE_PROVISIONER_BETA = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
NO_PROVISIONER = "kubernetes.io/no-provisioner"

_BINARY_SUFFIXES = (
    ("Ei", 2**60),
    ("Pi", 2**50),
    ("Ti", 2**40),
    ("Gi", 2**30),
    ("Mi", 2**20),
    ("Ki", 2**10),
)


def to_bytes(quantity: str | int | float | None) -> int | None:
    """Bytes in a Kubernetes quantity (`1Gi`, `500M`, `1073741824`); None when absent.

    Raises ValueError for a quantity that does not parse.
    """
    if quantity is None or quantity == "":
        return None
    return int(parse_quantity(quantity).to_integral_value(rounding=ROUND_CEILING))


def binary_si(size: int) -> str:
    """A byte count as `resource.NewQuantity(size, BinarySI)` prints it: `1Gi`, `1536`."""
    for suffix, unit in _BINARY_SUFFIXES:
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def requested_storage(pvc: dict[str, Any]) -> str | None:
    requests = ((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}
    value = requests.get("storage")
    return None if value is None else str(value)


def pvc_size_bytes(pvc: dict[str, Any]) -> int | None:
    """The size of the bound volume (capacity), else the request."""
    capacity = ((pvc.get("status") or {}).get("capacity") or {}).get("storage")
    try:
        return to_bytes(capacity) if capacity is not None else to_bytes(requested_storage(pvc))
    except ValueError:
        return None


def is_csi_driver(provisioner: str) -> bool:
    """CSI driver names are DNS names (`hostpath.csi.k8s.io`); in-tree and external
    non-CSI provisioners carry a path (`kubernetes.io/aws-ebs`, `rancher.io/local-path`)."""
    return bool(provisioner) and "/" not in provisioner


def volume_name(pvc: dict[str, Any]) -> str:
    """The PersistentVolume a bound PVC names (`pvc-<uid>`, as external provisioners do)."""
    return str((pvc.get("spec") or {}).get("volumeName") or f"pvc-{pvc['metadata']['uid']}")


def volume_handle(pvc: dict[str, Any]) -> str:
    return _handle_of(volume_name(pvc))


@functools.lru_cache(maxsize=4096)
def _handle_of(volume: str) -> str:
    """A volume's CSI handle: derived, so the same on every call (and worth remembering:
    the snapshot controller and the CSI sidecar ask on every reconcile)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "vmsnap-sim/" + volume))


def is_bound(pvc: dict[str, Any] | None) -> bool:
    return bool(pvc) and ((pvc or {}).get("status") or {}).get("phase") == "Bound"


def is_deleting(obj: dict[str, Any] | None) -> bool:
    return bool(((obj or {}).get("metadata") or {}).get("deletionTimestamp"))


def is_default(obj: dict[str, Any], *annotation_names: str) -> bool:
    found = (obj.get("metadata") or {}).get("annotations") or {}
    return any(found.get(name) == "true" for name in annotation_names)


class ClaimsByHandle:
    """Claims by their volume's CSI handle, kept from PVC watch events, as upstream's
    controllers index PersistentVolumes by driver and handle: a handle's claim without a
    pass over every claim of the cluster. A claim the events have not shown is looked for."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._keys: dict[str, tuple[str, str]] = {}

    def observe(self, event: WatchEvent) -> None:
        """A PVC's event (the caller's filter: PersistentVolumeClaims only)."""
        metadata = event.object["metadata"]
        handle = volume_handle(event.object)
        key = (metadata.get("namespace", ""), metadata["name"])
        if event.type != "DELETED":
            self._keys[handle] = key
        elif self._keys.get(handle) == key:
            del self._keys[handle]

    def claim(self, handle: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The stored claim (not a copy: read it only) whose volume has `handle`, in
        `namespace` when given."""
        known = self._keys.get(handle)
        if known is not None and namespace in (None, known[0]):
            pvc = self.rt.view(CORE, "persistentvolumeclaims", *known)
            if pvc is not None and volume_handle(pvc) == handle:
                return pvc
        for pvc in self.rt.list_view(CORE, "persistentvolumeclaims", namespace):
            if volume_handle(pvc) == handle:
                self._keys[handle] = (pvc["metadata"].get("namespace", ""),
                                      pvc["metadata"]["name"])
                return pvc
        return None


class StorageView:
    """Reads of storage objects through the runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.rt.find(CORE, "persistentvolumeclaims", namespace, name)

    def storage_class(self, name: str | None) -> dict[str, Any] | None:
        return self.rt.find(STORAGE, "storageclasses", None, name or "")

    def snapshot_class(self, name: str | None) -> dict[str, Any] | None:
        return self.rt.find(SNAPSHOT, "volumesnapshotclasses", None, name or "")

    def snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.rt.find(SNAPSHOT, "volumesnapshots", namespace, name)

    def content(self, name: str | None) -> dict[str, Any] | None:
        return self.rt.find(SNAPSHOT, "volumesnapshotcontents", None, name or "")

    # The stored objects themselves, for reads that change nothing (most of them).

    def pvc_view(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.rt.view(CORE, "persistentvolumeclaims", namespace, name)

    def storage_class_view(self, name: str | None) -> dict[str, Any] | None:
        return self.rt.view(STORAGE, "storageclasses", None, name or "")

    def snapshot_class_view(self, name: str | None) -> dict[str, Any] | None:
        return self.rt.view(SNAPSHOT, "volumesnapshotclasses", None, name or "")

    def snapshot_view(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.rt.view(SNAPSHOT, "volumesnapshots", namespace, name)

    def content_view(self, name: str | None) -> dict[str, Any] | None:
        return self.rt.view(SNAPSHOT, "volumesnapshotcontents", None, name or "")

    def default_storage_class(self) -> dict[str, Any] | None:
        """The default StorageClass; with several, the newest wins (Kubernetes >= 1.26)."""
        defaults = [
            sc
            for sc in self.rt.list(STORAGE, "storageclasses")
            if is_default(sc, DEFAULT_STORAGE_CLASS, DEFAULT_STORAGE_CLASS_BETA)
        ]
        if not defaults:
            return None
        return max(
            defaults,
            key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]),
        )

    def driver_of(self, pvc: dict[str, Any]) -> str:
        """The driver of the PVC's volume: recorded at binding, else its class's provisioner."""
        recorded = ((pvc.get("metadata") or {}).get("annotations") or {}).get(STORAGE_PROVISIONER)
        if recorded:
            return str(recorded)
        storage_class = self.storage_class((pvc.get("spec") or {}).get("storageClassName"))
        return str((storage_class or {}).get("provisioner") or "")
