"""Fault rules without a server: parsing, matching, counts, seeded rates, the answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from simulator.errors import ApiError
from simulator.faults import FaultInjector, parse_rule
from simulator.request_info import RequestInfo


def request(
    verb: str = "get",
    group: str = "",
    resource: str = "persistentvolumeclaims",
    namespace: str = "demo",
    name: str = "data",
    subresource: str = "",
) -> RequestInfo:
    return RequestInfo("GET", "/", verb, group, "v1", resource, namespace, name, subresource)


def test_omitted_fields_match_anything_and_empty_subresource_matches_none() -> None:
    rule = parse_rule({"resource": "virtualmachineinstances", "error": 500}, "rules[0]")
    assert rule.matches(request(resource="virtualmachineinstances", subresource="freeze"))
    assert not rule.matches(request())
    plain = parse_rule({"subresource": "", "error": 500}, "rules[0]")
    assert plain.matches(request())
    assert not plain.matches(request(subresource="status"))
    exact = parse_rule(
        {"verb": "UPDATE", "group": "kubevirt.io", "namespace": "demo", "name": "vm", "error": 409},
        "rules[0]",
    )
    assert exact.verb == "update"
    assert exact.matches(request("update", "kubevirt.io", "virtualmachines", "demo", "vm"))
    assert not exact.matches(request("update", "kubevirt.io", "virtualmachines", "other", "vm"))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"resource": "x"}, "a rule needs a latency, an error or both"),
        ({"error": 418}, "rules[0].error 418 is not one of 500, 503, 429, 409, timeout"),
        ({"error": True}, "rules[0].error True is not one of"),
        ({"latency": "fast"}, "rules[0].latency: invalid duration"),
        ({"error": 500, "rate": 1.5}, "rules[0].rate must be a number from 0 to 1"),
        ({"error": 500, "count": -1}, "rules[0].count must be a positive integer"),
        ({"error": 500, "retryAfter": "1s"}, "retryAfter applies to error 429 only"),
        ({"error": 500, "hold": "1s"}, 'hold applies to error "timeout" only'),
        ({"verb": "fetch", "error": 500}, "rules[0].verb 'fetch' is not one of get, list"),
        ({"name": 3, "error": 500}, "rules[0].name must be a string"),
        ({"error": 500, "when": "now"}, "rules[0]: unknown field 'when'"),
    ],
)
def test_bad_rules_are_refused_with_the_field_named(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_rule(rule, "rules[0]")
    assert raised.value.code == 400 and message in raised.value.message


def test_a_refused_spec_keeps_the_active_rules() -> None:
    faults = FaultInjector()
    active = faults.configure({"seed": 1, "rules": [{"error": 500, "count": 1}]})
    with pytest.raises(ApiError):
        faults.configure({"rules": [{"error": 500}, {"error": 999}]})
    assert faults.active() == active
    with pytest.raises(ApiError, match="unknown field 'rule'"):
        faults.configure({"rule": []})
    assert faults.configure([{"latency": "1ms"}])["rules"][0]["latency"] == "1ms"


def test_counts_limit_firings_and_spent_rules_let_the_next_one_answer() -> None:
    faults = FaultInjector()
    faults.configure(
        {"rules": [{"error": 429, "count": 2, "retryAfter": "1.2s"}, {"error": 500, "count": 1}]}
    )
    answers = [faults.decide(request())[1] for _ in range(4)]
    assert [rule.error if rule else None for rule in answers] == [429, 429, 500, None]
    first = answers[0]
    assert first is not None
    error = first.failure(request())
    assert (error.code, error.reason, error.details) == (
        429,
        "TooManyRequests",
        {"retryAfterSeconds": 2},
    )
    described = faults.active()["rules"]
    assert [(r["fired"], r["remaining"]) for r in described] == [(2, 0), (1, 0)]


def test_a_seed_makes_the_rate_repeatable() -> None:
    def draws(seed: int) -> list[bool]:
        faults = FaultInjector()
        faults.configure({"seed": seed, "rules": [{"error": 503, "rate": 0.3}]})
        return [faults.decide(request())[1] is not None for _ in range(200)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    assert 30 <= sum(draws(5)) <= 90
    never = FaultInjector()
    never.configure({"rules": [{"error": 500, "rate": 0}]})
    assert all(never.decide(request())[1] is None for _ in range(50))


def test_latencies_add_up_and_the_first_error_answers() -> None:
    faults = FaultInjector()
    faults.configure(
        {"rules": [
            {"latency": "100ms"},
            {"error": 409, "latency": "50ms"},
            {"error": 500, "count": 1},
        ]}
    )  # fmt: skip
    latency, rule = faults.decide(request("patch", "kubevirt.io", "virtualmachines", "ns", "vm"))
    assert latency == pytest.approx(0.15)
    assert rule is not None and rule.error == 409
    error = rule.failure(request("patch", "kubevirt.io", "virtualmachines", "ns", "vm"))
    assert error.reason == "Conflict" and 'virtualmachines.kubevirt.io "vm"' in error.message
    # The 500 rule was not consulted, so its single firing is still there.
    assert faults.active()["rules"][2]["remaining"] == 1


def test_before_sleeps_and_answers() -> None:
    faults = FaultInjector()
    faults.configure(
        {
            "rules": [
                {"name": "slow", "latency": "120ms"},
                {"name": "late", "error": "timeout", "hold": "150ms"},
            ]
        }
    )

    async def run(name: str) -> tuple[ApiError | None, float]:
        started = time.monotonic()
        answer = await faults.before(request(name=name))
        return answer, time.monotonic() - started

    answer, slow = asyncio.run(run("slow"))
    assert answer is None and slow >= 0.12
    answer, held = asyncio.run(run("late"))
    assert answer is not None and (answer.code, answer.reason) == (504, "Timeout") and held >= 0.15
    answer, quick = asyncio.run(run("other"))
    assert answer is None and quick < 0.1


def test_clear_drops_every_rule() -> None:
    faults = FaultInjector()
    faults.configure({"seed": 9, "rules": [{"error": 500}]})
    faults.clear()
    assert faults.active() == {"seed": 9, "rules": []}
    assert faults.decide(request()) == (0.0, None)
