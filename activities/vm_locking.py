"""Taking a VM's operation lock from an activity: who this run is as a holder, whose
claim still holds, and the refusal a workflow matches on (`VmLocked`).

Shared by the snapshot's lock steps and the restore's planning step, which takes the
lock on the target before it reads anything it plans from (cluster.lock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import cluster_errors
from activities.liveness import WorkflowLiveness
from cluster.client import Cluster
from cluster.lock import LockHolder, VmLocked, acquire_vm_lock, holder_is_alive
from contracts import common as error_types


def _now() -> datetime:
    return datetime.now(UTC)


def run_holder(operation: str) -> LockHolder:
    """This activity's workflow run as a lock holder (no deployment, no lease): what
    release and the snapshot's users compare by run."""
    info = activity.info()
    return LockHolder(workflow_id=info.workflow_id or "", run_id=info.workflow_run_id or "",
                      operation=operation, since=_now().replace(microsecond=0))


def leased_holder(cluster: Cluster, operation: str, lease_seconds: float) -> LockHolder:
    """This run as a lock holder of this deployment, its lease ending `lease_seconds`
    from now."""
    holder = run_holder(operation).model_copy(update={
        "cluster": cluster.cluster_id,
        "temporal_namespace": activity.info().workflow_namespace})
    return holder.renewed(lease_seconds, _now())


def run_is_open(liveness: WorkflowLiveness | None) -> Callable[[LockHolder], bool]:
    """Whether a holder's run is still open, asked of Temporal; without `liveness` every
    holder counts as open (nothing is taken over)."""
    return (lambda _: True) if liveness is None else liveness.is_running


def claim_holds(me: LockHolder,
                run_is_open: Callable[[LockHolder], bool]) -> Callable[[LockHolder], bool]:
    """Whether a current holder's claim still holds against `me` (cluster.lock)."""
    return lambda current: holder_is_alive(current, me, _now(), run_is_open)


@contextlib.contextmanager
def refused_if_locked() -> Iterator[None]:
    """A lock another claim holds (VmLocked) fails the step for good, as VmLocked."""
    try:
        yield
    except ApplicationError as err:
        if isinstance(err.__cause__, VmLocked):
            raise ApplicationError(str(err.message), type=error_types.VM_LOCKED,
                                   non_retryable=True) from err
        raise


def log_takeover(namespace: str, vm: str, stale: LockHolder | None) -> None:
    if stale is not None:
        activity.logger.warning("took over the lock of %s/%s from %s", namespace, vm,
                                stale.describe())


def take_vm_lock(cluster: Cluster, namespace: str, vm: str, holder: LockHolder,
                 run_is_open: Callable[[LockHolder], bool],
                 read: dict[str, Any] | None = None) -> None:
    """Take the lock for `holder` (idempotent for its run); VmLocked (final) while another
    claim holds, VmNotFound when the VM does not exist."""
    with refused_if_locked(), cluster_errors(not_found=error_types.VM_NOT_FOUND):
        stale = acquire_vm_lock(cluster, namespace, vm, holder,
                                claim_holds(holder, run_is_open), read=read)
    log_takeover(namespace, vm, stale)
