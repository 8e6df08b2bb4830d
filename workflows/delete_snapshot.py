"""`DeleteVirtualMachineSnapshot`: remove a snapshot's VolumeSnapshots, content and record.

  0. `_wait_for_claims`         with `after_claims_bound`: wait until each of those PVCs
                                is Bound or gone (a CSI provisioner refuses to provision
                                from a VolumeSnapshot being deleted, so a PVC waiting for
                                its first consumer would never bind); checks back off
                                from 2 s to 5 min, and the run continues as new after
                                100 of them, so a VM left stopped for months costs little
  1. `_prepare`                 refuse while the snapshot is being taken or is in use by
                                a running restore/clone; else phase Deleting
  2. `_delete_volume_snapshots` unless the deletion policy is Retain
  3. `_delete_content`
  4. `_delete_record`

Every step is idempotent, so a retried or repeated deletion finishes the job; nothing
is undone when one fails for good (the operation frame then fails the workflow with
the step's message and type). Workflow ID: `delete-snapshot/{namespace}/{name}`.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import rules.naming as naming
    import workflows.saga as saga
    from contracts.common import ObjectRef
    from contracts.delete_snapshot import (
        CLAIMS_NOT_BOUND,
        DELETE_SNAPSHOT_RECORD,
        PREPARE_SNAPSHOT_DELETION,
        WORKFLOW,
        ClaimsInput,
        DeleteVirtualMachineSnapshotInput,
        DeleteVirtualMachineSnapshotResult,
        DeletionPlan,
    )
    from contracts.snapshot import (
        DELETE_SNAPSHOT_CONTENT,
        DELETE_VOLUME_SNAPSHOTS,
        VolumeSnapshotsInput,
    )
    from workflows.admission import admit
    from workflows.frame import Operation

FIRST_CLAIM_CHECK_SECONDS = 2.0
LAST_CLAIM_CHECK_SECONDS = 300.0
CLAIM_CHECKS_PER_RUN = 100


@workflow.defn(name=WORKFLOW, failure_exception_types=[ValidationError])
class DeleteVirtualMachineSnapshot(
    Operation[DeleteVirtualMachineSnapshotInput, DeleteVirtualMachineSnapshotResult]
):
    def __init__(self) -> None:
        super().__init__()
        self._plan: DeletionPlan | None = None

    @workflow.run
    async def run(
        self, input: DeleteVirtualMachineSnapshotInput
    ) -> DeleteVirtualMachineSnapshotResult:
        self.begin(input, DeleteVirtualMachineSnapshotResult(
            namespace=input.namespace, name=input.name))
        await self.admitted(admit([input.namespace]))
        await self.run_steps(self._wait_for_claims())
        if self.result.awaited_claims:
            workflow.continue_as_new(input.model_copy(
                update={"after_claims_bound": self.result.awaited_claims}))
        await self.run_steps(self._delete())
        self.result.phase = "Succeeded"
        return self.finish()

    async def _delete(self) -> None:
        await self._prepare()
        await self._delete_volume_snapshots()
        await self._delete_content()
        await self._delete_record()

    @workflow.query(name="progress")
    def progress(self) -> str:
        return self.step

    def details(self) -> str:
        awaited = self.result.awaited_claims
        return (f"**{self.step}** snapshot {self.input.namespace}/{self.input.name}"
                + (f" · waits for {', '.join(awaited)}" if awaited else ""))

    # ---- steps ----------------------------------------------------------------------------

    async def _wait_for_claims(self) -> None:
        """Until the PVCs named are Bound or gone, or this run has checked enough."""
        input, result = self.input, self.result
        result.awaited_claims = list(input.after_claims_bound)
        delay = FIRST_CLAIM_CHECK_SECONDS
        for _ in range(CLAIM_CHECKS_PER_RUN):
            if not result.awaited_claims:
                return
            self.enter("wait for PVCs to bind")
            result.awaited_claims = await saga.step(CLAIMS_NOT_BOUND, ClaimsInput(
                namespace=input.namespace, names=result.awaited_claims))
            if result.awaited_claims:
                await workflow.sleep(delay)
                delay = min(delay * 2, LAST_CLAIM_CHECK_SECONDS)

    async def _prepare(self) -> None:
        self.enter("check")
        self._plan = await saga.step(PREPARE_SNAPSHOT_DELETION, self._record_ref())
        self.result.deletion_policy = self._plan.deletion_policy

    async def _delete_volume_snapshots(self) -> None:
        plan, result = self._require_plan(), self.result
        if plan.deletion_policy != "Delete":
            result.retained_volume_snapshots = list(plan.volume_snapshots)
            return
        self.enter("delete VolumeSnapshots")
        result.deleted_volume_snapshots = await saga.step(
            DELETE_VOLUME_SNAPSHOTS,
            VolumeSnapshotsInput(namespace=self.input.namespace, names=plan.volume_snapshots,
                                 snapshot=self.input.name))

    async def _delete_content(self) -> None:
        self.enter("delete content")
        content = self._require_plan().content_name or naming.content_name(self.input.name)
        self.result.content_deleted = await saga.step(
            DELETE_SNAPSHOT_CONTENT, ObjectRef(namespace=self.input.namespace, name=content))

    async def _delete_record(self) -> None:
        self.enter("delete record")
        self.result.record_deleted = await saga.step(DELETE_SNAPSHOT_RECORD, self._record_ref())

    # ---- helpers --------------------------------------------------------------------------

    def _record_ref(self) -> ObjectRef:
        return ObjectRef(namespace=self.input.namespace, name=self.input.name)

    def _require_plan(self) -> DeletionPlan:
        assert self._plan is not None, "the deletion is planned in step 1"
        return self._plan
