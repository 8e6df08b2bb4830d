"""Whether to freeze the guest, and the indications that tell the user what happened.

Pure (workflow-safe). Indications follow KubeVirt: `Online` (the VM has an
instance), `GuestAgent` / `NoGuestAgent` (for an online VM), `Paused`,
`PartialSnapshot`; vmsnap adds the quiesce outcome when the guest was not
frozen although it could have been: `QuiesceFailed` (quiesce `auto`, the
freeze failed: the cut is crash-consistent), `QuiesceSkipped` (quiesce
`skip`) and KubeVirt's `QuiesceTimeout` (thawed before the cut because the
freeze bound passed).

The guest is frozen when the VM runs, the agent is connected and the VM is
not paused, unless quiesce is `skip`. With `required`, an online VM that
cannot be frozen is refused before anything is made; a stopped VM needs no
freeze (its disks are at rest).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.snapshot import (
    GROUP_SNAPSHOT_FALLBACK,
    GUEST_AGENT,
    NO_GUEST_AGENT,
    ONLINE,
    PARTIAL_SNAPSHOT,
    PAUSED,
    QUIESCE_FAILED,
    QUIESCE_SKIPPED,
    QUIESCE_TIMEOUT,
    RESTART_REQUIRED,
    Consistency,
    Quiesce,
)
from rules.models import VmState

MESSAGES: dict[str, str] = {
    ONLINE: "the VM was running during the snapshot",
    GUEST_AGENT: "the guest agent was connected",
    NO_GUEST_AGENT: "no guest agent was connected: the filesystems were not frozen, "
    "the snapshot is crash-consistent",
    PAUSED: "the VM was paused: it was not frozen, the snapshot is crash-consistent",
    PARTIAL_SNAPSHOT: "some PVC or DataVolume volumes were left out (see excludedVolumeReasons)",
    QUIESCE_FAILED: "freezing the filesystems failed: the snapshot is crash-consistent",
    QUIESCE_SKIPPED: "quiesce was skip: the filesystems were not frozen, the snapshot is "
    "crash-consistent",
    QUIESCE_TIMEOUT: "the guest was thawed before every volume was cut (the freeze bound "
    "passed): the snapshot is crash-consistent",
    GROUP_SNAPSHOT_FALLBACK: "a VolumeGroupSnapshot failed or took other PVCs than planned: "
    "its disks were cut by VolumeSnapshots of their own, not at one point in time",
    RESTART_REQUIRED: "the VM had changes waiting for a restart: the snapshot holds the spec "
    "it ran, not the edited one",
}


@dataclass
class QuiescePlan:
    freeze: bool
    indications: list[str] = field(default_factory=list)
    refusal: str | None = None


def plan_quiesce(vm: VmState, quiesce: Quiesce) -> QuiescePlan:
    """What to do about the guest's filesystems, from the VM's state and the quiesce mode."""
    indications: list[str] = []
    online = vm.vmi_exists
    if online:
        indications.append(ONLINE)
        indications.append(GUEST_AGENT if vm.agent_connected else NO_GUEST_AGENT)
        if vm.paused:
            indications.append(PAUSED)
    freezable = vm.running and vm.agent_connected and not vm.paused
    if not online:
        return QuiescePlan(freeze=False, indications=indications)
    if quiesce == "skip":
        if freezable:
            indications.append(QUIESCE_SKIPPED)
        return QuiescePlan(freeze=False, indications=indications)
    if freezable:
        return QuiescePlan(freeze=True, indications=indications)
    refusal = None
    if quiesce == "required":
        why = ("the VM is paused" if vm.paused
               else "no guest agent is connected" if not vm.agent_connected
               else f"its instance is not running (phase {vm.vmi_phase or 'unknown'})")
        refusal = f"quiesce is required but the guest cannot be frozen: {why}"
    return QuiescePlan(freeze=False, indications=indications, refusal=refusal)


def consistency(vm: VmState, quiesced: bool) -> Consistency:
    """What the cut holds: `application` when the guest agent kept the filesystems frozen
    for the whole cut (its freeze runs the guest's hooks and, on Windows, VSS writers),
    `filesystem` when the VM did not run (its disks were at rest), else `crash` (no agent,
    paused, a freeze that failed or was skipped, or a guest that thawed before the cut)."""
    if quiesced:
        return "application"
    return "crash" if vm.vmi_exists else "filesystem"
