"""`python worker.py` as a process: starts, polls, and leaves cleanly with its freeze process;
bad config is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.worker_load import child_pids
from contracts.common import freeze_task_queue
from rules.naming import snapshot_workflow_id
from starter.local_stack import REPO_ROOT, DevServerProcess, ManagedProcess, start_worker
from tests.conftest import SEEDS, TEST_WORKER_ENV, StartSim
from tests.support.sim import Sim

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(SEEDS / "demo.yaml", name="worker-signal")
    yield started
    started.process.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_worker_stops_cleanly_on_a_signal(
    dev_server: DevServerProcess, sim: Sim, tmp_path: Path, sig: signal.Signals
) -> None:
    worker = start_worker(tmp_path, dev_server.address, sim.kubeconfig,
                          task_queue=f"signal-{sig.name.lower()}", extra_env=TEST_WORKER_ENV)
    freezer = freeze_process_of(worker)
    try:
        os.kill(worker.popen.pid, sig)
        assert worker.popen.wait(20) == 0
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "worker started: polling task queue" in log and "worker stopped" in log
    freeze_queue = freeze_task_queue(f"signal-{sig.name.lower()}")
    assert f"freeze process ready: polling task queue '{freeze_queue}'" in log
    assert log.index("freeze process ready") < log.index("worker started")
    assert gone(freezer, within=5)


def freeze_process_of(worker: ManagedProcess) -> int:
    """The worker's one child: its freeze process."""
    children = child_pids(worker.pid)
    assert len(children) == 1, children
    cmdline = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")
    assert b"--freeze-process" in cmdline
    return children[0]


def gone(pid: int, within: float) -> bool:
    """Whether `pid` ends (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


async def test_a_cut_runs_in_the_freeze_process_which_the_worker_cannot_serve_without(
    dev_server: DevServerProcess, sim: Sim, client: Client, tmp_path: Path
) -> None:
    queue = f"freeze-{uuid.uuid4().hex[:6]}"
    worker = start_worker(tmp_path, dev_server.address, sim.kubeconfig, task_queue=queue,
                          extra_env={**TEST_WORKER_ENV, "VMSNAP_CLUSTER_ID": "freezer"})
    try:
        name = f"fp-{uuid.uuid4().hex[:6]}"
        handle = await client.start_workflow(
            "SnapshotVirtualMachine", {"namespace": "demo", "vm": "web-1", "name": name},
            id=snapshot_workflow_id("freezer", "demo", name), task_queue=queue)
        result = await handle.result()
        assert result["phase"] == "Succeeded" and result["quiesced"]
        events = (await handle.fetch_history()).events
        scheduled = {e.event_id: e.activity_task_scheduled_event_attributes for e in events
                     if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
        started = [(scheduled[e.activity_task_started_event_attributes.scheduled_event_id],
                    e.activity_task_started_event_attributes.identity) for e in events
                   if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
        cuts = [(a.task_queue.name, who) for a, who in started
                if a.activity_type.name == "freeze_and_cut"]
        assert len(cuts) == 1
        assert cuts[0][0] == freeze_task_queue(queue)
        assert cuts[0][1].startswith(f"{worker.pid}@") and cuts[0][1].endswith(" freeze")
        # A worker whose freeze process ends stops with exit code 1, saying why.
        os.kill(freeze_process_of(worker), signal.SIGKILL)
        assert worker.popen.wait(30) == 1
    finally:
        worker.stop()
    assert "the freeze process ended (exit -9)" in (tmp_path / "worker.log").read_text()


def test_a_killed_worker_takes_its_freeze_process_with_it(
    dev_server: DevServerProcess, sim: Sim, tmp_path: Path
) -> None:
    worker = start_worker(tmp_path, dev_server.address, sim.kubeconfig,
                          task_queue="killed-worker", extra_env=TEST_WORKER_ENV)
    freezer = freeze_process_of(worker)
    worker.kill()
    assert gone(freezer, within=5), "the freeze process outlived its worker"


def test_a_worker_without_cluster_configuration_says_so_and_exits_1(
    dev_server: DevServerProcess, tmp_path: Path
) -> None:
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_server.address,
           "KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "worker.py")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "worker failed" in done.stderr and "names no existing file" in done.stderr
