"""The per-VM operation lock: one snapshot, restore or clone-from-VM at a time per VM."""

from __future__ import annotations

from pydantic import BaseModel, Field

from contracts.activity import ActivityRef


class VmLockInput(BaseModel):
    namespace: str
    vm: str
    operation: str = Field(description='what the holder does: "snapshot", "restore", "clone"')
    held: str | None = Field(
        default=None, description="the lock annotation this run wrote, when known: the "
        "release is then one request that the server refuses if the lock changed")


LOCK_VM = ActivityRef("lock_vm", VmLockInput, type(None))
UNLOCK_VM = ActivityRef("unlock_vm", VmLockInput, bool)
