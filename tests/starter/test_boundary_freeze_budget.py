"""The worker's maximum freeze budget (`VMSNAP_MAX_FREEZE_BUDGET`) in its boundary: read
at start-up, a bad value refused naming the variable."""

from __future__ import annotations

import pytest

from starter.boundary import BoundaryError, WorkerBoundary


def test_the_maximum_defaults_to_a_minute_and_is_settable() -> None:
    assert WorkerBoundary.from_environment({}).max_freeze_budget == 60.0
    assert WorkerBoundary.from_environment(
        {"VMSNAP_MAX_FREEZE_BUDGET": "15s"}).max_freeze_budget == 15.0


@pytest.mark.parametrize("value", ["soon", "0", "6m"])
def test_a_bad_maximum_stops_the_worker_naming_the_variable(value: str) -> None:
    with pytest.raises(BoundaryError, match="VMSNAP_MAX_FREEZE_BUDGET"):
        WorkerBoundary.from_environment({"VMSNAP_MAX_FREEZE_BUDGET": value})
