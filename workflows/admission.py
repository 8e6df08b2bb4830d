"""`admit`: every workflow's first step, the worker's scope and policy applied to its
request (`contracts.admission`). A refusal fails the run with the admission's error
type; nothing has been read or written, so nothing is undone. An admitted run learns
the id of the cluster it works in, for its children's workflow IDs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.saga as saga
    from contracts.admission import ADMIT_REQUEST, AdmissionRequest
    from workflows.failures import describe

ADMISSION_TIMEOUT = timedelta(seconds=10)
ADMISSION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


async def admit(namespaces: Sequence[str], *, all_namespaces: bool = False,
                patches: Sequence[str] = (), freeze_budget: float | None = None) -> str:
    """One local activity (a marker in the history): the cluster id, or the refusal."""
    try:
        grant = await saga.local_step(
            ADMIT_REQUEST, AdmissionRequest(namespaces=list(namespaces),
                                            all_namespaces=all_namespaces,
                                            patches=list(patches),
                                            freeze_budget=freeze_budget),
            start_to_close=ADMISSION_TIMEOUT, retry=ADMISSION_RETRY)
    except ActivityError as err:
        message, error_type = describe(err)
        raise ApplicationError(message, type=error_type, non_retryable=True) from None
    return grant.cluster
