"""The `vmsnap` CLI as a user runs it: real `vmsnap` processes against the dev server, a
simulator and `python worker.py`, configured only by the environment (TEMPORAL_ADDRESS,
KUBECONFIG, VMSNAP_TASK_QUEUE), output parsed from `-o json|yaml`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from starter.local_stack import DevServerProcess, spawn
from tests.conftest import SEEDS, TEST_WORKER_ENV
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

NS = "demo"
VMSNAP = Path(sys.executable).parent / "vmsnap"
NO_DISK_VM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: nodisk-1
  namespace: demo
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        devices:
          disks:
            - name: boot
              disk: {bus: virtio}
        resources: {requests: {memory: 64Mi}}
      volumes:
        - name: boot
          containerDisk: {image: quay.io/containerdisks/fedora:latest}
"""


@dataclass
class Cli:
    stack: Stack
    env: dict[str, str]
    home: Path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VMSNAP), *args], capture_output=True, text=True, timeout=120,
                              env={**self.env, **(env or {})})

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout

    def error(self, code: int, *args: str) -> str:
        """The one stderr line of a command that must fail with `code`."""
        done = self(*args)
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        return lines[0]


@pytest.fixture(scope="module")
def cli(start_stack: StartStack, dev_server: DevServerProcess,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    home = tmp_path_factory.mktemp("cli-home")
    seed = home / "nodisk.yaml"
    seed.write_text(NO_DISK_VM)
    stack = start_stack(SEEDS / "demo.yaml", seed)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEMPORAL_", "VMSNAP_", "KUBE"))}
    env.update(HOME=str(home), KUBECONFIG=str(stack.sim.kubeconfig),
               TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_NAMESPACE=dev_server.namespace,
               VMSNAP_TASK_QUEUE=stack.task_queue)
    yield Cli(stack, env, home)
    stack.worker.stop()
    stack.sim.process.stop()


def writes(cli: Cli, since: int) -> list[dict[str, Any]]:
    answer = cli.stack.sim.request("GET", f"/sim/requests?since={since}")
    return [r for r in answer["items"] if r["verb"] not in ("get", "list", "watch")]


def mark(cli: Cli) -> int:
    return int(cli.stack.sim.request("GET", "/sim/requests")["next"])


def test_plan_answers_without_changing_anything(cli: Cli) -> None:
    before = mark(cli)
    plan = json.loads(cli.ok("snapshot", "plan", "web-1", "-n", NS, "-o", "json"))
    assert plan["state"] == "Running" and plan["guest_agent"] is True
    assert plan["will_freeze"] and plan["possible"]
    assert plan["indications"] == ["Online", "GuestAgent"]
    included = {d["volume_name"]: d for d in plan["disks"] if d["included"]}
    assert len(included) == 3
    assert {d["snapshot_class"] for d in included.values()} == {"csi-hostpath-snapclass"}
    excluded = [d for d in plan["disks"] if not d["included"]]
    assert len(excluded) == 2 and all(d["reason"] for d in excluded)

    paused = cli.ok("snapshot", "plan", "paused-1", "-n", NS)
    assert "VM demo/paused-1: Paused" in paused and "freeze:       no" in paused
    assert "Online, GuestAgent, Paused" in paused and "snapshot possible" in paused

    impossible = cli("snapshot", "plan", "nodisk-1", "-n", NS)
    assert impossible.returncode == 1
    assert "snapshot not possible: no eligible disk" in impossible.stdout
    assert writes(cli, before) == []  # only GET and LIST reached the cluster


def test_create_wait_list_get_runs_delete(cli: Cli) -> None:
    done = cli("snapshot", "create", "web-1", "-n", NS, "--name", "cli-web", "--wait",
               "--label", "purpose=test")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("snapshot demo/cli-web of VM web-1 started (workflow "
                               f"snapshot/{cli.stack.cluster_id}/demo/cli-web")
    progress = [line for line in lines if line.startswith("[")]  # plain: not a terminal
    assert progress and any("cut" in line for line in progress)
    assert "snapshot demo/cli-web: Succeeded, ready to use" in done.stdout
    assert "indications:  Online, GuestAgent" in done.stdout

    table = cli.ok("snapshot", "list", "-n", NS)
    [row] = [line.split() for line in table.splitlines() if line.startswith("cli-web ")]
    assert row[:5] == ["cli-web", "web-1", "Succeeded", "true", "Online,GuestAgent"]

    # the default namespace is the kubeconfig context's
    kubeconfig = yaml.safe_load(cli.stack.sim.kubeconfig.read_text())
    kubeconfig["contexts"][0]["context"]["namespace"] = NS
    in_demo = cli.home / "demo.kubeconfig"
    in_demo.write_text(yaml.safe_dump(kubeconfig))
    listed = cli("snapshot", "list", "--vm", "web-1", "-o", "json",
                 env={"KUBECONFIG": str(in_demo)})
    [info] = [i for i in json.loads(listed.stdout) if i["name"] == "cli-web"]
    assert info["phase"] == "Succeeded" and info["ready_to_use"] is True
    assert info["labels"]["purpose"] == "test" and isinstance(info["freeze_window_ms"], int)

    got = yaml.safe_load(cli.ok("snapshot", "get", "cli-web", "-n", NS, "-o", "yaml"))
    assert got["name"] == "cli-web" and len(got["volume_snapshots"]) == 3

    deadline = time.monotonic() + 20
    while True:  # visibility is eventually consistent
        runs = json.loads(cli.ok("runs", "--vm", "web-1", "-n", NS, "-o", "json"))
        if any(r["workflow_id"] == f"snapshot/{cli.stack.cluster_id}/demo/cli-web"
               for r in runs):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.3)
    assert {r["vm"] for r in runs} == {"web-1"}

    deleted = cli.ok("snapshot", "delete", "cli-web", "-n", NS)
    assert deleted.strip() == "snapshot demo/cli-web deleted (3 VolumeSnapshot(s) deleted)"
    assert cli.error(1, "snapshot", "get", "cli-web", "-n", NS) == \
        "error: snapshot demo/cli-web not found"


def test_errors_are_one_line(cli: Cli) -> None:
    assert cli.error(1, "snapshot", "create", "nope", "-n", NS) == \
        "error: VirtualMachine demo/nope not found"
    assert cli.error(2, "snapshot", "create", "nodisk-1", "-n", NS).startswith(
        "error: cannot snapshot VM demo/nodisk-1: no eligible disk")
    assert cli.error(1, "snapshot", "cancel", "nope", "-n", NS) == \
        f"error: snapshot workflow snapshot/{cli.stack.cluster_id}/demo/nope not found"


def test_wait_exits_non_zero_with_the_reason(cli: Cli) -> None:
    done = cli("snapshot", "create", "db-1", "-n", NS, "--name", "cli-required",
               "--quiesce", "required", "--no-check", "--wait")
    assert done.returncode == 1, done.stdout
    assert done.stderr.strip().splitlines() == [
        "error: snapshot demo/cli-required failed: inspect: quiesce is required but the guest "
        "cannot be frozen: no guest agent is connected (QuiesceRequired)"]


def test_vmsnap_worker_runs_the_worker(cli: Cli, dev_server: DevServerProcess) -> None:
    queue = f"vmsnap-cli-worker-{uuid.uuid4().hex[:6]}"
    process = spawn("vmsnap-worker", [str(VMSNAP), "worker", "--task-queue", queue],
                    cli.home / "vmsnap-worker.log", {**cli.env, **TEST_WORKER_ENV})
    try:
        deadline = time.monotonic() + 30
        while "worker started" not in process.log_tail():
            assert process.running() and time.monotonic() < deadline, process.log_tail()
            time.sleep(0.1)
        assert f"polling task queue '{queue}'" in process.log_tail()
    finally:
        code = process.stop()
    assert code == 0, process.log_tail()


def test_cluster_names_the_id_the_worker_derived_and_the_task_queue(cli: Cli) -> None:
    identity = json.loads(cli.ok("cluster", "-o", "json"))
    assert identity == {"cluster_id": cli.stack.cluster_id,
                        "task_queue": cli.stack.task_queue}
    assert cli.error(2, "snapshot", "create", "web-1", "-n", NS, "--freeze-budget",
                     "soon").startswith("error: --freeze-budget")
