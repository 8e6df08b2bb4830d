"""The per-VM operation lock: one snapshot, restore or clone-from-VM at a time per VM."""

from __future__ import annotations

from pydantic import BaseModel, Field

from contracts.activity import ActivityRef
from contracts.common import VM_LOCKED as VM_LOCKED

LEASE_RENEWAL = "lock-lease-renewal"  # the patch (workflow.patched) that added renewals
LOCK_BEFORE_PLANNING = "restore-locks-before-planning"  # the patch: a restore's plan is
# read under the target's lock, taken by the planning step
LOCK_WAIT_FIRST = 1.0  # seconds a snapshot waits before asking for a held lock again
LOCK_WAIT_MAX = 30.0
LOCK_LOST = "LockLost"  # a holder's lease ended and the lock is another's (ApplicationError)
DEFAULT_LEASE_SECONDS = 600.0
"""How long a claim lasts unless renewed: a holder of another deployment whose workers
died blocks the VM at most this long."""
LEASE_GRACE_SECONDS = 120.0
"""Beyond a run's failure deadline, for its saga to undo and release (the lease then
needs no renewal: the deadline ends the run first)."""
RENEW_EVERY_SECONDS = DEFAULT_LEASE_SECONDS / 3


def lease_for(time_left_seconds: float | None) -> tuple[float, bool]:
    """(lease, whether the run must renew it): a run whose deadline ends before the
    default lease is over holds a lease to its deadline and saga; a run without a
    deadline, or with a longer one, holds the default lease and renews it."""
    if time_left_seconds is not None and \
            time_left_seconds + LEASE_GRACE_SECONDS <= DEFAULT_LEASE_SECONDS:
        return max(time_left_seconds, 0.0) + LEASE_GRACE_SECONDS, False
    return DEFAULT_LEASE_SECONDS, True


class VmLockInput(BaseModel):
    namespace: str
    vm: str
    operation: str = Field(description='what the holder does: "snapshot", "restore", "clone"')
    held: str | None = Field(
        default=None, description="the lock annotation this run wrote, when known: the "
        "release (or renewal) is then one request that the server refuses if the lock "
        "changed")
    lease_seconds: float = Field(
        default=DEFAULT_LEASE_SECONDS, gt=0, le=86400,
        description="how long the claim lasts from now unless renewed")


LOCK_VM = ActivityRef("lock_vm", VmLockInput, type(None))
RENEW_VM_LOCK = ActivityRef("renew_vm_lock", VmLockInput, str)
UNLOCK_VM = ActivityRef("unlock_vm", VmLockInput, bool)
