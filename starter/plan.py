"""`vmsnap snapshot plan VM`: what a snapshot of the VM would do now, changing nothing.

It answers, in one command, what users otherwise check by hand (is the VM
running? paused? is `AgentConnected` there? which disks have a
VolumeSnapshotClass?) with the same rules the workflow applies:
`rules.volumes.select_volumes` for the disks and `workflows.quiesce` for the
freeze and the indications. Only GET and LIST requests reach the cluster.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from cluster.client import Cluster
from cluster.lock import LOCK_ANNOTATION, LockHolder
from cluster.vms import vm_state_from
from contracts.snapshot import PARTIAL_SNAPSHOT, Quiesce
from rules.models import VmState, VolumeSelection
from workflows.quiesce import MESSAGES, plan_quiesce

VmCondition = Literal["Running", "Paused", "Stopped", "Starting", "Other"]


class DiskPlan(BaseModel):
    """One volume of the VM spec: in the snapshot or not, and why."""

    volume_name: str
    included: bool
    pvc_name: str | None = None
    storage_class: str | None = None
    snapshot_class: str | None = None
    hotpluggable: bool = False
    reason: str | None = Field(default=None, description="why it is left out")


class SnapshotPlan(BaseModel):
    """The answer of `plan`: a snapshot's outcome, predicted from the cluster's state now."""

    namespace: str
    vm: str
    state: VmCondition
    printable_status: str | None
    run_strategy: str | None
    guest_agent: bool | None = Field(description="AgentConnected; None when not running")
    quiesce: Quiesce
    will_freeze: bool
    consistency: Literal["application", "crash"] = Field(
        description="application-consistent when frozen (or stopped: disks at rest)")
    indications: list[str]
    indication_messages: dict[str, str]
    disks: list[DiskPlan]
    possible: bool
    problems: list[str] = Field(default_factory=list, description="why it is not possible")
    warnings: list[str] = Field(default_factory=list)
    lock: LockHolder | None = None


def vm_condition(vm: VmState) -> VmCondition:
    if not vm.vmi_exists:
        return "Stopped"
    if vm.paused:
        return "Paused"
    if vm.running:
        return "Running"
    if vm.vmi_phase in (None, "Pending", "Scheduling", "Scheduled"):
        return "Starting"
    return "Other"


def build_plan(
    vm: VmState,
    volumes: VolumeSelection,
    quiesce: Quiesce = "auto",
    lock: LockHolder | None = None,
    volume_order: list[str] | None = None,
) -> SnapshotPlan:
    """The plan from what was read; pure (the workflow's own rules, applied in advance)."""
    decision = plan_quiesce(vm, quiesce)
    indications = list(decision.indications)
    if volumes.partial:
        indications.append(PARTIAL_SNAPSHOT)
    disks = [DiskPlan(volume_name=v.volume_name, included=True, pvc_name=v.pvc_name,
                      storage_class=v.storage_class, snapshot_class=v.snapshot_class,
                      hotpluggable=v.hotpluggable) for v in volumes.included]
    disks += [DiskPlan(volume_name=v.volume_name, included=False, pvc_name=v.pvc_name,
                       reason=v.reason) for v in volumes.excluded]
    if volume_order:
        position = {name: i for i, name in enumerate(volume_order)}
        disks.sort(key=lambda d: position.get(d.volume_name, len(position)))
    problems: list[str] = []
    if not volumes.included:
        problems.append(
            "no eligible disk: no volume is a Bound PVC whose storage class has a "
            "VolumeSnapshotClass" if volumes.excluded
            else "no eligible disk: the VM has no volumes")
    if decision.refusal:
        problems.append(decision.refusal)
    warnings: list[str] = []
    if lock is not None:
        warnings.append(f"the VM is locked by {lock.describe()}: a snapshot now is refused "
                        "while that operation runs (a lock left by a run that ended is "
                        "taken over)")
    if vm.fs_freeze_status == "frozen":
        warnings.append("the guest's filesystems are frozen right now (fsFreezeStatus frozen)")
    if vm.vmi_exists and not decision.freeze and quiesce != "skip" and not problems:
        warnings.append("the guest cannot be frozen: the snapshot will be crash-consistent")
    stopped = not vm.vmi_exists
    return SnapshotPlan(
        namespace=vm.namespace, vm=vm.name, state=vm_condition(vm),
        printable_status=vm.printable_status, run_strategy=vm.run_strategy,
        guest_agent=vm.agent_connected if vm.vmi_exists else None, quiesce=quiesce,
        will_freeze=decision.freeze,
        consistency="application" if decision.freeze or stopped else "crash",
        indications=indications,
        indication_messages={i: MESSAGES.get(i, i) for i in indications},
        disks=disks, possible=not problems, problems=problems, warnings=warnings, lock=lock,
    )


def plan_snapshot(
    cluster: Cluster, namespace: str, vm: str, quiesce: Quiesce = "auto"
) -> SnapshotPlan:
    """Read the VM, its instance, PVCs and classes; NotFound when the VM is absent."""
    obj: dict[str, Any] = cluster.get_vm(namespace, vm)
    state = vm_state_from(obj, cluster.get_vmi(namespace, vm))
    volumes = cluster.select_volumes(namespace, vm)
    annotation = ((obj.get("metadata") or {}).get("annotations") or {}).get(LOCK_ANNOTATION)
    try:
        lock = LockHolder.from_annotation(annotation) if annotation else None
    except ValueError:
        lock = None  # a malformed lock is the workflow's business, not the plan's
    spec_volumes = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "volumes") or []
    order = [str(v.get("name")) for v in spec_volumes if isinstance(v, dict)]
    return build_plan(state, volumes, quiesce, lock, order)
