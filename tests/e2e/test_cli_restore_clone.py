"""`vmsnap restore` and `vmsnap clone` as a user runs them: real `vmsnap` processes against
the dev server, a simulator (the snapshot seed, namespace snap) and `python worker.py`.
A request the cluster refuses gives one line, exit 1 and no cluster write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from starter.cli import app
from starter.local_stack import DevServerProcess
from tests.e2e.conftest import StartStack
from tests.e2e.test_cli import Cli, mark, writes

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"


@pytest.fixture(scope="module")
def cli(start_stack: StartStack, dev_server: DevServerProcess,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    home = tmp_path_factory.mktemp("cli-restore-clone")
    stack = start_stack(SEED)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEMPORAL_", "VMSNAP_", "KUBE"))}
    env.update(HOME=str(home), KUBECONFIG=str(stack.sim.kubeconfig),
               TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_NAMESPACE=dev_server.namespace,
               VMSNAP_TASK_QUEUE=stack.task_queue)
    yield Cli(stack, env, home)
    stack.worker.stop()
    stack.sim.process.stop()


@pytest.fixture(scope="module")
def snapshot(cli: Cli) -> str:
    cli.ok("snapshot", "create", "stopped", "--name", "stopped-cli", "-n", NS, "--wait")
    return "stopped-cli"


def vm_names(cli: Cli) -> set[str]:
    listed = json.loads(cli.stack.sim.kubectl("get", "virtualmachines", "-n", NS,
                                              "-o", "json").stdout)
    return {item["metadata"]["name"] for item in listed["items"]}


def vm(cli: Cli, name: str) -> dict[str, Any]:
    return dict(json.loads(cli.stack.sim.kubectl("get", "virtualmachine", name, "-n", NS,
                                                 "-o", "json").stdout))


def test_clone_and_restore_with_wait(cli: Cli, snapshot: str) -> None:
    cloned = json.loads(cli.ok(
        "clone", "--from-snapshot", snapshot, "stopped-copy", "-n", NS, "--wait",
        "--new-smbios-serial", "copy-1",
        "--label-filter", "*", "--patch",
        '{"op": "add", "path": "/metadata/labels/tier", "value": "gold"}', "-o", "json"))
    assert cloned["phase"] == "Succeeded" and cloned["target"] == "stopped-copy"
    made = vm(cli, "stopped-copy")
    assert made["metadata"]["labels"]["tier"] == "gold"
    domain = made["spec"]["template"]["spec"]["domain"]
    assert domain["firmware"]["serial"] == "copy-1"

    restored = json.loads(cli.ok("restore", snapshot, "-n", NS, "--wait", "-o", "json"))
    assert restored["phase"] == "Succeeded" and restored["target"] == "stopped"
    claims = [v["persistentVolumeClaim"]["claimName"]
              for v in vm(cli, "stopped")["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == [restored["volumes"][0]["pvc_name"]]

    table = cli.ok("restore", snapshot, "--target", "stopped-new", "-n", NS, "--wait")
    assert "Succeeded" in table and "stopped-new" in vm_names(cli)


REFUSED = [  # checked against the cluster: exit 1; the pure checks: tests/starter
    (["restore", "no-such-snap"], "snapshot snap/no-such-snap not found"),
    (["clone", "--from-snapshot", "no-such-snap", "x-1"],
     "snapshot snap/no-such-snap not found"),
    (["clone", "--from-vm", "no-such-vm", "x-1"], "VirtualMachine snap/no-such-vm not found"),
    (["clone", "--from-vm", "agentless", "stopped"], "already exists"),
    (["restore", "stopped-cli", "--target", "agentless"], "already exists"),
]
RUNNER = CliRunner()


@pytest.mark.parametrize(("args", "expected"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_with_one_line_and_nothing_changed(
    cli: Cli, snapshot: str, args: list[str], expected: str
) -> None:
    """In-process (CliRunner): the same code path, without a interpreter start per case."""
    before, vms = mark(cli), vm_names(cli)
    result = RUNNER.invoke(app, [*args, "-n", NS], env=cli.env)
    stderr = getattr(result, "stderr")  # noqa: B009
    assert result.exit_code == 1, (result.stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert writes(cli, before) == [] and vm_names(cli) == vms


def test_temporal_unreachable(cli: Cli, snapshot: str) -> None:
    before = mark(cli)
    done = cli("clone", "--from-snapshot", snapshot, "y-1", "-n", NS,
               env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert done.returncode == 1 and done.stderr.startswith("error: "), done
    assert len(done.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in done.stderr
    assert writes(cli, before) == []
