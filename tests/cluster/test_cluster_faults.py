"""Server faults reach callers as the project's errors; the waits ride them out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cluster.client import Cluster
from cluster.errors import Conflict, Forbidden, Transient
from tests.cluster.conftest import NS
from tests.support.sim import Sim

LABELS = {"vmsnap.io/test": "faults"}


@pytest.fixture(autouse=True)
def no_faults_left(sim: Sim) -> Iterator[None]:
    sim.clear_faults()
    yield
    sim.clear_faults()


@pytest.mark.parametrize("error", [500, 503, 429])
def test_server_errors_are_transient(cluster: Cluster, sim: Sim, error: int) -> None:
    sim.set_faults({"rules": [{"verb": "get", "resource": "virtualmachines", "name": "freezer",
                               "error": error, "count": 1}]})
    with pytest.raises(Transient) as raised:
        cluster.get_vm(NS, "freezer")
    assert raised.value.status == error and raised.value.retryable
    assert cluster.get_vm(NS, "freezer")["metadata"]["name"] == "freezer"


def test_a_held_request_times_out_on_the_client_side_as_transient(sim: Sim) -> None:
    sim.set_faults({"rules": [{"verb": "get", "resource": "virtualmachines", "name": "freezer",
                               "error": "timeout", "hold": "5s", "count": 1}]})
    with Cluster.from_environment(str(sim.kubeconfig), request_timeout_seconds=0.5) as quick:
        started = time.monotonic()
        with pytest.raises(Transient) as raised:
            quick.get_vm(NS, "freezer")
        assert raised.value.reason == "Timeout"
        assert time.monotonic() - started < 2.0


def test_an_injected_conflict_on_patch(cluster: Cluster, sim: Sim) -> None:
    sim.set_faults({"rules": [{"verb": "patch", "resource": "virtualmachines", "count": 1,
                               "error": 409}]})
    with pytest.raises(Conflict):
        cluster.patch_vm(NS, "editable", {"metadata": {"labels": {"x": "y"}}})


def test_a_failing_freeze_route_is_transient_and_changes_nothing(cluster: Cluster,
                                                                 sim: Sim) -> None:
    cluster.wait_for_vm(NS, "freezer", lambda s: s.running, timeout_seconds=10)
    sim.set_faults({"rules": [{"resource": "virtualmachineinstances", "subresource": "freeze",
                               "error": 500, "count": 1}]})
    with pytest.raises(Transient):
        cluster.freeze(NS, "freezer", unfreeze_timeout_seconds=60)
    assert cluster.vm_state(NS, "freezer").fs_freeze_status is None


def test_polling_rides_out_transient_errors(cluster: Cluster, sim: Sim) -> None:
    sim.set_faults({"rules": [{"verb": "get", "resource": "virtualmachines", "name": "freezer",
                               "error": 503, "count": 2}]})
    state = cluster.wait_for_vm(NS, "freezer", lambda s: s.running, timeout_seconds=10)
    assert state.running


def test_the_cut_wait_survives_failing_watches_and_lists(cluster: Cluster, sim: Sim) -> None:
    names = ["vs-faults-a", "vs-faults-b"]
    cluster.create_volume_snapshot(NS, names[0], "snap-a", "fast-snap", LABELS)
    cluster.create_volume_snapshot(NS, names[1], "slow-disk", "fast-snap", LABELS)
    sim.set_faults({"rules": [
        {"verb": "watch", "resource": "volumesnapshots", "error": 500, "count": 2},
        {"verb": "list", "resource": "volumesnapshots", "error": 503, "count": 2},
    ]})
    states = cluster.watch_volume_snapshots(NS, names, "cut", timeout_seconds=10)
    assert all(s.cut for s in states)
    fired = {(r["verb"], r["fired"]) for r in sim.request("GET", "/sim/faults")["rules"]}
    assert fired == {("watch", 2), ("list", 2)}
    for name in names:
        cluster.delete_volume_snapshot(NS, name)


def test_the_cut_wait_survives_a_watch_that_never_answers(cluster: Cluster, sim: Sim) -> None:
    cluster.create_volume_snapshot(NS, "vs-held", "slow-disk", "fast-snap", LABELS)
    sim.set_faults({"rules": [{"verb": "watch", "resource": "volumesnapshots",
                               "error": "timeout", "hold": "30s", "count": 1}]})
    started = time.monotonic()
    (state,) = cluster.watch_volume_snapshots(NS, ["vs-held"], "cut", timeout_seconds=10,
                                              progress_interval_seconds=0.3)
    assert state.cut
    assert time.monotonic() - started < 3
    cluster.delete_volume_snapshot(NS, "vs-held")


def test_the_wait_is_a_watch_not_a_poll(cluster: Cluster, sim: Sim) -> None:
    """Waiting 500ms for a cut costs one list and one watch, whatever the wait's length."""
    cluster.create_volume_snapshot(NS, "vs-count", "slow-disk", "fast-snap", LABELS)
    before = len(sim.requests_log())
    cluster.watch_volume_snapshots(NS, ["vs-count"], "cut", timeout_seconds=10)
    calls = [(e.get("verb"), e.get("resource")) for e in sim.requests_log()[before:]]
    assert calls.count(("list", "volumesnapshots")) == 1
    assert calls.count(("watch", "volumesnapshots")) == 1
    assert ("get", "volumesnapshots") not in calls
    cluster.delete_volume_snapshot(NS, "vs-count")


def test_a_wrong_token_is_forbidden(sim: Sim, tmp_path: Path) -> None:
    config = yaml.safe_load(sim.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    wrong = tmp_path / "wrong.kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    with Cluster.from_environment(str(wrong)) as intruder, pytest.raises(Forbidden) as raised:
        intruder.get_vm(NS, "freezer")
    assert raised.value.status == 401
