"""Fault injection through `/sim/faults`: latency, errors, counts, seeds, timeouts, clearing."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SEEDS, StartSim
from tests.simulator.behaviour_support import Cluster

PVC = "/api/v1/namespaces/demo/persistentvolumeclaims/web-1-root"
VM = "/apis/kubevirt.io/v1/namespaces/demo/virtualmachines/web-1"
VMS = "/apis/kubevirt.io/v1/namespaces/demo/virtualmachines"
FREEZE = "/apis/subresources.kubevirt.io/v1/namespaces/demo/virtualmachineinstances/web-1"


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    sim = start_sim(SEEDS / "demo.yaml", name="faults")
    connected = Cluster(sim)
    yield connected
    connected.close()
    sim.process.stop()


@pytest.fixture(autouse=True)
def no_faults_left(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.call("DELETE", "/sim/faults")


def set_faults(cluster: Cluster, spec: Any) -> dict[str, Any]:
    status, body = cluster.call("PUT", "/sim/faults", spec)
    assert status == 200, body
    return dict(body)


def timed(cluster: Cluster, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, answer = cluster.call(method, path, body)
    return status, answer, time.monotonic() - started


def test_latency_applies_to_matching_requests_only(cluster: Cluster) -> None:
    set_faults(
        cluster, {"rules": [{"verb": "get", "resource": "virtualmachines", "latency": "300ms"}]}
    )
    status, _, slow = timed(cluster, "GET", VM)
    assert status == 200 and slow >= 0.3
    status, _, fast = timed(cluster, "GET", PVC)
    assert status == 200 and fast < 0.25
    status, _, listed = timed(cluster, "GET", VMS)
    assert status == 200 and listed < 0.25


def test_count_limited_errors_fail_the_next_n_requests(cluster: Cluster) -> None:
    set_faults(
        cluster,
        {"rules": [{"verb": "get", "resource": "persistentvolumeclaims", "name": "web-1-root",
                    "error": 500, "count": 2}]},
    )  # fmt: skip
    answers = [cluster.call("GET", PVC) for _ in range(3)]
    assert [status for status, _ in answers] == [500, 500, 200]
    assert answers[0][1]["reason"] == "InternalError" and answers[0][1]["kind"] == "Status"
    [rule] = cluster.call("GET", "/sim/faults")[1]["rules"]
    assert (rule["fired"], rule["remaining"], rule["count"]) == (2, 0, 2)


def test_error_rate_is_repeatable_with_a_seed(cluster: Cluster) -> None:
    spec = {
        "seed": 11,
        "rules": [{"verb": "get", "resource": "persistentvolumeclaims", "error": 503, "rate": 0.5}],
    }

    def pattern() -> list[int]:
        set_faults(cluster, spec)
        return [cluster.call("GET", PVC)[0] for _ in range(24)]

    first, second = pattern(), pattern()
    assert first == second
    assert set(first) == {200, 503}, first
    assert 4 <= first.count(503) <= 20
    assert cluster.call("GET", "/sim/faults")[1]["seed"] == 11


def test_429_conflict_and_unavailable_answers(cluster: Cluster) -> None:
    set_faults(
        cluster,
        {"rules": [
            {"verb": "get", "resource": "persistentvolumeclaims", "error": 429, "retryAfter": "2s"},
            {"verb": "patch", "resource": "virtualmachines", "error": 409},
            {"verb": "list", "resource": "virtualmachines", "error": 503},
        ]},
    )  # fmt: skip
    status, body = cluster.call("GET", PVC)
    assert (status, body["reason"], body["details"]["retryAfterSeconds"]) == (
        429,
        "TooManyRequests",
        2,
    )
    assert cluster.last_headers.get("Retry-After") == "2"
    status, body = cluster.call("PATCH", VM, raw=b'{"metadata": {"labels": {"x": "y"}}}')
    assert (status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"] and '"web-1"' in body["message"]
    status, body = cluster.call("GET", VMS)
    assert (status, body["reason"]) == (503, "ServiceUnavailable")


def test_a_timeout_holds_the_request_then_answers_504(cluster: Cluster) -> None:
    set_faults(
        cluster,
        {
            "rules": [
                {"verb": "get", "resource": "virtualmachines", "error": "timeout", "hold": "600ms"}
            ]
        },
    )
    status, body, held = timed(cluster, "GET", VM)
    assert (status, body["reason"]) == (504, "Timeout")
    assert held >= 0.6
    with pytest.raises((TimeoutError, socket.timeout)):
        cluster.call("GET", VM, timeout=0.2)


def test_faults_on_the_freeze_route(cluster: Cluster) -> None:
    set_faults(
        cluster,
        {"rules": [{"resource": "virtualmachineinstances", "subresource": "freeze", "error": 500}]},
    )
    status, _ = cluster.call("PUT", FREEZE + "/freeze", {"unfreezeTimeout": "1m"})
    assert status == 500
    assert cluster.call("PUT", FREEZE + "/unfreeze")[0] == 200
    assert cluster.call("GET", VM)[0] == 200


def test_a_bad_spec_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    good = set_faults(
        cluster, {"seed": 3, "rules": [{"resource": "virtualmachines", "latency": "1ms"}]}
    )
    bad_specs: list[Any] = [
        {"rules": [{"resource": "x", "error": 418}]},
        {"rules": [{"resource": "x", "latency": "fast"}]},
        {"rules": [{"resource": "x", "error": 500, "rate": 2}]},
        {"rules": [{"verb": "fetch", "error": 500}]},
        {"rules": [{"resource": "x", "error": 500, "colour": "red"}]},
        {"rules": [{"resource": "x"}]},
        {"rules": [{"resource": "x", "error": 500, "count": 0}]},
        {"rules": [{"resource": "x", "error": 500, "hold": "1s"}]},
        {"seed": "abc", "rules": []},
        {"rule": []},
        "not a spec",
    ]
    for spec in bad_specs:
        status, body = cluster.call("PUT", "/sim/faults", spec)
        assert (status, body["reason"]) == (400, "BadRequest"), (spec, body)
    assert cluster.call("GET", "/sim/faults")[1] == good


def test_clearing_removes_every_fault(cluster: Cluster) -> None:
    set_faults(cluster, {"rules": [{"error": 500}]})
    assert cluster.call("GET", PVC)[0] == 500
    status, body = cluster.call("DELETE", "/sim/faults")
    assert status == 200 and body["rules"] == []
    assert cluster.call("GET", PVC)[0] == 200
