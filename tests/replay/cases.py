"""The recorded cases: one committed history each, under tests/replay/histories/.

The recorder runs them in this order (later cases use what earlier ones made: the
snapshot `web-1`, the snapshot `slow-1`); the replay test checks that every case has
its history, that every history is a case, and that each ended as the case says, so a
history recorded on the wrong path cannot pass for the right one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HISTORIES = Path(__file__).parent / "histories"

Outcome = Literal["completed", "failed", "canceled"]
CLOSING_EVENTS: dict[Outcome, str] = {
    "completed": "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    "failed": "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
    "canceled": "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED",
}


@dataclass(frozen=True)
class Case:
    """One run through the real worker, and how it must have ended."""

    name: str
    workflow_type: str
    outcome: Outcome
    error_type: str | None = None  # the ApplicationError type of a failed run

    @property
    def path(self) -> Path:
        return HISTORIES / f"{self.name}.json"


SNAPSHOT = "SnapshotVirtualMachine"
DELETE = "DeleteVirtualMachineSnapshot"
RESTORE = "RestoreVirtualMachine"
CLONE = "CloneVirtualMachine"
SCHEDULED = "ScheduledVirtualMachineSnapshots"
SWEEP = "SweepOrphans"

CASES: list[Case] = [
    Case("snapshot-succeeded", SNAPSHOT, "completed"),
    Case("restore-in-place-succeeded", RESTORE, "completed"),
    Case("restore-new-vm-succeeded", RESTORE, "completed"),
    Case("clone-from-snapshot-succeeded", CLONE, "completed"),
    Case("clone-from-vm-succeeded", CLONE, "completed"),
    Case("clone-failed-unknown-interface", CLONE, "failed", "InvalidCloneSpec"),
    Case("delete-snapshot-succeeded", DELETE, "completed"),
    Case("scheduled-run-succeeded", SCHEDULED, "completed"),
    Case("snapshot-failed-no-eligible-volume", SNAPSHOT, "failed", "NoEligibleVolume"),
    Case("snapshot-failed-freeze", SNAPSHOT, "failed", "FreezeFailed"),
    Case("snapshot-deadline-exceeded", SNAPSHOT, "failed", "SnapshotDeadlineExceeded"),
    Case("snapshot-canceled-while-cutting", SNAPSHOT, "canceled"),
    Case("restore-failed-pvcs-not-bound", RESTORE, "failed", "RestoredPvcNotBound"),
    Case("restore-canceled-while-pvcs-bind", RESTORE, "canceled"),
    Case("sweep-succeeded", SWEEP, "completed"),
]


def summary(history: dict[str, Any]) -> tuple[str, str, str | None]:
    """Workflow type, closing event type and failure type of an exported history."""
    events = history["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]
    closing = events[-1]
    failure = (closing.get("workflowExecutionFailedEventAttributes") or {}).get("failure") or {}
    error_type = (failure.get("applicationFailureInfo") or {}).get("type")
    return started["workflowType"]["name"], closing["eventType"], error_type


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded
