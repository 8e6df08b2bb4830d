"""Seeds for the fault suite, built in code: one namespace per scenario, so that fault rules
(which match on namespace) and invariant checks stay within their scenario.

Every VM is running with a connected guest agent unless told otherwise; its disks are PVCs
of the `csi` StorageClass, whose behaviour (cut/ready latency, failure) is steered per
disk with the simulator's `sim.vmsnap.io/*` annotations on the PVC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SIM = "sim.vmsnap.io/"

_CLASSES: list[dict[str, Any]] = [
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
     "metadata": {"name": "csi"}, "provisioner": "csi.vmsnap.test",
     "volumeBindingMode": "Immediate"},
    {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
     "metadata": {"name": "csi-snap"}, "driver": "csi.vmsnap.test", "deletionPolicy": "Delete"},
    # Restores from these snapshots bind slowly: holds a restore or clone at "wait for Bound".
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
     "metadata": {"name": "slowbind"}, "provisioner": "slowbind.vmsnap.test",
     "volumeBindingMode": "Immediate"},
    {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
     "metadata": {"name": "slowbind-snap", "annotations": {SIM + "bind-latency": "4s"}},
     "driver": "slowbind.vmsnap.test", "deletionPolicy": "Delete"},
]  # fmt: skip


@dataclass
class VmSeed:
    """A running VM `vm` in its own namespace with `disks` PVC disks.

    `disk_annotations[i]` are put on disk i's PVC (e.g. a cut latency for that disk only).
    """

    namespace: str
    disks: int = 1
    vm: str = "vm"
    guest_agent: str = "connected"
    storage_class: str = "csi"
    disk_annotations: dict[int, dict[str, str]] = field(default_factory=dict)

    def pvc(self, index: int) -> str:
        return f"{self.vm}-disk{index}"

    def documents(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        ]
        for index in range(self.disks):
            metadata: dict[str, Any] = {"name": self.pvc(index), "namespace": self.namespace}
            if self.disk_annotations.get(index):
                metadata["annotations"] = dict(self.disk_annotations[index])
            docs.append({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
                "spec": {"storageClassName": self.storage_class,
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                           "capacity": {"storage": "1Gi"}},
            })  # fmt: skip
        docs.append({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": self.vm, "namespace": self.namespace,
                         "annotations": {SIM + "guest-agent": self.guest_agent}},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {"disks": [
                    {"name": f"disk{i}", "disk": {"bus": "virtio"}} for i in range(self.disks)]},
                    "resources": {"requests": {"memory": "64Mi"}}},
                "volumes": [{"name": f"disk{i}",
                             "persistentVolumeClaim": {"claimName": self.pvc(i)}}
                            for i in range(self.disks)]}}},
        })  # fmt: skip
        return docs


def write_seed(path: Path, vms: list[VmSeed]) -> Path:
    """The storage classes and every VM's namespace, PVCs and VM, as one YAML file."""
    namespaces = [vm.namespace for vm in vms]
    if len(set(namespaces)) != len(namespaces):
        raise ValueError(f"each scenario needs its own namespace: {namespaces}")
    docs = [*_CLASSES, *(doc for vm in vms for doc in vm.documents())]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path
