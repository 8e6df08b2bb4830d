"""What must hold after every fault run, read from the simulator itself (objects, freeze log),
never from what the workflows report.

`check_invariants` raises AssertionError listing every violation at once, so a failing run
shows the whole picture. Call it with the simulator's fault rules cleared (its own reads
would otherwise be subject to them).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from tests.support.enforced import refused_requests
from tests.support.sim import Sim

SNAPSHOT_LABEL = "vmsnap.io/snapshot"
RESTORE_LABEL = "vmsnap.io/restore"
CLONE_LABEL = "vmsnap.io/clone"
LOCK_ANNOTATION = "vmsnap.io/lock"

# The guest thaws itself on a whole-second timer driven by the simulator's event loop;
# allow for that loop being late on a loaded 2-core machine.
SELF_THAW_SLACK_SECONDS = 1.5

PATHS = {
    "vmis": "/apis/kubevirt.io/v1/virtualmachineinstances",
    "vms": "/apis/kubevirt.io/v1/virtualmachines",
    "volumesnapshots": "/apis/snapshot.storage.k8s.io/v1/volumesnapshots",
    "volumesnapshotcontents": "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents",
    "pvcs": "/api/v1/persistentvolumeclaims",
    "snapshots": "/apis/vmsnap.io/v1alpha1/vmsnapsnapshots",
    "contents": "/apis/vmsnap.io/v1alpha1/vmsnapcontents",
    "restores": "/apis/vmsnap.io/v1alpha1/vmsnaprestores",
    "clones": "/apis/vmsnap.io/v1alpha1/vmsnapclones",
}


def list_all(sim: Sim, kind: str) -> list[dict[str, Any]]:
    return list(sim.request("GET", PATHS[kind])["items"])


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def freeze_violations(sim: Sim) -> list[str]:
    """Every freeze ended, within its `unfreezeTimeout`; no VMI reports itself frozen."""
    found = []
    for entry in sim.freeze_log():
        where = f"{entry['namespace']}/{entry['vmi']} frozen at {entry['frozen_at']}"
        if entry["thawed_at"] is None:
            found.append(f"{where}: still frozen")
            continue
        frozen_for = (_time(entry["thawed_at"]) - _time(entry["frozen_at"])).total_seconds()
        bound = entry["unfreeze_timeout_seconds"]
        if bound <= 0:
            found.append(f"{where}: frozen with no safety net (unfreezeTimeout {bound}s)")
        elif frozen_for > bound + SELF_THAW_SLACK_SECONDS:
            found.append(f"{where}: frozen {frozen_for:.2f}s, beyond unfreezeTimeout {bound}s")
    for vmi in list_all(sim, "vmis"):
        if (vmi.get("status") or {}).get("fsFreezeStatus") == "frozen":
            found.append(f"VMI {'/'.join(_key(vmi))} reports fsFreezeStatus frozen")
    return found


def lock_violations(sim: Sim) -> list[str]:
    return [
        f"VM {'/'.join(_key(vm))} still locked: {vm['metadata']['annotations'][LOCK_ANNOTATION]}"
        for vm in list_all(sim, "vms")
        if LOCK_ANNOTATION in (vm["metadata"].get("annotations") or {})
    ]


def object_violations(sim: Sim) -> list[str]:
    """Labelled objects without a live record; a failed record's leftovers; duplicates."""
    found: list[str] = []
    records = {_key(r): r for r in list_all(sim, "snapshots")}
    live_by_label: dict[tuple[str, str], dict[str, Any]] = {}
    for (namespace, _), record in records.items():
        label = _labels(record).get(SNAPSHOT_LABEL)
        if label is not None:
            live_by_label[(namespace, label)] = record
    volume_snapshots = list_all(sim, "volumesnapshots")
    per_snapshot: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for vs in volume_snapshots:
        label = _labels(vs).get(SNAPSHOT_LABEL)
        if label is None:
            continue
        namespace = vs["metadata"]["namespace"]
        owner = live_by_label.get((namespace, label))
        name = "/".join(_key(vs))
        if owner is None:
            found.append(f"VolumeSnapshot {name} ({SNAPSHOT_LABEL}={label}) has no record")
        elif _phase(owner) == "Failed":
            found.append(f"VolumeSnapshot {name} left behind by Failed snapshot {label}")
        per_snapshot.setdefault((namespace, label), []).append(vs)
    for (namespace, label), owned in per_snapshot.items():
        sources = Counter(
            (vs.get("spec") or {}).get("source", {}).get("persistentVolumeClaimName")
            for vs in owned
        )
        twice = sorted(str(pvc) for pvc, count in sources.items() if count > 1)
        if twice:
            found.append(f"snapshot {namespace}/{label}: PVCs cut more than once: {twice}")
    for content in list_all(sim, "contents"):
        label = _labels(content).get(SNAPSHOT_LABEL)
        content_owner = live_by_label.get((content["metadata"]["namespace"], label or ""))
        if content_owner is None:
            found.append(f"content {'/'.join(_key(content))} has no record")
        elif _phase(content_owner) == "Failed":
            found.append(f"content {'/'.join(_key(content))} left by a Failed snapshot")
    present = {_key(vs) for vs in volume_snapshots}
    for csi in list_all(sim, "volumesnapshotcontents"):
        ref = (csi.get("spec") or {}).get("volumeSnapshotRef") or {}
        if (ref.get("namespace", ""), ref.get("name", "")) not in present:
            found.append(
                f"VolumeSnapshotContent {csi['metadata']['name']} outlived its VolumeSnapshot "
                f"{ref.get('namespace')}/{ref.get('name')}"
            )
    operations = {
        RESTORE_LABEL: {_key(r): r for r in list_all(sim, "restores")},
        CLONE_LABEL: {_key(r): r for r in list_all(sim, "clones")},
    }
    for pvc in list_all(sim, "pvcs"):
        name = "/".join(_key(pvc))
        for label, records_of_kind in operations.items():
            operation = _labels(pvc).get(label)
            if operation is None:
                continue
            operation_record = records_of_kind.get((pvc["metadata"]["namespace"], operation))
            if operation_record is None:
                found.append(f"PVC {name} ({label}={operation}) has no record")
            elif _phase(operation_record) == "Failed":
                found.append(f"PVC {name} left behind by Failed {label}={operation}")
    return found


def _phase(record: dict[str, Any]) -> str | None:
    return (record.get("status") or {}).get("phase")


def snapshot_phases(sim: Sim) -> dict[tuple[str, str], str | None]:
    """(namespace, name) -> phase of every snapshot record, as the cluster has it."""
    return {_key(r): _phase(r) for r in list_all(sim, "snapshots")}


def complete_snapshot_violations(sim: Sim, namespace: str, name: str, disks: int) -> list[str]:
    """A Succeeded record whose VolumeSnapshots are exactly one per disk, all cut."""
    records = {_key(r): r for r in list_all(sim, "snapshots")}
    record = records.get((namespace, name))
    if record is None:
        return [f"snapshot {namespace}/{name} lost: no record"]
    found = []
    if _phase(record) != "Succeeded":
        found.append(f"snapshot {namespace}/{name} is {_phase(record)}, not Succeeded")
    label = _labels(record).get(SNAPSHOT_LABEL)
    owned = [
        vs for vs in list_all(sim, "volumesnapshots")
        if vs["metadata"]["namespace"] == namespace and _labels(vs).get(SNAPSHOT_LABEL) == label
    ]  # fmt: skip
    if len(owned) != disks:
        found.append(f"snapshot {namespace}/{name}: {len(owned)} VolumeSnapshots for {disks} disks")
    uncut = [vs["metadata"]["name"] for vs in owned if not (vs.get("status") or {}).get(
        "creationTime")]
    if uncut:
        found.append(f"snapshot {namespace}/{name}: VolumeSnapshots never cut: {uncut}")
    return found


def check_invariants(sim: Sim, *, expect_succeeded: dict[tuple[str, str], int] | None = None
                     ) -> None:
    """All of the above; `expect_succeeded` maps (namespace, snapshot) -> its disk count."""
    found = freeze_violations(sim) + lock_violations(sim) + object_violations(sim)
    found += [f"refused by RBAC: {r}" for r in refused_requests(sim)]
    for (namespace, name), disks in (expect_succeeded or {}).items():
        found += complete_snapshot_violations(sim, namespace, name, disks)
    assert not found, "invariants violated:\n  " + "\n  ".join(found)
