"""The users of a snapshot record: the restores and clones working from it right now.

A restore or clone registers its run in the record's `vmsnap.io/in-use-by` annotation (a
JSON list of `LockHolder`s) while it makes volumes from the snapshot, and unregisters when
done, so a deletion refuses while they run. The deletion first drops the users whose runs
have ended (`remove_stale_snapshot_users`, the caller says which runs live), so a restore
that died without unregistering does not hold the snapshot forever. Each change is a
read-modify-write under the record's resourceVersion, retried on conflict.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

from collections.abc import Callable

from cluster.apis import KubeApis
from cluster.errors import Conflict, NotFound
from cluster.lock import LockHolder
from cluster.record_kinds import USERS_ANNOTATION, VIRTUAL_MACHINE_SNAPSHOTS
from cluster.snapshot_record import SnapshotRecord, snapshot_record_from

_ATTEMPTS = 5


def add_snapshot_user(
    apis: KubeApis, namespace: str, name: str, user: LockHolder
) -> SnapshotRecord:
    """Register `user` (idempotent per run); NotFound if the record does not exist."""
    return _change_users(apis, namespace, name, lambda users: [
        *[u for u in users if not u.same_run(user)], user])


def remove_snapshot_user(apis: KubeApis, namespace: str, name: str, user: LockHolder) -> bool:
    """Unregister `user`; False when the record is gone."""
    try:
        _change_users(apis, namespace, name,
                      lambda users: [u for u in users if not u.same_run(user)])
    except NotFound:
        return False
    return True


def remove_stale_snapshot_users(
    apis: KubeApis, namespace: str, name: str, is_alive: Callable[[LockHolder], bool]
) -> list[LockHolder]:
    """Drop users that no longer run; the live ones are returned."""
    live: list[LockHolder] = []

    def keep_live(users: list[LockHolder]) -> list[LockHolder]:
        live[:] = [u for u in users if is_alive(u)]
        return list(live)

    _change_users(apis, namespace, name, keep_live)
    return live


def _change_users(
    apis: KubeApis,
    namespace: str,
    name: str,
    change: Callable[[list[LockHolder]], list[LockHolder]],
) -> SnapshotRecord:
    for _ in range(_ATTEMPTS):
        obj = apis.get_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name)
        record = snapshot_record_from(obj)
        users = change(list(record.users))
        if [u.to_annotation() for u in users] == [u.to_annotation() for u in record.users]:
            return record
        value = ("[" + ",".join(u.to_annotation() for u in users) + "]") if users else None
        patch = {"metadata": {"resourceVersion": record.resource_version,
                              "annotations": {USERS_ANNOTATION: value}}}
        try:
            return snapshot_record_from(
                apis.patch_custom(VIRTUAL_MACHINE_SNAPSHOTS, namespace, name, patch))
        except Conflict:
            continue
    raise Conflict(f"VirtualMachineSnapshot {namespace}/{name} kept changing",
                   status=409, reason="Conflict")
