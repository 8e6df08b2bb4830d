"""The steps restore and clone share: new PVCs from a snapshot's VolumeSnapshots, Bound.

Both make one PVC per backed-up volume (`{operation}-{volume}`, labelled with the
operation that made it), wait until every one is Bound within `bound_wait`, and on
failure delete the PVCs that carry their label, never any other.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.saga as saga
    from contracts.restore import (
        CREATE_RESTORED_PVCS,
        DELETE_RESTORED_PVCS,
        WAIT_RESTORED_PVCS_BOUND,
        CreatePvcsInput,
        PvcsInput,
        RestoredVolumeResult,
        RestorePlan,
        VolumeRestorePolicy,
    )

WAIT_GRACE = timedelta(seconds=60)  # past a wait's own bound: the bound decides, not the timeout
WAIT_HEARTBEAT = timedelta(seconds=30)


class RestoredPvcs:
    """The PVCs one restore or clone makes, and their undo."""

    def __init__(self, namespace: str, owner: str, owner_label: str, what: str,
                 policy: VolumeRestorePolicy = "RandomizeNames") -> None:
        self.namespace = namespace
        self.policy = policy  # how the PVCs are named (the restore's volume_restore_policy)
        self.what = what  # how the saga names them: "the restored PVCs", "the clone's PVCs"
        self.owner = owner  # the restore's or clone's name: the label's value
        self.owner_label = owner_label
        self.volumes: list[RestoredVolumeResult] = []

    def plan(self, plan: RestorePlan) -> list[RestoredVolumeResult]:
        """The volumes the plan restores, as the result reports them."""
        self.volumes = [RestoredVolumeResult(volume_name=v.volume_name,
                                             volume_snapshot=v.volume_snapshot,
                                             pvc_name=v.pvc_name) for v in plan.volumes]
        return self.volumes

    async def create(self, saga_: saga.Saga, plan: RestorePlan) -> None:
        """Every PVC at once (AlreadyExists of our own is success); undone by `delete`. The
        activity plans their bodies again from the snapshot's content (by reference)."""
        saga_.add(f"delete {self.what}", self.delete)
        await saga.step(CREATE_RESTORED_PVCS, CreatePvcsInput(
            namespace=self.namespace, source=plan.source, owner=self.owner,
            owner_label=self.owner_label, target=plan.target,
            volume_restore_policy=self.policy, names=[v.pvc_name for v in plan.volumes],
            fresh_persistent_state=plan.fresh_persistent_state))

    async def wait_bound(self, plan: RestorePlan, bound_wait: float, *,
                         pending_for_consumer_is_ready: bool = False) -> None:
        """Every PVC Bound within `bound_wait` seconds; each one's phase in the result.
        `pending_for_consumer_is_ready`: on WaitForFirstConsumer storage with nothing
        running the VM yet, Pending is as far as a PVC goes (KubeVirt counts it ready)."""
        if not plan.volumes:
            return
        bound = timedelta(seconds=bound_wait)
        states = await saga.step(
            WAIT_RESTORED_PVCS_BOUND,
            PvcsInput(namespace=self.namespace, names=[v.pvc_name for v in plan.volumes],
                      timeout_seconds=bound_wait,
                      pending_for_consumer_is_ready=pending_for_consumer_is_ready
                      and plan.waits_for_consumer),
            start_to_close=bound + WAIT_GRACE, heartbeat=WAIT_HEARTBEAT,
            schedule_to_close=bound + WAIT_GRACE * 2)
        phases = {s.name: s.phase for s in states}
        for volume in self.volumes:
            volume.phase = phases.get(volume.pvc_name)

    async def delete(self) -> None:
        """Delete the PVCs this operation made (by its label): harmless when none exist."""
        await saga.compensation(DELETE_RESTORED_PVCS, PvcsInput(
            namespace=self.namespace, names=[v.pvc_name for v in self.volumes],
            restore_name=self.owner, owner_label=self.owner_label))
