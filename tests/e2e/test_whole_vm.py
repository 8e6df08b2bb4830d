"""A snapshot holds the whole VM: persistent TPM/EFI state, instance type revisions, the
spec the VM runs, and an honest word on consistency (through the Temporal CLI, as a user
starts it, against the simulator)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.snapshot import snapshot_workflow_id
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "whole_vm_seeds" / "whole.yaml"
NS = "whole"


@pytest.fixture(scope="module")
def whole_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


def kubectl_json(stack: Stack, *args: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(stack.sim.kubectl(*args, "-o", "json").stdout)
    return loaded


def running(stack: Stack, vm: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        vmi = stack.sim.kubectl("get", "vmi", "-n", NS, vm, "-o", "json", check=False)
        if vmi.returncode == 0 and (json.loads(vmi.stdout).get("status") or {}).get(
                "phase") == "Running":
            return
        assert time.monotonic() < deadline, f"VM {vm} never ran"
        time.sleep(0.1)


def snapshot_from_the_cli(stack: Stack, vm: str, name: str) -> dict[str, Any]:
    """`temporal workflow execute` of SnapshotVirtualMachine with plain JSON; the result."""
    dev = stack.client.service_client.config.target_host
    done = subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "workflow", "execute",
         "--address", dev, "--namespace", stack.client.namespace,
         "--type", "SnapshotVirtualMachine", "--task-queue", stack.task_queue,
         "--workflow-id", snapshot_workflow_id(stack.cluster_id, NS, name), "-o", "json",
         "--input", json.dumps({"namespace": NS, "vm": vm, "name": name})],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["result"]
    return result


def content(stack: Stack, snapshot: str) -> dict[str, Any]:
    return kubectl_json(stack, "get", "vmsnapcontents", "-n", NS, f"{snapshot}-content")


def test_persistent_tpm_and_efi_state_is_in_the_snapshot(whole_stack: Stack) -> None:
    running(whole_stack, "tpm")
    result = snapshot_from_the_cli(whole_stack, "tpm", "tpm-snap")
    assert result["phase"] == "Succeeded" and "PartialSnapshot" not in result["indications"]
    backups = {b["volumeName"]: b for b in content(whole_stack, "tpm-snap")["spec"][
        "volumeBackups"]}
    assert set(backups) == {"root", "persistent-state-for-tpm"}
    state = backups["persistent-state-for-tpm"]["persistentVolumeClaim"]["metadata"]
    assert state["labels"]["persistent-state-for"] == "tpm"


def test_instance_type_revisions_are_copied_for_the_snapshot(whole_stack: Stack) -> None:
    running(whole_stack, "typed")
    snapshot_from_the_cli(whole_stack, "typed", "typed-snap")
    vm_copy = content(whole_stack, "typed-snap")["spec"]["source"]["virtualMachine"]
    for field in ("instancetype", "preference"):
        revision = vm_copy["spec"][field]["revisionName"]
        assert revision.startswith("typed-snap-"), revision
        stored = kubectl_json(whole_stack, "get", "controllerrevisions", "-n", NS, revision)
        [owner] = stored["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("VirtualMachineSnapshot", "typed-snap")


def test_a_vm_with_a_pending_change_is_snapshotted_as_it_runs(whole_stack: Stack) -> None:
    running(whole_stack, "pending")
    whole_stack.sim.kubectl("patch", "vm", "-n", NS, "pending", "--type", "merge", "-p",
                            '{"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 4}}}}}}')
    deadline = time.monotonic() + 20
    while not any(c.get("type") == "RestartRequired" for c in (kubectl_json(
            whole_stack, "get", "vm", "-n", NS, "pending").get("status") or {}).get(
            "conditions") or []):
        assert time.monotonic() < deadline, "RestartRequired never set"
        time.sleep(0.1)
    result = snapshot_from_the_cli(whole_stack, "pending", "pending-snap")
    assert "RestartRequired" in result["indications"]
    vm_copy = content(whole_stack, "pending-snap")["spec"]["source"]["virtualMachine"]
    assert vm_copy["spec"]["template"]["spec"]["domain"]["cpu"]["cores"] == 1


def test_a_vss_limited_guest_on_slow_storage_is_crash_consistent(whole_stack: Stack) -> None:
    running(whole_stack, "vss")
    result = snapshot_from_the_cli(whole_stack, "vss", "vss-snap")
    assert result["phase"] == "Succeeded"
    assert "QuiesceTimeout" in result["indications"]
    assert result["quiesced"] is False and result["consistency"] == "crash"
    status = kubectl_json(whole_stack, "get", "vmsnapsnapshots", "-n", NS, "vss-snap")["status"]
    assert "QuiesceTimeout" in status["indications"] and status["consistency"] == "crash"


def execute_from_the_cli(stack: Stack, workflow: str, workflow_id: str,
                         document: dict[str, Any], ok: bool = True) -> dict[str, Any]:
    """`temporal workflow execute` with plain JSON; the result (or the failure's JSON)."""
    dev = stack.client.service_client.config.target_host
    done = subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "workflow", "execute",
         "--address", dev, "--namespace", stack.client.namespace, "--type", workflow,
         "--task-queue", stack.task_queue, "--workflow-id", workflow_id, "-o", "json",
         "--input", json.dumps(document)],
        capture_output=True, text=True, timeout=180)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {
        "stderr": done.stderr, "stdout": done.stdout}


def state_claims(stack: Stack, vm: str) -> list[str]:
    listed = kubectl_json(stack, "get", "pvc", "-n", NS, "-l", f"persistent-state-for={vm}")
    return sorted(p["metadata"]["name"] for p in listed["items"])


def test_persistent_state_comes_back_with_a_restore_in_place_and_to_a_new_vm(
    whole_stack: Stack,
) -> None:
    running(whole_stack, "tpm")
    snapshot_from_the_cli(whole_stack, "tpm", "tpm-back")
    [before] = state_claims(whole_stack, "tpm")
    restored = execute_from_the_cli(
        whole_stack, "RestoreVirtualMachine", "restore/whole/tpm",
        {"namespace": NS, "snapshot": "tpm-back", "running_vm_policy": "stop"})["result"]
    assert restored["phase"] == "Succeeded"
    state = next(v for v in restored["volumes"] if v["volume_name"] == "persistent-state-for-tpm")
    assert state_claims(whole_stack, "tpm") == [state["pvc_name"]]
    old = kubectl_json(whole_stack, "get", "pvc", "-n", NS, before)["metadata"]["labels"]
    assert "persistent-state-for" not in old and old["vmsnap.io/state-moved-by"]
    copy = execute_from_the_cli(
        whole_stack, "RestoreVirtualMachine", "restore/whole/tpm-copy",
        {"namespace": NS, "snapshot": "tpm-back", "target": "tpm-copy"})["result"]
    copy_state = next(v["pvc_name"] for v in copy["volumes"]
                      if v["volume_name"] == "persistent-state-for-tpm")
    assert state_claims(whole_stack, "tpm-copy") == [copy_state]


def test_a_clone_of_a_vm_with_persistent_state_needs_a_fresh_one(whole_stack: Stack) -> None:
    running(whole_stack, "tpm")
    snapshot_from_the_cli(whole_stack, "tpm", "tpm-for-clone")
    refused = execute_from_the_cli(
        whole_stack, "CloneVirtualMachine", "clone/whole/tpm-twin",
        {"namespace": NS, "source_snapshot": "tpm-for-clone", "target": "tpm-twin"}, ok=False)
    assert "SourceWithPersistentState" in json.dumps(refused)
    assert whole_stack.sim.kubectl("get", "vm", "-n", NS, "tpm-twin", check=False).returncode
    fresh = execute_from_the_cli(
        whole_stack, "CloneVirtualMachine", "clone/whole/tpm-fresh",
        {"namespace": NS, "source_snapshot": "tpm-for-clone", "target": "tpm-fresh",
         "fresh_persistent_state": True})["result"]
    assert fresh["phase"] == "Succeeded"
    assert {v["volume_name"] for v in fresh["volumes"]} == {"root"}
    assert state_claims(whole_stack, "tpm-fresh") == []  # KubeVirt makes one at its start


def test_an_instance_typed_clone_starts_after_its_source_is_gone(whole_stack: Stack) -> None:
    running(whole_stack, "typed")
    snapshot_from_the_cli(whole_stack, "typed", "typed-for-clone")
    clone = execute_from_the_cli(
        whole_stack, "CloneVirtualMachine", "clone/whole/typed-twin",
        {"namespace": NS, "source_snapshot": "typed-for-clone", "target": "typed-twin"})
    assert clone["result"]["phase"] == "Succeeded"
    twin = kubectl_json(whole_stack, "get", "vm", "-n", NS, "typed-twin")
    revision = twin["spec"]["instancetype"]["revisionName"]
    assert revision.startswith("typed-twin-")
    owners = kubectl_json(whole_stack, "get", "controllerrevisions", "-n", NS, revision)[
        "metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("VirtualMachine", "typed-twin")]
    whole_stack.sim.kubectl("delete", "vm", "-n", NS, "typed", "--wait=true")
    deadline = time.monotonic() + 20
    while any(r["metadata"]["name"].startswith("typed-small") or "-typed-" in r["metadata"][
            "name"] for r in kubectl_json(whole_stack, "get", "controllerrevisions", "-n",
                                          NS)["items"]
              if any(o.get("name") == "typed" for o in r["metadata"].get("ownerReferences")
                     or [])):
        assert time.monotonic() < deadline, "the source's revisions were never collected"
        time.sleep(0.1)
    whole_stack.sim.kubectl("patch", "vm", "-n", NS, "typed-twin", "--type", "merge",
                            "-p", '{"spec": {"runStrategy": "Always"}}')
    running(whole_stack, "typed-twin")
