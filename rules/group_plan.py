"""Which disks of a snapshot are cut together by one VolumeGroupSnapshot.

A VolumeGroupSnapshot asks the CSI driver for one point-in-time cut of several volumes
(`groupsnapshot.storage.k8s.io/v1`): the disks of a VM then agree with each other even
when the guest could not be frozen. A group takes the volumes of one driver only, so
the plan makes one group per driver:

- `auto` (the default): the disks of a driver that has a default VolumeGroupSnapshotClass
  (annotation `groupsnapshot.storage.kubernetes.io/is-default-class: "true"`), when the
  VM has at least two of them; every other disk is cut by a VolumeSnapshot of its own;
- `required`: every disk is in its driver's group, a lone disk too; a disk whose driver
  has no default group class refuses the snapshot before the guest is frozen;
- `never`: every disk by a VolumeSnapshot of its own.

A group selects its PVCs by one label (`rules.naming.cut_label_key`), written on them
for the time of the cut. Pure: the classes come as the API lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from rules.models import IncludedVolume
from rules.naming import cut_label_key, group_snapshot_name, label_value

GroupSnapshotMode = Literal["auto", "required", "never"]
DEFAULT_GROUP_CLASS_ANNOTATION = "groupsnapshot.storage.kubernetes.io/is-default-class"


class PlannedGroup(BaseModel):
    """One VolumeGroupSnapshot to make: its name, class, and the disks it cuts."""

    name: str
    group_class: str
    driver: str
    volumes: list[str] = Field(description="the volume names it cuts, in the VM's order")
    pvcs: list[str] = Field(description="their PVCs, in the same order")
    label_key: str = Field(description="the label its selector matches; the group's name "
                           "(as a label value) is the value")

    @property
    def label_value(self) -> str:
        return label_value(self.name)


class GroupPlan(BaseModel):
    """The groups, and for `required`, the disks that no group can take."""

    groups: list[PlannedGroup] = Field(default_factory=list)
    refusal: str | None = Field(
        default=None, description="group snapshots are required and some disk has no "
        "default VolumeGroupSnapshotClass for its driver")


def default_group_classes(classes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Driver -> its default VolumeGroupSnapshotClass. A driver with several defaults has
    none (the group snapshot controller refuses such a group too); not being deleted."""
    found: dict[str, list[str]] = {}
    for group_class in classes:
        metadata = group_class.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        if annotations.get(DEFAULT_GROUP_CLASS_ANNOTATION) != "true":
            continue
        if metadata.get("deletionTimestamp") or not group_class.get("driver"):
            continue
        found.setdefault(str(group_class["driver"]), []).append(str(metadata.get("name")))
    return {driver: names[0] for driver, names in found.items() if len(names) == 1}


def plan_groups(
    snapshot: str,
    namespace: str,
    included: Sequence[IncludedVolume],
    group_classes: Iterable[Mapping[str, Any]],
    mode: GroupSnapshotMode,
) -> GroupPlan:
    """The groups of a snapshot of `included` (see the module docstring)."""
    if mode not in ("auto", "required", "never"):
        raise ValueError(f"group snapshot mode must be auto, required or never, not {mode!r}")
    if mode == "never" or not included:
        return GroupPlan()
    defaults = default_group_classes(group_classes)
    by_driver: dict[str, list[IncludedVolume]] = {}
    for volume in included:
        by_driver.setdefault(volume.driver, []).append(volume)
    groups: list[PlannedGroup] = []
    missing: list[str] = []
    for driver, volumes in by_driver.items():
        group_class = defaults.get(driver)
        if group_class is None:
            missing += [f"{v.volume_name} (driver {driver})" for v in volumes]
            continue
        if mode == "auto" and len(volumes) < 2:
            continue
        name = group_snapshot_name(snapshot, driver)
        groups.append(PlannedGroup(
            name=name, group_class=group_class, driver=driver,
            volumes=[v.volume_name for v in volumes], pvcs=[v.pvc_name for v in volumes],
            label_key=cut_label_key(namespace, name)))
    refusal = None
    if mode == "required" and missing:
        refusal = (f"group snapshots are required and no default VolumeGroupSnapshotClass "
                   f"takes these disks: {', '.join(missing)}")
    return GroupPlan(groups=groups, refusal=refusal)
