"""Starting and stopping the simulator: seeds, the reference folder, signals, the kubeconfig."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simulator.reference import REPO_ROOT
from simulator.runtime import Options, start
from simulator.seeding import SeedError
from tests.conftest import REFERENCE_EXAMPLES, StartSim

SEED = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: listed, namespace: seeded}
  spec:
    accessModes: [ReadWriteOnce]
    resources: {requests: {storage: 1Gi}}
    storageClassName: ""
  status: {phase: Lost}
---
apiVersion: v1
kind: Namespace
metadata: {name: seeded, labels: {from: seed}}
"""


async def test_seeds_load_in_order_with_status_and_namespaces(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    examples = sorted(REFERENCE_EXAMPLES.glob("*.yaml"))
    sim = await start(Options(kubeconfig=tmp_path / "kc", seeds=[*examples, seed]))
    try:
        store, registry = sim.ctx.store, sim.ctx.registry
        namespaces = registry.lookup("", "v1", "namespaces").resource
        assert store.get(namespaces, None, "seeded")["metadata"]["labels"] == {"from": "seed"}
        assert store.get(namespaces, None, "default")["status"]["phase"] == "Active"
        claims = registry.lookup("", "v1", "persistentvolumeclaims").resource
        assert store.get(claims, "seeded", "listed")["status"]["phase"] == "Lost"  # kept as written
        vms = registry.lookup("kubevirt.io", "v1", "virtualmachines").resource
        names = {vm["metadata"]["name"] for vm in store.list(vms, "default")[0]}
        assert {"vm-cirros", "vm-alpine-multipvc", "vm-windows-clarge-windows"} <= names
        snapshots = registry.lookup("snapshot.storage.k8s.io", "v1", "volumesnapshots").resource
        assert store.get(snapshots, "default", "new-snapshot-demo-v1")
        config = yaml.safe_load((tmp_path / "kc").read_text())
        assert config["current-context"] == "vmsnap-sim"
        assert config["users"][0]["user"]["token"] == sim.ctx.token
    finally:
        await sim.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n", 'no matches for kind "Widget"'),
        (
            "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\n"
            "metadata: {name: s}\nspec: {source: {}}\n",
            "exactly one of",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\nspek: {}\n",
            'unknown field "spek"',
        ),
        ("a: [unclosed\n", "invalid YAML"),
    ],
)
async def test_a_bad_seed_is_a_clear_start_up_error(
    tmp_path: Path, text: str, message: str
) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text(text)
    with pytest.raises(SeedError) as refused:
        await start(Options(kubeconfig=tmp_path / "kc", seeds=[seed]))
    assert message in str(refused.value) and "bad.yaml" in str(refused.value)
    assert not (tmp_path / "kc").exists()


def test_a_missing_reference_folder_stops_the_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            "0",
            "--kubeconfig",
            str(tmp_path / "kc"),
            "--reference",
            str(tmp_path / "nowhere"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "reference schemas not found" in result.stderr and "nowhere" in result.stderr
    assert not (tmp_path / "kc").exists()


def test_sigterm_stops_the_process_cleanly(start_sim: StartSim) -> None:
    sim = start_sim(name="stopping")
    assert sim.request("GET", "/api")["kind"] == "APIVersions"  # serving before the stop
    assert sim.process.stop() == 0
