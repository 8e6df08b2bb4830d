"""kubectl (v1.32, a client we did not write) against the simulator, as a user would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REFERENCE_EXAMPLES, StartSim
from tests.support.sim import Sim

BAD_SNAPSHOT = """
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata:
  name: no-source
spec:
  volumeSnapshotClassName: csi-hostpath-snapclass-v1
  source: {}
"""


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(name="kubectl")
    yield started
    started.process.stop()


@pytest.fixture
def namespace(sim: Sim) -> str:
    name = f"k-{uuid.uuid4().hex[:8]}"
    sim.kubectl("create", "namespace", name)  # kubectl sends this one as protobuf
    return name


def test_api_resources_lists_every_kind(sim: Sim) -> None:
    out = sim.kubectl("api-resources").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    for name, short in [
        ("persistentvolumeclaims", "pvc"),
        ("storageclasses", "sc"),
        ("volumesnapshots", "vs"),
        ("virtualmachines", "vm,vms"),
        ("virtualmachineinstances", "vmi,vmis"),
        ("namespaces", "ns"),
        ("customresourcedefinitions", "crd,crds"),
    ]:
        assert name in rows and short in rows[name].split(), name
    assert "vmsnapsnapshots" in rows  # the project's CRDs, from deploy/crds
    assert "kubevirt.io/v1" in rows["virtualmachines"]


def test_every_reference_example_loads_and_reads_back(sim: Sim, namespace: str) -> None:
    examples = sorted(REFERENCE_EXAMPLES.glob("*.yaml"))
    assert len(examples) == 11
    for path in examples:
        manifest = yaml.safe_load(path.read_text())
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if kind == "StorageClass":
            name = f"{name}-{namespace}"  # cluster-scoped: keep each run's name apart
            manifest["metadata"]["name"] = name
            sim.kubectl("create", "-f", "-", input=yaml.safe_dump(manifest))
        else:
            sim.kubectl("create", "-n", namespace, "-f", str(path))
        read = json.loads(sim.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)
        assert read["metadata"]["name"] == name and read["kind"] == kind
        assert read["metadata"]["uid"] and read["metadata"]["resourceVersion"]


def test_get_prints_printer_columns(sim: Sim, namespace: str) -> None:
    sim.kubectl("apply", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "vm-cirros.yaml"))
    sim.kubectl("apply", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "csi-snapshot-v1.yaml"))
    vms = sim.kubectl("get", "-n", namespace, "vm").stdout.splitlines()
    assert vms[0].split() == ["NAME", "AGE", "STATUS", "READY"]
    assert vms[1].split()[0] == "vm-cirros"
    snapshots = sim.kubectl("get", "-n", namespace, "vs").stdout.splitlines()
    assert snapshots[0].split()[:3] == ["NAME", "READYTOUSE", "SOURCEPVC"]
    sim.kubectl(
        "patch",
        "-n",
        namespace,
        "vm",
        "vm-cirros",
        "--type",
        "merge",
        "-p",
        '{"spec":{"runStrategy":"Always"}}',
    )
    deadline = time.monotonic() + 10
    while "vm-cirros" not in (wide := sim.kubectl("get", "vmi", "-A", "-o", "wide").stdout):
        assert time.monotonic() < deadline, "the VM controller made no VMI"
        time.sleep(0.1)
    header = wide.splitlines()[0].split()
    assert header[:4] == ["NAMESPACE", "NAME", "AGE", "PHASE"] and "PAUSED" in header


def test_apply_creates_then_updates(sim: Sim, namespace: str, tmp_path: Path) -> None:
    pvc = yaml.safe_load((REFERENCE_EXAMPLES / "csi-pvc.yaml").read_text())
    first = sim.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pvc))
    assert "created" in first.stdout
    pvc["metadata"]["labels"] = {"applied": "twice"}
    second = sim.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pvc))
    assert "configured" in second.stdout
    vm = yaml.safe_load((REFERENCE_EXAMPLES / "vm-cirros.yaml").read_text())
    sim.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(vm))
    vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "256Mi"
    assert (
        "configured"
        in sim.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(vm)).stdout
    )
    memory = sim.kubectl(
        "get",
        "-n",
        namespace,
        "vm",
        "vm-cirros",
        "-o",
        "jsonpath={.spec.template.spec.domain.memory.guest}",
    ).stdout
    assert memory == "256Mi"
    labels = sim.kubectl(
        "get", "-n", namespace, "pvc", "hpvc", "-o", "jsonpath={.metadata.labels.applied}"
    )
    assert labels.stdout == "twice"


def test_patch_merge_and_json_with_a_failing_test(sim: Sim, namespace: str) -> None:
    sim.kubectl("create", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "vm-cirros.yaml"))
    sim.kubectl(
        "patch",
        "-n",
        namespace,
        "vm",
        "vm-cirros",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"labels":{"stage":"one"}}}',
    )
    failed = sim.kubectl(
        "patch",
        "-n",
        namespace,
        "vm",
        "vm-cirros",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/metadata/labels/stage","value":"two"},'
        '{"op":"replace","path":"/metadata/labels/stage","value":"three"}]',
        check=False,
    )
    assert failed.returncode != 0 and "test" in failed.stderr.lower()
    sim.kubectl(
        "patch",
        "-n",
        namespace,
        "vm",
        "vm-cirros",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/metadata/labels/stage","value":"one"},'
        '{"op":"replace","path":"/metadata/labels/stage","value":"two"}]',
    )
    stage = sim.kubectl(
        "get", "-n", namespace, "vm", "vm-cirros", "-o", "jsonpath={.metadata.labels.stage}"
    )
    assert stage.stdout == "two"


def test_get_watch_streams_changes(sim: Sim, namespace: str) -> None:
    sim.kubectl("create", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "vm-cirros.yaml"))
    env = {**os.environ, "HOME": str(sim.home), "KUBECONFIG": str(sim.kubeconfig)}
    watcher = subprocess.Popen(
        [
            "kubectl",
            "--cache-dir",
            str(sim.home / "kube-cache"),
            "get",
            "-n",
            namespace,
            "vm",
            "-w",
            "--output-watch-events",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert watcher.stdout is not None
        header = watcher.stdout.readline()
        assert header.split()[:2] == ["EVENT", "NAME"]
        assert watcher.stdout.readline().split()[:2] == ["ADDED", "vm-cirros"]
        sim.kubectl("label", "-n", namespace, "vm", "vm-cirros", "watched=yes")
        assert watcher.stdout.readline().split()[:2] == ["MODIFIED", "vm-cirros"]
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(10)


def test_delete_and_finalizers(sim: Sim, namespace: str) -> None:
    pvc = yaml.safe_load((REFERENCE_EXAMPLES / "csi-pvc.yaml").read_text())
    pvc["metadata"]["finalizers"] = ["example.com/hold"]
    sim.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(pvc))
    sim.kubectl("delete", "-n", namespace, "pvc", "hpvc", "--wait=false")
    terminating = sim.kubectl(
        "get", "-n", namespace, "pvc", "hpvc", "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    assert terminating.stdout
    sim.kubectl(
        "patch",
        "-n",
        namespace,
        "pvc",
        "hpvc",
        "--type",
        "json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    gone = sim.kubectl("get", "-n", namespace, "pvc", "hpvc", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    sim.kubectl("create", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "vm-cirros.yaml"))
    assert "deleted" in sim.kubectl("delete", "-n", namespace, "vm", "vm-cirros").stdout


def test_stale_replace_is_a_conflict(sim: Sim, namespace: str, tmp_path: Path) -> None:
    sim.kubectl("create", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "csi-pvc.yaml"))
    current = sim.kubectl("get", "-n", namespace, "pvc", "hpvc", "-o", "yaml").stdout
    stale = tmp_path / "stale.yaml"
    stale.write_text(current)
    sim.kubectl("label", "-n", namespace, "pvc", "hpvc", "changed=yes")
    refused = sim.kubectl("replace", "-n", namespace, "-f", str(stale), check=False)
    assert refused.returncode != 0 and "Conflict" in refused.stderr


def test_owner_deletion_collects_dependents(sim: Sim, namespace: str) -> None:
    sim.kubectl("create", "-n", namespace, "-f", str(REFERENCE_EXAMPLES / "vm-cirros.yaml"))
    uid = sim.kubectl(
        "get", "-n", namespace, "vm", "vm-cirros", "-o", "jsonpath={.metadata.uid}"
    ).stdout
    pvc = yaml.safe_load((REFERENCE_EXAMPLES / "csi-pvc.yaml").read_text())
    pvc["metadata"]["ownerReferences"] = [
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "vm-cirros", "uid": uid}
    ]
    sim.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(pvc))
    sim.kubectl("delete", "-n", namespace, "vm", "vm-cirros")
    assert "NotFound" in sim.kubectl("get", "-n", namespace, "pvc", "hpvc", check=False).stderr


def test_validation_errors_name_the_field(sim: Sim, namespace: str) -> None:
    invalid = sim.kubectl("create", "-n", namespace, "-f", "-", input=BAD_SNAPSHOT, check=False)
    assert invalid.returncode != 0
    assert "spec.source" in invalid.stderr and "is invalid" in invalid.stderr
    unknown = BAD_SNAPSHOT.replace(
        "source: {}", "source: {persistentVolumeClaimName: hpvc}\n  sauce: 1"
    )
    strict = sim.kubectl("create", "-n", namespace, "-f", "-", input=unknown, check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.sauce"' in strict.stderr and "BadRequest" in strict.stderr


def test_no_token_is_unauthorized(sim: Sim, tmp_path: Path) -> None:
    config = yaml.safe_load(sim.kubeconfig.read_text())
    wrong = tmp_path / "wrong.kubeconfig"

    def kubectl_as(user: dict[str, str]) -> subprocess.CompletedProcess[str]:
        config["users"][0]["user"] = user
        wrong.write_text(yaml.safe_dump(config))
        return subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(wrong),
                "--cache-dir",
                str(tmp_path / "cache"),
                "get",
                "pvc",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},
            stdin=subprocess.DEVNULL,
        )

    refused = kubectl_as({"token": "not-the-token"})
    assert refused.returncode != 0 and "You must be logged in to the server" in refused.stderr
    # With no credentials at all kubectl, told 401, asks for a user name (stdin is closed).
    anonymous = kubectl_as({})
    assert anonymous.returncode != 0 and "Username" in anonymous.stdout + anonymous.stderr


def test_explain_and_raw_endpoints(sim: Sim) -> None:
    explained = sim.kubectl("explain", "virtualmachine.spec.runStrategy").stdout
    assert "VirtualMachine" in explained and "runStrategy" in explained
    requests = json.loads(sim.kubectl("get", "--raw", "/sim/requests?since=0").stdout)
    assert any(entry["verb"] == "list" for entry in requests["items"])
    assert json.loads(sim.kubectl("get", "--raw", "/sim/freeze-log").stdout)["items"] == []


def test_group_snapshot_kinds_are_served_with_no_class_seeded(sim: Sim) -> None:
    rows = {line.split()[0]: line.split()
            for line in sim.kubectl("api-resources").stdout.splitlines()[1:]}
    assert rows["volumegroupsnapshots"][1:3] == ["vgs", "groupsnapshot.storage.k8s.io/v1"]
    found = sim.kubectl("get", "vgsclass")
    assert found.stdout == "" and "No resources found" in found.stderr
