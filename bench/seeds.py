"""Simulator seeds for the load benchmarks, generated: N running VMs of D CSI disks each.

Why generated: 500 VMs of 3 disks are 2,000 objects; a file in the tree would
be noise and would drift from the benchmark's parameters. Storage latencies
default to zero ("instant storage"), so the figures measure orchestration,
not the simulated CSI driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "bench"
STORAGE_CLASS = "bench-csi"
SNAPSHOT_CLASS = "bench-csi-snap"
GROUP_SNAPSHOT_CLASS = "bench-csi-groupsnap"
DEFAULT_GROUP_CLASS = "groupsnapshot.storage.kubernetes.io/is-default-class"
DRIVER = "csi.bench.vmsnap.test"


def vm_name(index: int, prefix: str = "vm") -> str:
    return f"{prefix}-{index:04d}"


def vm_namespace(index: int, namespaces: int = 1) -> str:
    """VM `index`'s namespace: all in NAMESPACE, or spread round-robin over `namespaces`."""
    return NAMESPACE if namespaces == 1 else f"{NAMESPACE}-{index % namespaces:04d}"


def _pvc(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "storageClassName": STORAGE_CLASS,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
        "status": {
            "phase": "Bound",
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
        },
    }


def _vm(name: str, namespace: str, disks: int, start_latency: str) -> dict[str, Any]:
    volumes = [f"disk{d}" for d in range(disks)]
    devices = {"disks": [{"name": v, "disk": {"bus": "virtio"}} for v in volumes]}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "sim.vmsnap.io/guest-agent": "connected",
                "sim.vmsnap.io/start-latency": start_latency,
            },
        },
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "domain": {
                        "devices": devices,
                        "resources": {"requests": {"memory": "64Mi"}},
                    },
                    "volumes": [
                        {"name": v, "persistentVolumeClaim": {"claimName": f"{name}-{v}"}}
                        for v in volumes
                    ],
                }
            },
        },
    }


def fleet_documents(
    vms: int,
    disks: int = 3,
    cut_latency: str = "0s",
    ready_latency: str = "0s",
    start_latency: str = "0s",
    namespaces: int = 1,
    prefix: str = "vm",
) -> list[dict[str, Any]]:
    """The seed's objects: the namespace(s), a CSI StorageClass and its VolumeSnapshotClass
    (with the given latencies), then per VM its PVCs and the VM (running, agent connected).

    `namespaces` > 1 spreads the VMs over that many namespaces (see `vm_namespace`): the
    benchmark uses it to show what namespace-wide lists and watches cost. `prefix` names
    the VMs (`vm_name`), so that fleets of different disk counts can share one seed."""
    if vms < 1:
        raise ValueError(f"the fleet needs at least one VM, not {vms}")
    if disks < 1:
        raise ValueError(f"each VM needs at least one disk, not {disks}")
    if not 1 <= namespaces <= vms:
        raise ValueError(f"namespaces must be between 1 and the number of VMs, not {namespaces}")
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in dict.fromkeys(vm_namespace(i, namespaces) for i in range(vms))
    ]
    docs += [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS},
            "provisioner": DRIVER,
            "volumeBindingMode": "Immediate",
        },
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {
                "name": SNAPSHOT_CLASS,
                "annotations": {
                    "sim.vmsnap.io/cut-latency": cut_latency,
                    "sim.vmsnap.io/ready-latency": ready_latency,
                },
            },
            "driver": DRIVER,
            "deletionPolicy": "Delete",
        },
    ]
    for index in range(vms):
        name, namespace = vm_name(index, prefix), vm_namespace(index, namespaces)
        docs += [_pvc(f"{name}-disk{d}", namespace) for d in range(disks)]
        docs.append(_vm(name, namespace, disks, start_latency))
    return docs


def group_snapshot_class(cut_latency: str = "0s", ready_latency: str = "0s") -> dict[str, Any]:
    """The fleet's driver's default VolumeGroupSnapshotClass: one cut for all of a group's
    disks, `cut_latency` after the group is created (and ready `ready_latency` later)."""
    return {
        "apiVersion": "groupsnapshot.storage.k8s.io/v1",
        "kind": "VolumeGroupSnapshotClass",
        "metadata": {
            "name": GROUP_SNAPSHOT_CLASS,
            "annotations": {
                DEFAULT_GROUP_CLASS: "true",
                "sim.vmsnap.io/cut-latency": cut_latency,
                "sim.vmsnap.io/ready-latency": ready_latency,
            },
        },
        "driver": DRIVER,
        "deletionPolicy": "Delete",
    }


def write_fleet_seed(
    folder: Path, vms: int, disks: int = 3, namespaces: int = 1, **latencies: str
) -> Path:
    """Write the fleet's seed as one multi-document YAML in `folder`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"fleet-{vms}x{disks}.yaml"
    docs = fleet_documents(vms, disks, namespaces=namespaces, **latencies)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path
