"""Whose claim on a VM still holds: the lease, the deployment and the run (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cluster.lock import LockHolder, holder_is_alive

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def holder(run: str, cluster: str = "east", namespace: str = "default",
           expires: datetime | None = NOW + timedelta(minutes=5)) -> LockHolder:
    return LockHolder(workflow_id=f"snapshot/{cluster}/demo/{run}", run_id=run,
                      operation="snapshot", since=NOW - timedelta(minutes=1),
                      cluster=cluster, temporal_namespace=namespace, expires=expires)


ME = holder("me")


def never_asked(_: LockHolder) -> bool:
    raise AssertionError("Temporal must not be asked about this holder")


def test_a_foreign_holder_is_alive_until_its_lease_ends_and_temporal_is_not_asked() -> None:
    for foreign in (holder("them", cluster="west"), holder("them", namespace="other")):
        assert holder_is_alive(foreign, ME, NOW, never_asked)
        assert not holder_is_alive(foreign, ME, NOW + timedelta(minutes=5), never_asked)


def test_an_expired_holder_has_lost_its_claim_even_while_its_run_is_open() -> None:
    stuck = holder("stuck", expires=NOW - timedelta(seconds=1))
    assert not holder_is_alive(stuck, ME, NOW, never_asked)


def test_a_holder_of_this_deployment_lives_as_long_as_its_run() -> None:
    other = holder("other")
    assert holder_is_alive(other, ME, NOW, lambda h: True)
    assert not holder_is_alive(other, ME, NOW, lambda h: False)


def test_a_lock_from_before_leases_counts_as_this_deployment_s() -> None:
    old = LockHolder.from_annotation(
        '{"workflowId":"snapshot/demo/a","runId":"r","operation":"snapshot",'
        '"since":"2026-12-07T11:00:00+00:00"}')
    assert old.cluster == "" and old.expires is None
    assert holder_is_alive(old, ME, NOW, lambda h: True)
    assert not holder_is_alive(old, ME, NOW, lambda h: False)


def test_the_annotation_carries_the_deployment_and_the_lease() -> None:
    text = ME.to_annotation()
    assert '"cluster":"east"' in text and '"temporalNamespace":"default"' in text
    assert LockHolder.from_annotation(text) == ME
    renewed = ME.renewed(600, NOW)
    assert renewed.expires == NOW + timedelta(minutes=10) and renewed.same_run(ME)
    assert "lease until" in ME.describe() and "cluster east" in ME.describe()


@pytest.mark.parametrize("text", ['{"workflowId":"a"}', '{"workflowId":"a","runId":"r",'
                                  '"operation":"x","since":"t","expires":"soon"}', "[1]"])
def test_a_malformed_lock_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        LockHolder.from_annotation(text)
