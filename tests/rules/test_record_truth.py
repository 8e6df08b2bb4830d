"""What a snapshot record must say given its VolumeSnapshots (rules/record_truth.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rules.record_truth import differs, followed_until, record_truth

CUT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = CUT + timedelta(hours=2)


def record(status: dict[str, Any] | None = None, ready_deadline: str = "1h0m0s"
           ) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"readyDeadline": ready_deadline},
    }
    if status is not None:
        base["status"] = status
    return base


def succeeded(ready: bool = False, error: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Succeeded", "readyToUse": ready, "volumeSnapshots": ["s-a", "s-b"],
        "conditions": [{"type": "Progressing", "status": "False", "reason": "Succeeded",
                        "lastTransitionTime": "2030-01-02T03:04:05Z"}]}
    if error:
        status["error"] = {"message": error}
    return status


def vs(ready: bool = True, error: str | None = None, deleting: bool = False
       ) -> dict[str, Any]:
    status: dict[str, Any] = {"readyToUse": ready, "creationTime": "2030-01-02T03:04:05Z"}
    if error:
        status["error"] = {"message": error}
    metadata = {"deletionTimestamp": "2030-01-02T04:00:00Z"} if deleting else {}
    return {"metadata": metadata, "status": status}


def test_late_readiness_after_the_window_makes_it_ready_and_clears_the_error() -> None:
    rec = record(succeeded(error="the VolumeSnapshots were not ready to use within 1h0m0s"))
    truth = record_truth(rec, None, {"s-a": vs(), "s-b": vs()}, LATER)
    assert truth is not None and truth.ready_to_use and truth.error is None
    assert differs(rec, truth)


def test_inside_the_window_waiting_is_the_workflows_to_say() -> None:
    rec = record(succeeded())
    assert record_truth(rec, None, {"s-a": vs(), "s-b": vs(ready=False)},
                        CUT + timedelta(minutes=5)) is None
    assert followed_until(rec) == CUT + timedelta(hours=1)


def test_a_deleted_or_failing_volume_snapshot_is_said_at_once() -> None:
    rec = record(succeeded(ready=True))
    soon = CUT + timedelta(minutes=1)
    gone = record_truth(rec, None, {"s-a": vs()}, soon)
    assert gone is not None and not gone.ready_to_use
    assert gone.error is not None and "ns/s-b was deleted" in gone.error
    deleting = record_truth(rec, None, {"s-a": vs(), "s-b": vs(deleting=True)}, soon)
    assert deleting is not None and "is being deleted" in str(deleting.error)
    failing = record_truth(rec, None, {"s-a": vs(error="disk gone"), "s-b": vs()}, soon)
    assert failing is not None and "s-a: disk gone" in str(failing.error)


def test_nothing_to_say_about_records_in_flight_failed_or_deleting() -> None:
    in_flight = record({"phase": "InProgress"})
    assert record_truth(in_flight, None, {}, LATER) is None
    assert record_truth(record({"phase": "Failed"}), None, {}, LATER) is None
    deleting = record(succeeded())
    deleting["metadata"]["deletionTimestamp"] = "2030-01-02T05:00:00Z"
    assert record_truth(deleting, None, {"s-a": vs(), "s-b": vs()}, LATER) is None


def test_a_record_already_true_needs_no_write() -> None:
    rec = record(succeeded(ready=True))
    truth = record_truth(rec, None, {"s-a": vs(), "s-b": vs()}, LATER)
    assert truth is not None and not differs(rec, truth)


def test_a_lost_status_is_rebuilt_from_the_content() -> None:
    content = {"metadata": {"name": "s-content"},
               "spec": {"volumeBackups": [
                   {"volumeName": "a", "volumeSnapshotName": "s-a"},
                   {"volumeName": "b", "volumeSnapshotName": "s-b"}]}}
    truth = record_truth(record(), content, {"s-a": vs(), "s-b": vs(ready=False)}, LATER)
    assert truth is not None and truth.rebuilt is not None
    assert truth.rebuilt["phase"] == "Succeeded" and not truth.ready_to_use
    assert truth.rebuilt["volumeSnapshots"] == ["s-a", "s-b"]
    assert truth.rebuilt["includedVolumes"] == ["a", "b"]
    assert record_truth(record(), None, {}, LATER) is None  # no content: nothing to say


def test_a_ready_deadline_of_zero_follows_for_ever() -> None:
    assert followed_until(record(succeeded(), ready_deadline="0s")) == datetime.max.replace(
        tzinfo=UTC)
