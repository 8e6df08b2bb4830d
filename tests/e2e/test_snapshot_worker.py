"""`python worker.py` as a process: starts, polls, and leaves cleanly; bad config is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from starter.local_stack import REPO_ROOT, DevServerProcess, start_worker
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
    try:
        os.kill(worker.popen.pid, sig)
        assert worker.popen.wait(20) == 0
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "worker started: polling task queue" in log and "worker stopped" in log


def test_a_worker_without_cluster_configuration_says_so_and_exits_1(
    dev_server: DevServerProcess, tmp_path: Path
) -> None:
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_server.address,
           "KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "worker.py")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "worker failed" in done.stderr and "names no existing file" in done.stderr
