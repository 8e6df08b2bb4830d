"""The guest agent's freeze and unfreeze, as KubeVirt answers them, and the freeze log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import StartSim
from tests.simulator.behaviour_support import (
    KUBEVIRT,
    Cluster,
    behaviour_cluster,
    parse_time,
    pvc_body,
    vm_body,
    wait_for,
)


@pytest.fixture(scope="module")
def cluster(start_sim: StartSim) -> Iterator[Cluster]:
    yield from behaviour_cluster(start_sim, "behaviour-freeze")


def running_vm(cluster: Cluster, annotations: dict[str, str] | None = None) -> str:
    """A namespace with a running VM `vm` (one PVC, fast storage)."""
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("root"))
    cluster.create(
        KUBEVIRT, "virtualmachines", ns, vm_body("vm", ["root"], annotations=annotations)
    )
    wait_for(
        lambda: ((cluster.vmi(ns, "vm") or {}).get("status") or {}).get("phase") == "Running",
        what="VMI Running",
    )
    return ns


def log_of(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return [entry for entry in cluster.sim.freeze_log() if entry["namespace"] == ns]


def freeze_status(cluster: Cluster, ns: str) -> str | None:
    return ((cluster.vmi(ns, "vm") or {}).get("status") or {}).get("fsFreezeStatus")


def test_freeze_and_unfreeze_are_idempotent_and_logged(cluster: Cluster) -> None:
    ns = running_vm(cluster)
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m0s"}) == (200, None)
    assert freeze_status(cluster, ns) == "frozen"
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "10m"}) == (200, None)
    [entry] = log_of(cluster, ns)
    assert entry["vmi"] == "vm" and entry["unfreeze_timeout_seconds"] == 300
    assert entry["thawed_at"] is None and entry["thawed_by"] is None
    assert "." in entry["frozen_at"]

    assert cluster.vmi_action(ns, "vm", "unfreeze") == (200, None)
    assert freeze_status(cluster, ns) is None
    assert cluster.vmi_action(ns, "vm", "unfreeze") == (200, None)
    [entry] = log_of(cluster, ns)
    assert entry["thawed_by"] == "unfreeze"
    assert parse_time(entry["thawed_at"]) >= parse_time(entry["frozen_at"])

    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "1m"}) == (200, None)
    assert cluster.vmi_action(ns, "vm", "unfreeze") == (200, None)
    assert [e["thawed_by"] for e in log_of(cluster, ns)] == ["unfreeze", "unfreeze"]


def test_freeze_of_a_vmi_that_is_not_running_is_409(cluster: Cluster) -> None:
    ns = cluster.namespace()
    cluster.create_pvc(ns, pvc_body("root"))
    slow = {"sim.vmsnap.io/start-latency": "30s"}
    cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("vm", ["root"], annotations=slow))
    wait_for(lambda: cluster.vmi(ns, "vm"), what="VMI created")
    status, body = cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m"})
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "vm": '
        "VM is not running"
    )
    status, body = cluster.vmi_action(ns, "vm", "unfreeze")
    assert status == 409 and body["message"].endswith(": VMI is not running")
    # A stopped VM has no VMI at all: KubeVirt answers NotFound.
    cluster.create(KUBEVIRT, "virtualmachines", ns, vm_body("off", ["root"], run_strategy="Halted"))
    status, body = cluster.vmi_action(ns, "off", "freeze", {"unfreezeTimeout": "5m"})
    assert status == 404
    assert log_of(cluster, ns) == []


def test_freeze_needs_an_unfreeze_timeout(cluster: Cluster) -> None:
    ns = running_vm(cluster)
    cases: list[tuple[Any, bytes | None, str]] = [
        (None, None, "failed to retrieve unfreeze timeout"),
        ({}, None, "Unfreeze timeout in freeze request is not set"),
        ({"unfreezeTimeout": None}, None, "Unfreeze timeout in freeze request is not set"),
        ({"unfreezeTimeout": "soon"}, None, "failed to unmarshal unfreeze timeout"),
        ({"unfreezeTimeout": 300}, None, "failed to unmarshal unfreeze timeout"),
        ({"unfreezeTimeout": "300"}, None, 'missing unit in duration "300"'),
        (None, b"[1, 2]", "failed to unmarshal unfreeze timeout"),
    ]
    for body, raw, message in cases:
        status, answer = cluster.vmi_action(ns, "vm", "freeze", body, raw=raw)
        assert (status, answer["reason"]) == (400, "BadRequest"), (body, raw, answer)
        assert message in answer["message"], (body, answer)
    assert log_of(cluster, ns) == []
    assert freeze_status(cluster, ns) is None


def test_freeze_fails_without_agent_when_paused_or_when_the_guest_refuses(cluster: Cluster) -> None:
    expected = {
        "absent": "Guest agent is not responding: QEMU guest agent is not connected",
        "freeze-fails": "unable to execute QEMU agent command 'guest-fsfreeze-freeze'",
    }
    for mode, message in expected.items():
        ns = running_vm(cluster, {"sim.vmsnap.io/guest-agent": mode})
        status, body = cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m"})
        assert status == 400 and message in body["message"], body
        assert freeze_status(cluster, ns) is None and log_of(cluster, ns) == []
    ns = running_vm(cluster, {"sim.vmsnap.io/paused": "true"})
    status, body = cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m"})
    assert status == 400 and "domain is not running" in body["message"]
    assert log_of(cluster, ns) == []


def test_the_guest_thaws_itself_after_the_unfreeze_timeout(cluster: Cluster) -> None:
    ns = running_vm(cluster)
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "1s"})[0] == 200
    entry = wait_for(
        lambda: [e for e in log_of(cluster, ns) if e["thawed_by"]], timeout=5, interval=0.05
    )[0]
    assert entry["thawed_by"] == "timeout"
    window = parse_time(entry["thawed_at"]) - parse_time(entry["frozen_at"])
    assert 1.0 <= window <= 2.5, window
    assert freeze_status(cluster, ns) is None


def test_a_sub_second_or_zero_timeout_disables_the_safety_net(cluster: Cluster) -> None:
    ns = running_vm(cluster)
    # virt-handler passes whole seconds on: 500ms is 0, which never thaws by itself.
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "500ms"})[0] == 200
    time.sleep(0.8)
    assert freeze_status(cluster, ns) == "frozen"
    [entry] = log_of(cluster, ns)
    assert entry["unfreeze_timeout_seconds"] == 0 and entry["thawed_by"] is None
    assert cluster.vmi_action(ns, "vm", "unfreeze")[0] == 200


def test_stopping_a_frozen_vm_thaws_it(cluster: Cluster) -> None:
    ns = running_vm(cluster)
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m"})[0] == 200
    assert cluster.vm_action(ns, "vm", "stop")[0] in (200, 202)
    entry = wait_for(lambda: [e for e in log_of(cluster, ns) if e["thawed_by"]])[0]
    assert entry["thawed_by"] == "stop"
    wait_for(lambda: cluster.vmi(ns, "vm") is None, what="VMI gone")


LIMITED = {"sim.vmsnap.io/freeze-limit": "300ms"}
VSS_LAPSED = (
    'server error. command Unfreeze failed: "LibvirtError(Code=1, Domain=10, '
    "Message='internal error: unable to execute QEMU agent command 'guest-fsfreeze-thaw': "
    "couldn't hold writes: fsfreeze is limited up to 10 seconds: ')\""
)


def test_a_guest_with_a_limited_freeze_thaws_itself_and_the_unfreeze_says_so(
    cluster: Cluster,
) -> None:
    ns = running_vm(cluster, LIMITED)
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m"}) == (200, None)
    entry = wait_for(lambda: [e for e in log_of(cluster, ns) if e["thawed_by"]], timeout=5)[0]
    assert entry["thawed_by"] == "freeze-limit" and entry["freeze_limit_seconds"] == 0.3
    window = parse_time(entry["thawed_at"]) - parse_time(entry["frozen_at"])
    assert 0.3 <= window <= 1.0, window
    # The agent still reports the freeze, and a new one is a no-op that succeeds.
    assert freeze_status(cluster, ns) == "frozen"
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "5m"}) == (200, None)
    assert len(log_of(cluster, ns)) == 1
    status, body = cluster.vmi_action(ns, "vm", "unfreeze")
    assert (status, body["reason"], body["message"]) == (400, "BadRequest", VSS_LAPSED)
    assert "fsfreeze is limited" in body["message"]
    # The failed thaw leaves the agent thawed; the log keeps the guest's own thaw.
    assert freeze_status(cluster, ns) is None
    assert cluster.vmi_action(ns, "vm", "unfreeze") == (200, None)
    [kept] = log_of(cluster, ns)
    assert kept["thawed_by"] == "freeze-limit" and kept["thawed_at"] == entry["thawed_at"]


def test_a_limited_freeze_ended_in_time_unfreezes_as_usual(cluster: Cluster) -> None:
    ns = running_vm(cluster, {"sim.vmsnap.io/freeze-limit": "10s"})
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "1m"}) == (200, None)
    assert cluster.vmi_action(ns, "vm", "unfreeze") == (200, None)
    [entry] = log_of(cluster, ns)
    assert entry["thawed_by"] == "unfreeze" and entry["freeze_limit_seconds"] == 10.0


def test_the_safety_unfreeze_after_a_lapsed_freeze_leaves_the_agent_thawed(
    cluster: Cluster,
) -> None:
    ns = running_vm(cluster, LIMITED)
    assert cluster.vmi_action(ns, "vm", "freeze", {"unfreezeTimeout": "1s"})[0] == 200
    wait_for(lambda: freeze_status(cluster, ns) is None, timeout=5, what="agent thawed")
    [entry] = log_of(cluster, ns)
    assert entry["thawed_by"] == "freeze-limit"
    assert cluster.vmi_action(ns, "vm", "unfreeze") == (200, None)
