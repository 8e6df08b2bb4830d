"""How long a run's claim on its VM lasts, and when it must renew it."""

from __future__ import annotations

from contracts.lock import DEFAULT_LEASE_SECONDS, LEASE_GRACE_SECONDS, lease_for


def test_a_run_ending_before_the_default_lease_holds_to_its_deadline_and_saga() -> None:
    assert lease_for(300) == (300 + LEASE_GRACE_SECONDS, False)
    assert lease_for(0) == (LEASE_GRACE_SECONDS, False)


def test_a_run_without_deadline_or_with_a_long_one_renews_the_default_lease() -> None:
    assert lease_for(None) == (DEFAULT_LEASE_SECONDS, True)
    assert lease_for(3600) == (DEFAULT_LEASE_SECONDS, True)
