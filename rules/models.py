"""Typed views of cluster objects that cross the activity/workflow boundary.

Pydantic only, no `kubernetes` import: Temporal workflows import these models
(through the pydantic data converter) and the workflow sandbox refuses the
Kubernetes client. The adapter builds them from the raw API objects.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class VmState(BaseModel):
    """What the snapshot needs to know about a VM and its running instance."""

    namespace: str
    name: str
    uid: str
    run_strategy: str | None = Field(
        description="spec.runStrategy, or Always/Halted derived from the legacy spec.running"
    )
    vmi_exists: bool
    running: bool = Field(description="a VMI exists and its phase is Running")
    paused: bool = Field(description="the VMI has condition Paused=True: never freeze it")
    agent_connected: bool = Field(description="the VMI has an AgentConnected condition")
    fs_freeze_status: str | None = Field(description='"frozen" while a freeze is in force')
    printable_status: str | None
    vmi_phase: str | None = None
    resource_version: str | None = None
    restart_required: bool = Field(
        default=False, description="the VM has template changes waiting for a restart: "
        "it runs the spec it started with")
    freeze_budget: str | None = Field(
        default=None, description="the VM's annotation vmsnap.io/freeze-budget, as written "
        "(read by rules.freeze_budget)")


class IncludedVolume(BaseModel):
    """A VM volume that will be snapshotted, with the class that will snapshot it."""

    volume_name: str
    pvc_name: str
    storage_class: str
    snapshot_class: str
    driver: str
    hotpluggable: bool = False


class ExcludedVolume(BaseModel):
    """A VM volume left out of the snapshot, and why, in words a user can act on."""

    volume_name: str
    reason: str
    snapshottable_type: bool = Field(
        description="True for PVC/DataVolume volumes (their absence makes the snapshot "
        "partial); False for containerDisk, cloud-init, emptyDisk and other volume types"
    )
    pvc_name: str | None = None


class VolumeSelection(BaseModel):
    """The outcome of the eligibility rules for one VM, in the order of its volumes."""

    included: list[IncludedVolume]
    excluded: list[ExcludedVolume]

    @property
    def partial(self) -> bool:
        """Some disk that could hold data is left out (KubeVirt's PartialSnapshot indication)."""
        return any(volume.snapshottable_type for volume in self.excluded)


class VolumeSnapshotState(BaseModel):
    """A `snapshot.storage.k8s.io/v1` VolumeSnapshot as the workflows follow it."""

    name: str
    creation_time: datetime | None = Field(description="set once the storage took the cut")
    ready_to_use: bool
    restore_size: str | None
    error: str | None = Field(description="status.error.message; it may appear and clear again")
    bound_content: str | None
    source_pvc: str | None = None
    snapshot_class: str | None = None
    deleting: bool = False
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def cut(self) -> bool:
        return self.creation_time is not None


class PvcState(BaseModel):
    """A PersistentVolumeClaim as restore and clone follow it."""

    name: str
    phase: str | None
    storage_class: str | None
    requested: str | None = Field(description="spec.resources.requests.storage")
    capacity: str | None = Field(description="status.capacity.storage once bound")
    volume_name: str | None
    data_source: str | None = Field(description="name of the VolumeSnapshot it was made from")
    deleting: bool = False

    @property
    def bound(self) -> bool:
        return self.phase == "Bound"
