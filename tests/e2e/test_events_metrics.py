"""Operators' signals end to end: Events on the VM and the worker's Prometheus endpoint.

A worker in this process runs the real SnapshotVirtualMachine workflow and
activities against a simulator, on a client whose Runtime exports Prometheus
metrics from `VMSNAP_METRICS_ADDRESS` (starter/metrics.py). At its end the
workflow reports: `record_vm_event` and `record_snapshot_metrics`.
The Events are then read with `kubectl get events` and `kubectl describe vm`,
and the metrics with an HTTP scrape.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

import worker as worker_module
from cluster.client import Cluster
from cluster.events import EventOperations, event_name, vm_event_body
from contracts.reporting import SNAPSHOT_FAILED, SNAPSHOT_SUCCEEDED
from rules.naming import snapshot_workflow_id
from starter.connection import connect, load_connection_settings
from starter.local_stack import DevServerProcess
from starter.metrics import MetricsConfigError, metrics_address, runtime_from_environment
from tests.conftest import StartSim
from tests.support.sim import Sim

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"
DEADLINE_EXCEEDED = "SnapshotDeadlineExceeded"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Env:
    sim: Sim
    client: Client
    task_queue: str
    metrics_url: str
    cluster_id: str


@pytest.fixture(scope="module")
async def env(start_sim: StartSim, dev_server: DevServerProcess) -> AsyncIterator[Env]:
    sim = start_sim(SEED, name="signals-sim")
    address = f"127.0.0.1:{free_port()}"
    runtime = runtime_from_environment({"VMSNAP_METRICS_ADDRESS": address})
    assert runtime is not None
    client = await connect(load_connection_settings(
        address=dev_server.address, namespace=dev_server.namespace), runtime=runtime)
    task_queue = f"vmsnap-signals-{uuid.uuid4().hex[:8]}"
    cluster = Cluster.from_environment(str(sim.kubeconfig))
    with ThreadPoolExecutor(worker_module.MAX_CONCURRENT_ACTIVITIES) as pool:
        async with Worker(
            client, task_queue=task_queue, workflows=worker_module.WORKFLOWS,
            activities=worker_module.activities_for(cluster, None),
            activity_executor=pool,
            max_concurrent_activities=worker_module.MAX_CONCURRENT_ACTIVITIES,
            max_heartbeat_throttle_interval=worker_module.MAX_HEARTBEAT_THROTTLE,
        ), worker_module.build_freeze_worker(client, cluster, task_queue):
            yield Env(sim, client, task_queue, f"http://{address}/metrics",
                      cluster.cluster_id)
    cluster.close()
    sim.process.stop()


async def reported(env: Env, vm: str, name: str, **fields: Any) -> Any:
    return await env.client.execute_workflow(
        "SnapshotVirtualMachine", {"namespace": NS, "vm": vm, "name": name, **fields},
        id=snapshot_workflow_id(env.cluster_id, NS, name), task_queue=env.task_queue)


def events_on(env: Env, vm: str) -> list[dict[str, Any]]:
    listed = json.loads(env.sim.kubectl("get", "events", "-n", NS, "-o", "json").stdout)
    return [e for e in listed["items"] if e["involvedObject"].get("name") == vm]


def scrape(env: Env) -> str:
    with urllib.request.urlopen(env.metrics_url, timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample whose labels include `labels` (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


async def test_success_leaves_a_normal_event_on_the_vm_and_counts_the_snapshot(
    env: Env,
) -> None:
    name = f"ok-{uuid.uuid4().hex[:6]}"
    result = await reported(env, "eight", name)
    assert result["phase"] == "Succeeded" and result["freeze_window_ms"] is not None

    [event] = [e for e in events_on(env, "eight") if (e.get("related") or {}).get("name") == name]
    vm_uid = json.loads(env.sim.kubectl("get", "vm", "eight", "-n", NS, "-o", "json")
                        .stdout)["metadata"]["uid"]
    assert event["type"] == "Normal" and event["reason"] == SNAPSHOT_SUCCEEDED
    assert event["involvedObject"]["uid"] == vm_uid == result["vm_uid"]
    assert event["involvedObject"]["kind"] == "VirtualMachine"
    assert event["reportingComponent"] == "vmsnap" and event["source"]["component"] == "vmsnap"
    assert name in event["message"]

    described = env.sim.kubectl("describe", "vm", "eight", "-n", NS).stdout
    assert SNAPSHOT_SUCCEEDED in described and name in described

    text = scrape(env)
    assert sample(text, "vmsnap_snapshots", outcome="succeeded") >= 1
    assert sample(text, "vmsnap_freeze_window_count") >= 1
    assert sample(text, "vmsnap_freeze_window_bucket", le="+Inf") >= 1
    assert "temporal_" in text  # Temporal's own worker metrics, on the same endpoint


async def test_a_deadline_failure_leaves_a_warning_and_counts_deadline_and_compensation(
    env: Env,
) -> None:
    before = scrape(env)
    name = f"late-{uuid.uuid4().hex[:6]}"
    with pytest.raises(WorkflowFailureError):
        await reported(env, "stuck", name, failure_deadline="2s")

    [event] = [e for e in events_on(env, "stuck") if (e.get("related") or {}).get("name") == name]
    assert event["type"] == "Warning" and event["reason"] == SNAPSHOT_FAILED
    assert "deadline" in event["message"]
    assert f"Warning  {SNAPSHOT_FAILED}" in env.sim.kubectl(
        "describe", "vm", "stuck", "-n", NS).stdout
    listed = env.sim.kubectl("get", "events", "-n", NS,
                             "--field-selector", "type=Warning").stdout
    assert SNAPSHOT_FAILED in listed

    after = scrape(env)
    for metric, labels in [("vmsnap_snapshots", {"outcome": "failed",
                                                 "error_type": DEADLINE_EXCEEDED}),
                           ("vmsnap_deadline_failures", {}),
                           ("vmsnap_compensations", {"operation": "snapshot"})]:
        assert sample(after, metric, **labels) == sample(before, metric, **labels) + 1, metric


async def test_a_retried_event_is_one_event(env: Env) -> None:
    """Same workflow id and reason: the second create answers AlreadyExists, no second Event."""
    name = f"twice-{uuid.uuid4().hex[:6]}"
    await reported(env, "agentless", name)
    first = [e for e in events_on(env, "agentless") if (e.get("related") or {}).get("name") == name]
    # A retry of the activity: the same Event body, created again through the adapter.
    with Cluster.from_environment(str(env.sim.kubeconfig)) as cluster:
        ops = EventOperations(cluster.api_client)
        _, created = await asyncio.to_thread(ops.create_event, {
            **first[0], "metadata": {"name": first[0]["metadata"]["name"], "namespace": NS}})
    assert not created
    again = [e for e in events_on(env, "agentless") if (e.get("related") or {}).get("name") == name]
    assert len(again) == 1


# ---- bad input changes nothing (no servers needed) ------------------------------------------

VM = {"metadata": {"name": "vm1", "namespace": "ns", "uid": "u-1"}}


@pytest.mark.parametrize("field,value,error", [
    ("reason", "snapshot failed", "CamelCase"),
    ("type", "Error", "Normal or Warning"),
    ("message", "  ", "needs a message"),
])
def test_a_bad_event_is_refused(field: str, value: str, error: str) -> None:
    fields: dict[str, Any] = {"operation": "op", "reason": "SnapshotFailed", "message": "m",
                              "type": "Warning", "action": "Snapshot", field: value}
    with pytest.raises(ValueError, match=error):
        vm_event_body(VM, **fields)


def test_an_event_needs_the_vm_uid_and_has_a_stable_name() -> None:
    with pytest.raises(ValueError, match="uid"):
        vm_event_body({"metadata": {"name": "vm1", "namespace": "ns"}}, operation="op",
                      reason="SnapshotFailed", message="m", type="Warning", action="Snapshot")
    body = vm_event_body(VM, operation="op", reason="SnapshotFailed", message="x" * 5000,
                         type="Warning", action="Snapshot")
    assert body["metadata"]["name"] == event_name("vm1", "op", "SnapshotFailed")
    assert event_name("vm1", "op", "SnapshotFailed") != event_name("vm1", "op", "SnapshotReady")
    assert len(body["message"]) == 1024 and len(event_name("v" * 253, "op", "R")) <= 253


@pytest.mark.parametrize("value", ["9464", "0.0.0.0", "host:99999", "a b:1", ":9464"])
def test_a_bad_metrics_address_is_refused(value: str) -> None:
    with pytest.raises(MetricsConfigError, match="host:port"):
        metrics_address({"VMSNAP_METRICS_ADDRESS": value})


def test_no_metrics_address_means_no_exporter() -> None:
    assert metrics_address({}) is None
    assert runtime_from_environment({"VMSNAP_METRICS_ADDRESS": ""}) is None
    assert metrics_address({"VMSNAP_METRICS_ADDRESS": "[::]:9464"}) == "[::]:9464"
