"""The `sim.vmsnap.io/*` annotations: defaults, values, precedence and clear errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from simulator import annotations as ann


def obj(**notes: str) -> dict[str, Any]:
    return {"metadata": {"name": "x", "annotations": {ann.PREFIX + k: v for k, v in notes.items()}}}


def test_guest_agent_is_connected_unless_said_otherwise() -> None:
    assert ann.guest_agent(obj()) is ann.GuestAgent.CONNECTED
    assert ann.guest_agent(None) is ann.GuestAgent.CONNECTED
    assert ann.guest_agent(obj(**{"guest-agent": "absent"})) is ann.GuestAgent.ABSENT
    assert ann.guest_agent(obj(**{"guest-agent": " freeze-fails "})) is ann.GuestAgent.FREEZE_FAILS


def test_a_bad_value_names_the_annotation_and_the_choices() -> None:
    with pytest.raises(ann.AnnotationError) as raised:
        ann.guest_agent(obj(**{"guest-agent": "sleepy"}))
    assert str(raised.value) == (
        'annotation sim.vmsnap.io/guest-agent: "sleepy" is not one of '
        "connected, absent, freeze-fails"
    )
    with pytest.raises(ann.AnnotationError, match=re.escape("sim.vmsnap.io/fail")):
        ann.snapshot_failure(obj(fail="sometimes"))
    with pytest.raises(ann.AnnotationError, match='"yes" is not "true" or "false"'):
        ann.paused(obj(paused="yes"))


def test_paused_and_failure_modes() -> None:
    assert ann.paused(obj()) is False
    assert ann.paused(obj(paused="True")) is True
    assert ann.paused(obj(paused="false")) is False
    assert ann.snapshot_failure(obj()) is None
    assert ann.snapshot_failure(obj(fail="")) is None
    assert ann.snapshot_failure(obj(fail="never-ready")) is ann.SnapshotFailure.NEVER_READY


def test_latencies_are_go_durations() -> None:
    assert ann.latency(obj(**{"cut-latency": "200ms"}), ann.CUT_LATENCY) == pytest.approx(0.2)
    assert ann.latency(obj(**{"cut-latency": "1m30s"}), ann.CUT_LATENCY) == 90
    assert ann.latency(obj(), ann.CUT_LATENCY) is None
    with pytest.raises(ann.AnnotationError, match=re.escape("sim.vmsnap.io/ready-latency")):
        ann.latency(obj(**{"ready-latency": "soon"}), ann.READY_LATENCY)
    with pytest.raises(ann.AnnotationError, match="negative"):
        ann.latency(obj(**{"ready-latency": "-1s"}), ann.READY_LATENCY)
    with pytest.raises(KeyError):
        ann.latency(obj(), ann.FAIL)


def test_the_first_object_that_sets_a_latency_wins() -> None:
    pvc = obj(**{"bind-latency": "10ms"})
    storage_class = obj(**{"bind-latency": "2s"})
    assert ann.first_latency(ann.BIND_LATENCY, pvc, storage_class) == pytest.approx(0.01)
    assert ann.first_latency(ann.BIND_LATENCY, obj(), None, storage_class) == 2
    assert ann.first_latency(ann.BIND_LATENCY, obj(), None) == ann.default_latency(ann.BIND_LATENCY)
    assert ann.default_latency(ann.CUT_LATENCY) == pytest.approx(0.05)
