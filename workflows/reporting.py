"""Best-effort reporting from the workflows: a Kubernetes Event on the VM, as KubeVirt does.

An Event that cannot be written never changes an operation's outcome: the call
is retried briefly and a failure is logged, not raised.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.events import RECORD_VM_EVENT, VmEventInput

REPORT_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3)
REPORT_TIMEOUT = timedelta(seconds=30)


async def record_vm_event(
    *,
    namespace: str,
    vm: str,
    reason: str,
    message: str,
    ok: bool,
    action: Literal["Snapshot", "Restore", "Clone", "Delete"],
    snapshot: str | None = None,
) -> None:
    """An Event on `vm` (Normal when `ok`, else Warning); a VM that is gone gets none."""
    event = VmEventInput(
        namespace=namespace, vm=vm, reason=reason, message=message,
        type="Normal" if ok else "Warning", action=action, snapshot=snapshot)
    try:
        await workflow.execute_activity(
            RECORD_VM_EVENT, event, start_to_close_timeout=REPORT_TIMEOUT,
            retry_policy=REPORT_RETRY)
    except ActivityError as error:
        workflow.logger.warning("the %s Event on %s/%s failed: %s", reason, namespace, vm, error)
