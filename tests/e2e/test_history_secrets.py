"""No VM spec in Temporal's history: a VM whose cloud-init holds a password and an SSH key,
and whose metadata carries managedFields, is snapshotted, restored (into a new VM and in
place), cloned (from the snapshot and from the VM) and a clone fails at its VM step; then
every event of every run on the worker's task queue (children included) is read back,
every payload decoded, and neither the password, the key, nor a managedFields entry is
found, though each is in the cluster. No payload codec is configured: what is not in the
history needs no encryption."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from rules.naming import clone_workflow_id, restore_workflow_id, snapshot_workflow_id
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"
VM = "eight"
PASSWORD = f"Pa55-{uuid.uuid4().hex}"
SSH_KEY = f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5{uuid.uuid4().hex} ops@example"
MANAGER = f"history-probe-{uuid.uuid4().hex[:8]}"
USER_DATA = (f"#cloud-config\nhostname: {VM}\npassword: {PASSWORD}\n"
             f"chpasswd: {{expire: false}}\nssh_authorized_keys:\n  - {SSH_KEY}\n")


@pytest.fixture(scope="module")
def secret_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(SEED)
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


def get_vm(stack: Stack, name: str) -> dict[str, Any]:
    path = f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines/{name}"
    answer = stack.sim.request("GET", path)
    assert isinstance(answer, dict)
    return answer


def give_the_vm_secrets(stack: Stack) -> None:
    """cloud-init user data with a password and a key, and managedFields, as a live VM
    written by kubectl has them."""
    vm = get_vm(stack, VM)
    volumes = vm["spec"]["template"]["spec"]["volumes"]
    volumes[:] = [v for v in volumes if "cloudInitNoCloud" not in v]
    volumes.append({"name": "cloudinit", "cloudInitNoCloud": {"userData": USER_DATA}})
    disks = vm["spec"]["template"]["spec"]["domain"]["devices"].setdefault("disks", [])
    if not any(d.get("name") == "cloudinit" for d in disks):
        disks.append({"name": "cloudinit", "disk": {"bus": "virtio"}})
    vm["metadata"]["managedFields"] = [{
        "manager": MANAGER, "operation": "Update", "apiVersion": "kubevirt.io/v1",
        "time": "2030-01-01T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:template": {}}}}]
    stack.sim.request("PUT", f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines/{VM}", vm)
    stored = get_vm(stack, VM)
    assert PASSWORD in json.dumps(stored) and MANAGER in json.dumps(stored), \
        "the probe's secrets did not reach the cluster: the check would prove nothing"


def payload_texts(value: Any) -> Iterator[str]:
    """Every string of a history in JSON form, with each base64 `data` (and every other
    base64-looking string) decoded too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from payload_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from payload_texts(item)
    elif isinstance(value, str):
        yield value
        with contextlib.suppress(ValueError):
            yield base64.b64decode(value, validate=True).decode("utf-8", "replace")


async def run(stack: Stack, kind: str, document: dict[str, Any], workflow_id: str) -> Any:
    return await stack.client.execute_workflow(kind, document, id=workflow_id,
                                               task_queue=stack.task_queue)


async def test_no_payload_of_any_run_holds_the_vms_secrets(secret_stack: Stack) -> None:
    stack = secret_stack
    give_the_vm_secrets(stack)
    snapshot = f"{VM}-secrets"
    await run(stack, "SnapshotVirtualMachine", {"namespace": NS, "vm": VM, "name": snapshot},
              snapshot_workflow_id(stack.cluster_id, NS, snapshot))
    await run(stack, "RestoreVirtualMachine",
              {"namespace": NS, "snapshot": snapshot, "target": "eight-restored"},
              restore_workflow_id(stack.cluster_id, NS, "eight-restored"))
    await run(stack, "RestoreVirtualMachine",
              {"namespace": NS, "snapshot": snapshot, "running_vm_policy": "stop"},
              restore_workflow_id(stack.cluster_id, NS, VM))
    await run(stack, "CloneVirtualMachine",
              {"namespace": NS, "source_snapshot": snapshot, "target": "eight-clone"},
              clone_workflow_id(stack.cluster_id, NS, "eight-clone"))
    await run(stack, "CloneVirtualMachine",
              {"namespace": NS, "source_vm": VM, "target": "eight-vm-clone"},
              clone_workflow_id(stack.cluster_id, NS, "eight-vm-clone"))
    with pytest.raises(WorkflowFailureError):
        await run(stack, "CloneVirtualMachine",
                  {"namespace": NS, "source_snapshot": snapshot, "target": "eight-no-eth",
                   "new_mac_addresses": {"eth9": "02:00:00:00:00:09"}},
                  clone_workflow_id(stack.cluster_id, NS, "eight-no-eth"))
    for made in ("eight-restored", "eight-clone", "eight-vm-clone", VM):
        assert PASSWORD in json.dumps(get_vm(stack, made)), f"{made} lost its cloud-init"

    runs = [r async for r in stack.client.list_workflows(f'TaskQueue = "{stack.task_queue}"')]
    kinds = {r.workflow_type for r in runs}
    assert {"SnapshotVirtualMachine", "RestoreVirtualMachine", "CloneVirtualMachine",
            "DeleteVirtualMachineSnapshot"} <= kinds, kinds
    assert len(runs) >= 8  # the clone from a VM's temporary snapshot and its deletion too
    found: list[str] = []
    decoded = False  # a control: payloads are decoded (an input field appears only there)
    for listed in runs:
        history = await stack.client.get_workflow_handle(
            listed.id, run_id=listed.run_id).fetch_history()
        texts = list(payload_texts(json.loads(history.to_json())))
        assert texts, listed.id
        decoded = decoded or any('"source_snapshot"' in text for text in texts)
        for needle in (PASSWORD, SSH_KEY, MANAGER, "managedFields", "userData"):
            if any(needle in text for text in texts):
                found.append(f"{listed.id}: {needle}")
    assert decoded, "no payload was decoded: the search would prove nothing"
    assert found == [], "secrets in the history:\n" + "\n".join(found)
