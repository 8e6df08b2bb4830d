"""Is a workflow run still running? Asked of Temporal, from a blocking activity thread.

A VM lock or a snapshot's "in use" mark names a workflow run. When that run
has closed (completed, failed, terminated, timed out) its mark is stale and
may be taken over: this is what keeps a crashed or terminated workflow from
leaving a VM locked forever.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from cluster.lock import LockHolder


class WorkflowLiveness:
    """Answers `is_running(holder)` from any thread, through the worker's event loop."""

    def __init__(
        self, client: Client, loop: asyncio.AbstractEventLoop, timeout_seconds: float = 10.0
    ) -> None:
        self._client = client
        self._loop = loop
        self._timeout = timeout_seconds

    def is_running(self, holder: LockHolder) -> bool:
        """True while the run is open; False once closed or unknown to the server."""
        future = asyncio.run_coroutine_threadsafe(
            self._status(holder.workflow_id, holder.run_id), self._loop
        )
        status = future.result(self._timeout)
        return status == WorkflowExecutionStatus.RUNNING

    async def _status(self, workflow_id: str, run_id: str) -> WorkflowExecutionStatus | None:
        handle = self._client.get_workflow_handle(workflow_id, run_id=run_id or None)
        try:
            description = await handle.describe()
        except RPCError as err:
            # Unknown to the server, or not even a valid run ID: no such run is running.
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None
            raise
        return description.status
