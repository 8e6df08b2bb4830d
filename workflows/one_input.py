"""Every vmsnap workflow takes exactly one input: a start with none or with two fails.

`temporal workflow start` without `--input`, or with it twice, hands the workflow no
argument or two; Python would then raise TypeError when calling `run`, which Temporal
treats as a bug and retries as a workflow task forever (the run shows Running with no
progress). This interceptor refuses such a start first: the run ends Failed with an
ApplicationError of type `ValidationError`, as for any input its model refuses.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

INPUT_REFUSED = "ValidationError"  # as pydantic's, for input its model refuses


class _ExactlyOneInput(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if len(input.args) != 1:
            kind = workflow.info().workflow_type
            raise ApplicationError(
                f"{kind} takes exactly one input (one JSON object), not {len(input.args)}",
                type=INPUT_REFUSED, non_retryable=True)
        return await self.next.execute_workflow(input)


class ExactlyOneInput(Interceptor):
    """For `Worker(..., interceptors=[ExactlyOneInput()])`."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _ExactlyOneInput
