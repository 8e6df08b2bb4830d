"""The bare benchmark reads local activities from their markers, and refuses other markers."""

import json

import pytest
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.bare_snapshot import ACTIVITY, LOCAL, BareShape, shape_from_history

E = EventType


def _event(kind: int) -> HistoryEvent:
    return HistoryEvent(event_type=kind)  # type: ignore[arg-type]


def _marker(activity_type: str, name: str = "core_local_activity") -> HistoryEvent:
    event = _event(E.EVENT_TYPE_MARKER_RECORDED)
    attributes = event.marker_recorded_event_attributes
    attributes.marker_name = name
    data = json.dumps({"seq": 1, "attempt": 1, "activity_type": activity_type}).encode()
    attributes.details["data"].CopyFrom(Payloads(payloads=[Payload(data=data)]))
    return event


def _completed_task() -> list[HistoryEvent]:
    return [_event(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
            _event(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
            _event(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)]


def test_local_activity_markers_are_commands_of_their_task_in_order() -> None:
    cut = _event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    cut.activity_task_scheduled_event_attributes.activity_type.name = "freeze_and_cut"
    history = [_event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED), *_completed_task(),
               _marker("create_snapshot_record"), _marker("lock_vm"), cut,
               _event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED), *_completed_task(),
               _marker("unlock_vm"), *_completed_task()]
    shape = shape_from_history(history)
    assert shape == BareShape(tasks=[
        [LOCAL + "create_snapshot_record", LOCAL + "lock_vm", ACTIVITY + "freeze_and_cut"],
        [LOCAL + "unlock_vm"]])
    assert shape.local_activity_names() == ["create_snapshot_record", "lock_vm", "unlock_vm"]
    assert shape.activity_names() == ["freeze_and_cut"]


def test_a_marker_that_is_not_a_local_activity_is_refused() -> None:
    history = [*_completed_task(), _marker("x", name="version")]
    with pytest.raises(ValueError, match="not a local activity"):
        shape_from_history(history)


def test_a_patch_marker_is_no_work_of_its_task() -> None:
    """workflow.patched records a marker; the bare run has nothing to copy for it."""
    history = [*_completed_task(), _marker("x", name="core_patch"), _marker("lock_vm"),
               *_completed_task()]
    assert shape_from_history(history) == BareShape(tasks=[[LOCAL + "lock_vm"]])
