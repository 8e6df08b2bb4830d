"""Which of a VM's disks a snapshot can take, and why the others are left out.

Pure: given the VM, its PVCs, the StorageClasses and VolumeSnapshotClasses,
apply the rules by which KubeVirt chooses the disks a snapshot takes.
Candidates come from the VM spec only, so a persistent hot-plugged volume is
included and a volume hot-plugged only into the running VMI is not. A VM with
persistent TPM or EFI state has one more: KubeVirt's backend-storage claim
(label `persistent-state-for: <vm>`), under the volume name KubeVirt gives it,
`persistent-state-for-<vm>`. Memory-dump volumes are never taken. Reasons name
the object and the fix, because a user reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rules.models import ExcludedVolume, IncludedVolume, VolumeSelection
from rules.naming import MAX_LABEL, bounded

DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
_PVC_SOURCES = ("persistentVolumeClaim", "dataVolume")
BACKEND_STORAGE_LABEL = "persistent-state-for"  # KubeVirt's, on the state claim: the VM


def needs_backend_storage(vm: Mapping[str, Any]) -> bool:
    """The VM keeps TPM or EFI state across restarts (KubeVirt's backend storage)."""
    domain = (((vm.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "domain") or {}
    tpm = (domain.get("devices") or {}).get("tpm") or {}
    efi = ((domain.get("firmware") or {}).get("bootloader") or {}).get("efi") or {}
    return bool(tpm.get("persistent")) or bool(efi.get("persistent"))


def backend_volume_name(vm_name: str) -> str:
    """The volume name KubeVirt gives the state claim when it lists a VM's volumes."""
    return bounded(f"{BACKEND_STORAGE_LABEL}-{vm_name}", MAX_LABEL)


def newest_backend_claim(vm_name: str, pvcs: Sequence[Mapping[str, Any]]) -> str | None:
    """The VM's state claim: the newest one labelled for it that is not being deleted."""
    mine = [p for p in pvcs
            if ((p.get("metadata") or {}).get("labels") or {}).get(BACKEND_STORAGE_LABEL)
            == vm_name and not (p.get("metadata") or {}).get("deletionTimestamp")]
    mine.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return str(mine[-1]["metadata"]["name"]) if mine else None


def select_volumes(
    vm: Mapping[str, Any],
    pvcs: Mapping[str, Mapping[str, Any]],
    storage_classes: Mapping[str, Mapping[str, Any]],
    snapshot_classes: Sequence[Mapping[str, Any]],
    backend_claim: str | None = None,
) -> VolumeSelection:
    """Split the VM's volumes into included and excluded (with reasons), in spec order,
    the state claim (`backend_claim`) last when the VM keeps TPM or EFI state.

    `pvcs` and `storage_classes` are keyed by name and hold the objects that
    exist; a name that is absent is reported as missing.
    """
    volumes = list(_template_volumes(vm))
    included: list[IncludedVolume] = []
    excluded: list[ExcludedVolume] = []
    if needs_backend_storage(vm):
        name = backend_volume_name(str((vm.get("metadata") or {}).get("name") or ""))
        if backend_claim:
            volumes.append({"name": name, "persistentVolumeClaim": {"claimName": backend_claim}})
        else:
            excluded.append(ExcludedVolume(
                volume_name=name, snapshottable_type=False,
                reason="persistent TPM/EFI state: the VM has no state claim yet (KubeVirt "
                "makes it when the VM first starts), so there is no state to keep"))
    for volume in volumes:
        if volume.get("memoryDump") is not None:
            excluded.append(ExcludedVolume(
                volume_name=str(volume.get("name") or ""), snapshottable_type=False,
                reason="memory dump: a diagnostic copy of the guest's memory, not a disk"))
            continue
        outcome = _select_one(volume, pvcs, storage_classes, snapshot_classes)
        if isinstance(outcome, IncludedVolume):
            included.append(outcome)
        else:
            excluded.append(outcome)
    return VolumeSelection(included=included, excluded=excluded)


def _template_volumes(vm: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = vm.get("spec") or {}
    template = spec.get("template") or {}
    volumes = (template.get("spec") or {}).get("volumes") or []
    if not isinstance(volumes, list):
        raise ValueError("vm.spec.template.spec.volumes must be a list")
    return volumes


def _select_one(
    volume: Mapping[str, Any],
    pvcs: Mapping[str, Mapping[str, Any]],
    storage_classes: Mapping[str, Mapping[str, Any]],
    snapshot_classes: Sequence[Mapping[str, Any]],
) -> IncludedVolume | ExcludedVolume:
    name = str(volume.get("name") or "")
    source_kind = next((kind for kind in _PVC_SOURCES if kind in volume), None)
    if source_kind is None:
        kinds = [key for key in volume if key != "name"]
        kind = kinds[0] if kinds else "unknown"
        return ExcludedVolume(
            volume_name=name,
            reason=f"{kind} volume: not backed by a PVC, so it cannot be snapshotted",
            snapshottable_type=False,
        )
    source = volume.get(source_kind) or {}
    claim = claim_name(volume)
    hotpluggable = bool(source.get("hotpluggable", False))

    def excluded(reason: str) -> ExcludedVolume:
        return ExcludedVolume(
            volume_name=name, reason=reason, snapshottable_type=True, pvc_name=claim or None
        )

    if not claim:
        return excluded(f"{source_kind} volume names no PVC")
    what = f'PVC "{claim}"'
    if source_kind == "dataVolume":
        what += f' (of DataVolume "{claim}")'

    pvc = pvcs.get(claim)
    if pvc is None:
        return excluded(f"{what} not found")
    metadata = pvc.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return excluded(f"{what} is being deleted")
    phase = (pvc.get("status") or {}).get("phase") or "unknown"
    if phase != "Bound":
        return excluded(f"{what} is not Bound (phase {phase})")
    class_name = (pvc.get("spec") or {}).get("storageClassName")
    if not class_name:
        return excluded(
            f"{what} has no storage class, so no VolumeSnapshotClass can be matched to it"
        )
    storage_class = storage_classes.get(class_name)
    if storage_class is None:
        return excluded(f'storage class "{class_name}" of {what} not found')
    provisioner = str(storage_class.get("provisioner") or "")
    chosen = choose_snapshot_class(class_name, provisioner, snapshot_classes)
    if isinstance(chosen, str):
        return excluded(chosen)
    return IncludedVolume(
        volume_name=name,
        pvc_name=claim,
        storage_class=class_name,
        snapshot_class=str((chosen.get("metadata") or {}).get("name")),
        driver=provisioner,
        hotpluggable=hotpluggable,
    )


def claim_name(volume: Mapping[str, Any]) -> str | None:
    """The PVC behind a VM volume: `persistentVolumeClaim.claimName` or the DataVolume's
    name (a DataVolume's PVC has its name); None for other volume types."""
    if "persistentVolumeClaim" in volume:
        return (volume.get("persistentVolumeClaim") or {}).get("claimName") or None
    if "dataVolume" in volume:
        return (volume.get("dataVolume") or {}).get("name") or None
    return None


def choose_snapshot_class(
    storage_class: str, provisioner: str, snapshot_classes: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | str:
    """The VolumeSnapshotClass for a provisioner, or the reason there is none.

    One class with the provisioner as driver: that one. Several: the one
    annotated default. Several defaults are refused rather than guessed, as
    the CSI snapshotter does.
    """
    matches = [vsc for vsc in snapshot_classes if vsc.get("driver") == provisioner]
    shown = provisioner or "none"
    if not matches:
        return (
            f'storage class "{storage_class}" (provisioner {shown}) has no VolumeSnapshotClass; '
            f"create one with driver {shown}"
        )
    if len(matches) == 1:
        return matches[0]
    defaults = [vsc for vsc in matches if _is_default(vsc)]
    names = ", ".join(sorted(_name(vsc) for vsc in matches))
    if len(defaults) == 1:
        return defaults[0]
    if not defaults:
        return (
            f"{len(matches)} VolumeSnapshotClasses for driver {provisioner} ({names}) and none "
            f'is the default; annotate one with {DEFAULT_CLASS_ANNOTATION}: "true"'
        )
    default_names = ", ".join(sorted(_name(vsc) for vsc in defaults))
    return (
        f"{len(defaults)} VolumeSnapshotClasses for driver {provisioner} are marked default "
        f"({default_names}); keep the {DEFAULT_CLASS_ANNOTATION} annotation on one only"
    )


def _is_default(snapshot_class: Mapping[str, Any]) -> bool:
    annotations = (snapshot_class.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"  # exact, as KubeVirt and CSI


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")
