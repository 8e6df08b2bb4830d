"""Pure pieces of KubeVirt's VM status: run strategy, printable status, snapshot statuses.

No store access: callers pass lookups, so these follow KubeVirt's rules
(`pkg/virt-controller/watch/vm.go`, `pkg/storage/snapshot`) and are unit-tested
on plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

PvcLookup = Callable[[str], dict[str, Any] | None]

RUN_STRATEGIES = ("Always", "Halted", "Manual", "RerunOnFailure", "Once")
FINAL_PHASES = ("Succeeded", "Failed")
DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"


class RunStrategyError(ValueError):
    """A VM whose run strategy cannot be read (both `running` and `runStrategy`, or unknown)."""


def run_strategy(vm: dict[str, Any]) -> str:
    """`spec.runStrategy`, or Always/Halted from the legacy `spec.running`; Halted when neither."""
    spec = vm.get("spec") or {}
    running, strategy = spec.get("running"), spec.get("runStrategy")
    if running is not None and strategy is not None:
        raise RunStrategyError("running and runstrategy are mutually exclusive")
    if strategy is not None:
        if strategy not in RUN_STRATEGIES:
            raise RunStrategyError(f"unknown run strategy {strategy!r}")
        return str(strategy)
    if running is not None:
        return "Always" if running else "Halted"
    return "Halted"


def uses_legacy_running(vm: dict[str, Any]) -> bool:
    spec = vm.get("spec") or {}
    return spec.get("runStrategy") is None and spec.get("running") is not None


def is_final(vmi: dict[str, Any] | None) -> bool:
    return bool(vmi) and ((vmi or {}).get("status") or {}).get("phase") in FINAL_PHASES


def phase_of(vmi: dict[str, Any] | None) -> str:
    return str(((vmi or {}).get("status") or {}).get("phase") or "")


def claim_of(volume: dict[str, Any]) -> str | None:
    """The PVC behind a volume: a claim, or a DataVolume's PVC (same name)."""
    if "persistentVolumeClaim" in volume:
        return (volume.get("persistentVolumeClaim") or {}).get("claimName") or None
    if "dataVolume" in volume:
        return (volume.get("dataVolume") or {}).get("name") or None
    return None


def instance_volumes(instance_spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    volumes = (instance_spec or {}).get("volumes") or []
    return [v for v in volumes if isinstance(v, dict)]


@dataclass(frozen=True)
class VolumeReadiness:
    missing: tuple[str, ...]
    unbound: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.missing and not self.unbound


def volume_readiness(instance_spec: dict[str, Any] | None, pvc: PvcLookup) -> VolumeReadiness:
    missing, unbound = [], []
    for volume in instance_volumes(instance_spec):
        claim = claim_of(volume)
        if not claim:
            continue
        found = pvc(claim)
        if found is None or (found.get("metadata") or {}).get("deletionTimestamp"):
            missing.append(claim)
        elif (found.get("status") or {}).get("phase") != "Bound":
            unbound.append(claim)
    return VolumeReadiness(tuple(missing), tuple(unbound))


def has_condition(obj: dict[str, Any] | None, kind: str, status: str | None = None) -> bool:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and (status is None or cond.get("status") == status):
            return True
    return False


DataVolumeLookup = Callable[[str], dict[str, Any] | None]


def printable_status(
    vm: dict[str, Any],
    vmi: dict[str, Any] | None,
    strategy: str,
    readiness: VolumeReadiness,
    wants_running: bool,
    *,
    data_volume: DataVolumeLookup | None = None,
) -> str:
    """VirtualMachinePrintableStatus, checked in the order vm.go's setPrintableStatus checks
    them (first match wins); `data_volume` finds the DataVolumes the template's volumes
    name (Provisioning, DataVolumeError)."""
    deleting_vmi = bool(vmi and (vmi.get("metadata") or {}).get("deletionTimestamp"))
    if (vm.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if vmi is not None and not is_final(vmi) and (deleting_vmi or strategy == "Halted"):
        return "Stopping"
    if vmi is not None and phase_of(vmi) == "Running":
        return "Paused" if has_condition(vmi, "Paused", "True") else "Running"
    if vmi is not None and not is_final(vmi) and readiness.missing:
        return "ErrorPvcNotFound"  # the VMI's Synchronized=False, FailedPvcNotFound
    template = ((vm.get("spec") or {}).get("template") or {}).get("spec")
    if data_volume is not None:
        found = [
            data_volume(str((v.get("dataVolume") or {}).get("name") or ""))
            for v in instance_volumes(template)
            if "dataVolume" in v
        ]
        data_volumes = [dv for dv in found if dv is not None]
        if any(data_volume_failed(dv) for dv in data_volumes):
            return "DataVolumeError"
        if any(data_volume_provisioning(dv) for dv in data_volumes):
            return "Provisioning"
    if readiness.unbound and set_to_start(strategy, vmi, wants_running):
        return "WaitingForVolumeBinding"
    if vmi is not None and not is_final(vmi):
        return "Starting"
    if vmi is None and wants_running:
        return "Starting"
    return "Stopped"


def set_to_start(strategy: str, vmi: dict[str, Any] | None, wants_running: bool) -> bool:
    """isSetToStart of vm.go; `wants_running` stands for a pending start request."""
    if strategy == "Always":
        return True
    if strategy == "Manual":
        return vmi is not None or wants_running
    if strategy == "RerunOnFailure":
        return vmi is None or phase_of(vmi) != "Succeeded"
    if strategy == "Once":
        return vmi is None
    return False


def data_volume_failed(dv: dict[str, Any]) -> bool:
    """HasDataVolumeErrors (pkg/storage/types/dv.go) for one DataVolume."""
    if ((dv.get("status") or {}).get("phase")) == "Failed":
        return True
    for cond in (dv.get("status") or {}).get("conditions") or []:
        if (cond.get("type") == "Running" and cond.get("status") == "False"
                and cond.get("reason") in ("Error", "ImagePullFailed")):
            return True
    return False


def data_volume_provisioning(dv: dict[str, Any]) -> bool:
    """HasDataVolumeProvisioning for one DataVolume: not done, and either bound or not
    waiting for its first consumer."""
    phase = (dv.get("status") or {}).get("phase")
    if phase in ("Succeeded", "PendingPopulation"):
        return False
    return has_condition(dv, "Bound", "True") or phase != "WaitForFirstConsumer"


def snapshot_class_for(
    storage_class: dict[str, Any], snapshot_classes: Iterable[dict[str, Any]]
) -> tuple[str | None, str | None]:
    """(class name, error) as KubeVirt's getVolumeSnapshotClassName picks it."""
    provisioner = storage_class.get("provisioner")
    matches = [c for c in snapshot_classes if c.get("driver") == provisioner]
    if not matches:
        return None, None
    if len(matches) == 1:
        return matches[0]["metadata"]["name"], None
    for match in matches:
        if ((match.get("metadata") or {}).get("annotations") or {}).get(
            DEFAULT_SNAPSHOT_CLASS
        ) == "true":
            return match["metadata"]["name"], None
    return (
        None,
        f"{len(matches)} matching VolumeSnapshotClasses for {storage_class['metadata']['name']}",
    )


def volume_snapshot_statuses(
    vm: dict[str, Any],
    pvc: PvcLookup,
    storage_class: Callable[[str], dict[str, Any] | None],
    snapshot_classes: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """`status.volumeSnapshotStatuses`: whether KubeVirt could snapshot each volume, and why not."""
    template = (vm.get("spec") or {}).get("template") or {}
    statuses = []
    for volume in instance_volumes(template.get("spec")):
        name = str(volume.get("name") or "")
        claim = claim_of(volume)
        if claim is None:
            statuses.append(
                {
                    "name": name,
                    "enabled": False,
                    "reason": f"Snapshot is not supported for this volumeSource type [{name}]",
                }
            )
            continue
        found = pvc(claim)
        if found is None:
            kind = "datavolume" if "dataVolume" in volume else "persistentvolumeclaim"
            statuses.append(
                {"name": name, "enabled": False, "reason": f'{kind} "{claim}" not found'}
            )
            continue
        class_name = (found.get("spec") or {}).get("storageClassName") or ""
        found_class = storage_class(class_name) if class_name else None
        if found_class is None:
            statuses.append(
                {
                    "name": name,
                    "enabled": False,
                    "reason": _no_snapshot_class(class_name, name),
                }
            )
            continue
        chosen, error = snapshot_class_for(found_class, snapshot_classes)
        if error:
            statuses.append({"name": name, "enabled": False, "reason": error})
        elif chosen is None:
            statuses.append(
                {
                    "name": name,
                    "enabled": False,
                    "reason": _no_snapshot_class(class_name, name),
                }
            )
        else:
            statuses.append({"name": name, "enabled": True})
    return statuses


def _no_snapshot_class(storage_class: str, volume: str) -> str:
    return (
        "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass "
        f"[{storage_class}] [{volume}]"
    )


def merge_conditions(
    previous: list[dict[str, Any]] | None, wanted: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Wanted conditions, keeping each one's `lastTransitionTime` while its status holds."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for cond in wanted:
        old = before.get(cond["type"])
        cond = dict(cond)
        if "lastTransitionTime" not in cond:
            if old is not None and old.get("status") == cond.get("status"):
                cond["lastTransitionTime"] = old.get("lastTransitionTime")
            else:
                cond["lastTransitionTime"] = now
        cond.setdefault("lastProbeTime", None)
        merged.append(cond)
    return merged
