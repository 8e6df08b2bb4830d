"""The freeze budget's rules: where a snapshot's budget comes from, the worker's maximum,
and the input type's bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.snapshot import SnapshotVirtualMachineInput
from rules.freeze_budget import (
    ANNOTATION,
    DEFAULT_FREEZE_BUDGET,
    DEFAULT_MAX_FREEZE_BUDGET,
    MAX_ENV,
    capped,
    choose_budget,
    max_from_environment,
    refusal,
)


def test_the_input_comes_first_then_the_annotation_then_ten_seconds() -> None:
    assert choose_budget(30.0, "20s").seconds == 30.0
    assert choose_budget(30.0, "20s").source == "input"
    assert choose_budget(None, "20s").seconds == 20.0
    assert choose_budget(None, " 1m30s ").seconds == 90.0
    assert choose_budget(None, None).seconds == DEFAULT_FREEZE_BUDGET == 10.0


@pytest.mark.parametrize("annotation", ["soon", "", "-5s", "500ms", "0", "NaN"])
def test_an_unusable_annotation_is_ignored_and_says_why(annotation: str) -> None:
    chosen = choose_budget(None, annotation)
    assert chosen.seconds == DEFAULT_FREEZE_BUDGET and chosen.source == "default"
    assert chosen.ignored is not None and ANNOTATION in chosen.ignored
    assert "the default 10s applies" in chosen.ignored


def test_a_long_annotation_is_lowered_not_ignored() -> None:
    assert choose_budget(None, "2h").seconds == 300.0  # the input type's ceiling
    assert capped(300.0, 60.0) == 60.0 and capped(20.0, 60.0) == 20.0


def test_the_workers_maximum_refuses_only_a_longer_input() -> None:
    assert refusal(None, 30.0) is None and refusal(30.0, 30.0) is None
    message = refusal(45.0, 30.0)
    assert message is not None and "45s" in message and "30s" in message and MAX_ENV in message


def test_the_maximum_comes_from_the_environment() -> None:
    assert max_from_environment({}) == DEFAULT_MAX_FREEZE_BUDGET == 60.0
    assert max_from_environment({MAX_ENV: " "}) == 60.0
    assert max_from_environment({MAX_ENV: "2m"}) == 120.0
    for bad in ("forever", "10m", "0.5s"):
        with pytest.raises(ValueError, match=MAX_ENV):
            max_from_environment({MAX_ENV: bad})


@pytest.mark.parametrize(("value", "seconds"), [("10s", 10.0), (5, 5.0), ("1.5s", 1.5),
                                                ("5m", 300.0), (None, None)])
def test_the_input_takes_a_go_duration_from_one_second_to_five_minutes(
    value: object, seconds: float | None
) -> None:
    model = SnapshotVirtualMachineInput.model_validate(
        {"namespace": "demo", "vm": "web", "freeze_budget": value})
    assert model.freeze_budget == seconds


@pytest.mark.parametrize("value", ["0s", "999ms", "5m1s", "soon", True, -1])
def test_the_input_refuses_a_budget_out_of_bounds_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError, match="freeze_budget"):
        SnapshotVirtualMachineInput.model_validate(
            {"namespace": "demo", "vm": "web", "freeze_budget": value})
