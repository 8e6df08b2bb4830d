"""The public JSON contract: what users type at the Temporal CLI, and what is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from contracts.delete_snapshot import DeleteVirtualMachineSnapshotInput
from contracts.snapshot import SnapshotVirtualMachineInput, SnapshotVirtualMachineResult


def from_cli(text: str) -> SnapshotVirtualMachineInput:
    """Decode as the worker does a `temporal workflow start --input '...'` payload."""
    payload = Payload(metadata={"encoding": b"json/plain"}, data=text.encode())
    [value] = pydantic_data_converter.payload_converter.from_payloads(
        [payload], [SnapshotVirtualMachineInput])
    assert isinstance(value, SnapshotVirtualMachineInput)
    return value


def test_minimal_cli_json_gets_the_documented_defaults() -> None:
    parsed = from_cli('{"namespace": "demo", "vm": "web"}')
    assert parsed.name is None
    assert parsed.failure_deadline == 300.0
    assert parsed.ready_deadline == 3600.0
    assert parsed.quiesce == "auto"
    assert parsed.deletion_policy == "Delete"
    assert parsed.labels == {}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("90s", 90.0), ("200ms", 0.2), (45, 45.0),
     ("45", 45.0), (0, 0.0), ("0", 0.0), ("0s", 0.0), (1.5, 1.5)],
)
def test_durations_are_go_style_or_seconds(value: object, seconds: float) -> None:
    document = {"namespace": "demo", "vm": "web", "failure_deadline": value,
                "ready_deadline": value}
    parsed = from_cli(json.dumps(document))
    assert parsed.failure_deadline == seconds and parsed.ready_deadline == seconds


def test_every_field_from_the_cli() -> None:
    parsed = from_cli(json.dumps({
        "namespace": "demo", "vm": "web.prod", "name": "web-before-upgrade",
        "failure_deadline": "2m", "ready_deadline": "2h", "quiesce": "required",
        "deletion_policy": "Retain", "labels": {"team": "web", "example.com/tier": "gold"},
        "fail_if_locked": True, "group_snapshot": "required",
    }))
    assert parsed.model_dump() == {
        "namespace": "demo", "vm": "web.prod", "name": "web-before-upgrade",
        "failure_deadline": 120.0, "ready_deadline": 7200.0, "quiesce": "required",
        "deletion_policy": "Retain", "labels": {"team": "web", "example.com/tier": "gold"},
        "fail_if_locked": True, "freeze_budget": None, "schedule": None,
        "group_snapshot": "required",
    }


def test_a_parsed_input_survives_the_round_trip_through_temporal() -> None:
    original = SnapshotVirtualMachineInput(namespace="demo", vm="web", failure_deadline="5m")  # type: ignore[arg-type]
    [payload] = pydantic_data_converter.payload_converter.to_payloads([original])
    assert from_cli(payload.data.decode()) == original


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"vm": "web"}, "namespace"),
        ({"namespace": "demo"}, "vm"),
        ({"namespace": "Demo", "vm": "web"}, "not a valid name"),
        ({"namespace": "demo", "vm": "web_1"}, "not a valid name"),
        ({"namespace": "demo", "vm": "web", "name": "-x"}, "not a valid name"),
        ({"namespace": "demo", "vm": "web", "name": "x" * 254}, "at most 253"),
        ({"namespace": "d" * 64, "vm": "web"}, "at most 63"),
        ({"namespace": "demo", "vm": "web", "failure_deadline": "soon"}, "invalid duration"),
        ({"namespace": "demo", "vm": "web", "failure_deadline": "-5m"}, "negative"),
        ({"namespace": "demo", "vm": "web", "failure_deadline": True}, "invalid duration"),
        ({"namespace": "demo", "vm": "web", "ready_deadline": [1]}, "expected a duration"),
        ({"namespace": "demo", "vm": "web", "quiesce": "always"}, "quiesce"),
        ({"namespace": "demo", "vm": "web", "group_snapshot": "always"}, "group_snapshot"),
        ({"namespace": "demo", "vm": "web", "deletion_policy": "delete"}, "deletion_policy"),
        ({"namespace": "demo", "vm": "web", "failureDeadline": "5m"}, "failureDeadline"),
        ({"namespace": "demo", "vm": "web", "labels": {"vmsnap.io/snapshot": "x"}}, "reserved"),
        ({"namespace": "demo", "vm": "web", "labels": {"bad key!": "x"}}, "label key"),
        ({"namespace": "demo", "vm": "web", "labels": {"k": "v" * 64}}, "label value"),
        ({"namespace": "demo", "vm": "web", "labels": {"k": 3}}, "labels"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_problem(
    document: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        from_cli(json.dumps(document))
    assert complaint in str(caught.value)


def test_delete_input() -> None:
    assert DeleteVirtualMachineSnapshotInput.model_validate_json(
        '{"namespace": "demo", "name": "web-1"}').name == "web-1"
    with pytest.raises(ValidationError, match="extra"):
        DeleteVirtualMachineSnapshotInput.model_validate_json(
            '{"namespace": "demo", "name": "web-1", "force": true}')
    with pytest.raises(ValidationError, match="not a valid name"):
        DeleteVirtualMachineSnapshotInput.model_validate_json('{"namespace": "demo", "name": ""}')


def test_the_result_is_plain_json_with_snake_case_fields() -> None:
    result = SnapshotVirtualMachineResult(
        namespace="demo", name="web-1", vm="web", phase="Succeeded",
        started_at=datetime(2030, 1, 1, tzinfo=UTC), freeze_window_ms=212)
    data = json.loads(result.model_dump_json())
    assert data["phase"] == "Succeeded" and data["ready_to_use"] is False
    assert data["freeze_window_ms"] == 212 and data["started_at"] == "2030-01-01T00:00:00Z"
    assert {"indications", "included_volumes", "excluded_volumes", "volume_snapshots",
            "error", "creation_time"} <= set(data)
