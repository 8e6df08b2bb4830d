"""`DeleteVirtualMachineSnapshot`: remove a snapshot's VolumeSnapshots, content and record.

  1. `prepare_snapshot_deletion`  refuse while the snapshot is being taken or is in
                                  use by a running restore/clone; else phase Deleting
  2. `delete_volume_snapshots`    unless the deletion policy is Retain
  3. `delete_snapshot_content`
  4. `delete_snapshot_record`

Every step is idempotent, so a retried or repeated deletion finishes the job.
Workflow ID: `delete-snapshot/{namespace}/{name}`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import activities.names as names
    import rules.naming as naming
    from activities.models import DeletionPlan, ObjectRef, VolumeSnapshotsInput
    from workflows.failures import step_failure
    from workflows.models import (
        DeleteVirtualMachineSnapshotInput,
        DeleteVirtualMachineSnapshotResult,
    )

T = TypeVar("T")

STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10))


@workflow.defn(name="DeleteVirtualMachineSnapshot", failure_exception_types=[ValidationError])
class DeleteVirtualMachineSnapshot:
    def __init__(self) -> None:
        self._step = "starting"

    @workflow.run
    async def run(
        self, input: DeleteVirtualMachineSnapshotInput
    ) -> DeleteVirtualMachineSnapshotResult:
        ref = ObjectRef(namespace=input.namespace, name=input.name)
        plan = await self._step_activity("check", names.PREPARE_SNAPSHOT_DELETION, ref,
                                         DeletionPlan)
        result = DeleteVirtualMachineSnapshotResult(
            namespace=input.namespace, name=input.name, deletion_policy=plan.deletion_policy)
        if plan.deletion_policy == "Delete":
            result.deleted_volume_snapshots = await self._step_activity(
                "delete VolumeSnapshots", names.DELETE_VOLUME_SNAPSHOTS,
                VolumeSnapshotsInput(namespace=input.namespace, names=plan.volume_snapshots,
                                     snapshot=input.name),
                list[str])
        else:
            result.retained_volume_snapshots = list(plan.volume_snapshots)
        content = plan.content_name or naming.content_name(input.name)
        result.content_deleted = await self._step_activity(
            "delete content", names.DELETE_SNAPSHOT_CONTENT,
            ObjectRef(namespace=input.namespace, name=content), bool)
        result.record_deleted = await self._step_activity(
            "delete record", names.DELETE_SNAPSHOT_RECORD, ref, bool)
        self._enter("done")
        return result

    @workflow.query(name="progress")
    def progress(self) -> str:
        return self._step

    def _enter(self, step: str) -> None:
        self._step = step
        workflow.set_current_details(f"**{step}**")

    async def _step_activity(
        self, step: str, name: str, arg: object, result_type: type[T]
    ) -> T:
        """Run a step; its failure fails the workflow with the activity's message and type."""
        self._enter(step)
        try:
            return await workflow.execute_activity(
                name, arg, result_type=result_type, start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY)
        except ActivityError as err:
            raise step_failure(step, err) from err
