"""A saga: compensations registered before their steps, run in reverse when the work fails.

An activity can take effect and still report failure (a timeout after the
server acted), so each compensation goes on the list *before* its step runs
and must be harmless when the step never happened. Compensations marked
`urgent` run first (the guest's thaw: a frozen guest cannot wait for
deletions); the rest run in reverse order of registration. One failing
compensation does not stop the others: its error is collected and reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

Compensation = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class _Entry:
    description: str
    undo: Compensation
    urgent: bool


class Saga:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self.ran: list[str] = []

    def add(self, description: str, undo: Compensation, *, urgent: bool = False) -> None:
        """Register `undo` for the step about to run (once per description)."""
        if all(e.description != description for e in self._entries):
            self._entries.append(_Entry(description, undo, urgent))

    def clear(self) -> None:
        """The work is done: nothing to undo any more."""
        self._entries.clear()

    @property
    def pending(self) -> list[str]:
        return [e.description for e in self._ordered()]

    async def compensate(self) -> list[str]:
        """Run every compensation once, urgent first, then in reverse; the failures."""
        failures: list[str] = []
        for entry in self._ordered():
            workflow.logger.info("compensating: %s", entry.description)
            self.ran.append(entry.description)
            try:
                await entry.undo()
            except (ActivityError, ApplicationError) as err:
                cause = err.cause if isinstance(err, ActivityError) and err.cause else err
                failures.append(f"{entry.description}: {cause}")
                workflow.logger.error("compensation failed: %s: %s", entry.description, cause)
        self._entries.clear()
        return failures

    def _ordered(self) -> list[_Entry]:
        backwards = list(reversed(self._entries))
        return [e for e in backwards if e.urgent] + [e for e in backwards if not e.urgent]


T = TypeVar("T")


async def to_completion(work: Coroutine[Any, Any, T]) -> T:
    """Finish `work` even if the workflow is cancelled again meanwhile (clean-up must end)."""
    task = asyncio.create_task(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            continue
