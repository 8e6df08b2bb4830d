"""What every operation shares: the task queue, object references, common error types."""

from __future__ import annotations

from pydantic import BaseModel

TASK_QUEUE = "vmsnap"
"""The default task queue of the worker and of every client."""

FREEZE_QUEUE_SUFFIX = ".freeze"


def freeze_task_queue(task_queue: str) -> str:
    """The task queue of the cuts that freeze a guest, beside a worker's `task_queue`.

    Its worker runs in a process of its own with one activity slot per guest it may hold
    frozen (VMSNAP_MAX_FREEZES_IN_FLIGHT): a snapshot waits for its turn in this queue,
    before anything is frozen, and no other work of the worker shares the interpreter of
    a frozen guest's cut. A cluster id has no '.', so no cluster's task queue
    (`vmsnap-{cluster id}`) is another's freeze queue.
    """
    return f"{task_queue}{FREEZE_QUEUE_SUFFIX}"

# Error types (ApplicationError.type) the activities of several operations raise;
# workflows and users match on them (workflows/README.md lists them).
VM_NOT_FOUND = "VmNotFound"
VM_NOT_RUNNING = "VmNotRunning"
VM_LOCKED = "VmLocked"
SNAPSHOT_ALREADY_EXISTS = "SnapshotAlreadyExists"
SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
SNAPSHOT_IN_PROGRESS = "SnapshotInProgress"
SNAPSHOT_IN_USE = "SnapshotInUse"
SNAPSHOT_NOT_READY = "SnapshotNotReady"
FREEZE_FAILED = "FreezeFailed"
CUT_FAILED = "CutFailed"
# quiesce required, and the guest was thawed before the cut (the freeze budget passed, or
# the guest's own freeze limit): the cut would be crash-consistent
QUIESCE_TIMED_OUT = "QuiesceTimedOut"
# group_snapshot required: some disk's driver has no default VolumeGroupSnapshotClass
NO_GROUP_SNAPSHOT_CLASS = "NoGroupSnapshotClass"
# group_snapshot required: a VolumeGroupSnapshot failed (driver error) or took other PVCs
GROUP_SNAPSHOT_FAILED = "GroupSnapshotFailed"
GROUP_SNAPSHOTS_NOT_GONE = "GroupSnapshotsNotGone"  # retried: a deleted group still goes
VOLUME_SNAPSHOT_CONFLICT = "VolumeSnapshotConflict"
VOLUME_SNAPSHOT_MISSING = "VolumeSnapshotMissing"
VOLUME_SNAPSHOTS_NOT_READY = "VolumeSnapshotsNotReady"
PVC_MISSING = "PvcMissing"
VOLUME_NOT_POPULATED = "VolumeNotPopulated"  # a DataVolume still imports: retried
CANCELED = "Canceled"
INVALID_VALUE = "InvalidValue"  # a step's input could not be computed (overflow, range)


class ObjectRef(BaseModel):
    """A namespaced object by name (a snapshot record, a content, a VM)."""

    namespace: str
    name: str
