"""The RBAC proof: deploy/rbac, and the namespaced form generated from a list of
namespaces (starter/namespaced_deploy.py), are exactly what the worker needs, no more,
no less.

"No less" for the cluster form is enforced by the simulator itself in every e2e and fault
stack (tests/support/enforced.py: the worker runs as its ServiceAccount and is refused
what deploy/rbac does not grant); this module adds what enforcement cannot show: that
every rule is used (none can be removed), and that the namespaced form allows the same
requests and nothing in a namespace the worker does not serve.

A real `python worker.py` process serving one namespace (`VMSNAP_NAMESPACES`) runs every
workflow it registers against a simulator (snapshot with and without guest agent, one
cut as a VolumeGroupSnapshot, one failing by its deadline, Delete and Retain deletions,
scheduled runs with retention, restores and clones, one of each undone by its saga,
sweeps of its namespace and of "all"), and is asked for one in a namespace it does not
serve. Every request the simulator logged from it is then checked against the rules
bound to the worker's ServiceAccount, in both forms, matched as kube-apiserver's RBAC
authorizer matches them; every (verb, group, resource) a rule grants must have been used.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.error
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowFailureError

import worker as worker_module
from rules.naming import delete_snapshot_workflow_id, snapshot_workflow_id
from starter.local_stack import REPO_ROOT
from starter.namespaced_deploy import write_overlay
from tests.e2e.conftest import Stack
from tests.support.background import Background, register
from tests.support.enforced import WORKER_USER
from tests.support.rbac import (
    Policy,
    Request,
    check,
    load_documents,
    policy_for_service_account,
)
from tests.support.stacks import OwnStacks, own_stacks

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
WHOLE_VM_SEED = Path(__file__).parent / "rbac_seeds" / "whole.yaml"
RBAC_DIR = REPO_ROOT / "deploy" / "rbac"
NS = "snap"
OTHER_NS = "elsewhere"  # not served: refused before any request
BIND_LATENCY = "sim.vmsnap.io/bind-latency"


def registered_workflow_types() -> set[str]:
    """The workflow type names worker.py registers (restore/clone join when they land)."""
    names = set()
    for cls in worker_module.WORKFLOWS:
        definition = getattr(cls, "__temporal_workflow_definition", None)
        names.add(definition.name if definition is not None else cls.__name__)
    return names


async def run(stack: Stack, workflow: str, document: dict[str, Any], workflow_id: str) -> Any:
    return await stack.client.execute_workflow(
        workflow, document, id=workflow_id, task_queue=stack.task_queue)


async def exercise_every_workflow(stack: Stack) -> list[str]:
    """Run each registered workflow through its paths; the names of what ran."""
    ran: list[str] = []
    suffix = uuid.uuid4().hex[:6]

    async def snapshot(vm: str, name: str, **fields: Any) -> Any:
        return await run(stack, "SnapshotVirtualMachine",
                         {"namespace": NS, "vm": vm, "name": name, **fields},
                         snapshot_workflow_id(stack.cluster_id, NS, name))

    async def delete(name: str) -> Any:
        return await run(stack, "DeleteVirtualMachineSnapshot", {"namespace": NS, "name": name},
                         delete_snapshot_workflow_id(stack.cluster_id, NS, name))

    with_agent = f"rbac-agent-{suffix}"
    assert (await snapshot("eight", with_agent))["quiesced"]
    without_agent = f"rbac-noagent-{suffix}"
    assert not (await snapshot("agentless", without_agent, deletion_policy="Retain"))["quiesced"]
    with pytest.raises(WorkflowFailureError):
        await snapshot("stuck", f"rbac-stuck-{suffix}", failure_deadline="2s")
    # A disk of a class without a VolumeSnapshotClass: the worker's cached classes leave it
    # out, so it asks the server again (the StorageClass GET).
    partial = f"rbac-partial-{suffix}"
    assert "PartialSnapshot" in (await snapshot("hotplug", partial))["indications"]
    await delete(partial)
    ran += ["snapshot with agent", "snapshot without agent", "snapshot failing by deadline",
            "snapshot of a VM with a disk left out"]
    grouped = f"rbac-grouped-{suffix}"
    assert (await snapshot("pair", grouped))["volume_consistency"] == "group"
    await delete(grouped)
    ran.append("snapshot of two disks cut as one VolumeGroupSnapshot (members labelled and "
               "named in the content), and its deletion (the group first)")

    types = registered_workflow_types()
    if "RestoreVirtualMachine" in types:
        await run(stack, "RestoreVirtualMachine",
                  {"namespace": NS, "snapshot": with_agent, "target": f"restored-{suffix}"},
                  f"rbac-restore-{suffix}")
        await run(stack, "RestoreVirtualMachine",
                  {"namespace": NS, "snapshot": with_agent, "running_vm_policy": "stop"},
                  f"rbac-restore-in-place-{suffix}")
        ran += ["restore to a new VM", "restore of a running VM in place (stop, start)"]
        await cancel_an_in_place_restore_once_its_vm_is_written(stack, with_agent, "eight")
        ran.append("restore in place cancelled after its VM was written (the saga puts the "
                   "VM back from the restore record)")
    if "CloneVirtualMachine" in types:
        await run(stack, "CloneVirtualMachine",
                  {"namespace": NS, "source_snapshot": with_agent, "target": f"clone-{suffix}"},
                  f"rbac-clone-snap-{suffix}")
        await run(stack, "CloneVirtualMachine",
                  {"namespace": NS, "source_vm": "agentless", "target": f"clone-vm-{suffix}"},
                  f"rbac-clone-vm-{suffix}")
        with pytest.raises(WorkflowFailureError):  # fails at the VM step: the saga deletes
            await run(stack, "CloneVirtualMachine",
                      {"namespace": NS, "source_vm": "stopped", "target": f"no-eth-{suffix}",
                       "new_mac_addresses": {"eth9": "02:00:00:00:00:09"}},
                      f"rbac-clone-fails-{suffix}")
        ran += ["clone from a snapshot", "clone from a VM", "clone failing (compensated)"]
        typed = f"rbac-typed-{suffix}"
        await snapshot("typed", typed)
        await run(stack, "CloneVirtualMachine",
                  {"namespace": NS, "source_snapshot": typed, "target": f"typed-{suffix}"},
                  f"rbac-clone-typed-{suffix}")
        await snapshot("dv", f"rbac-dv-{suffix}")
        ran += ["snapshot and clone of an instance-typed VM (its revisions copied and owned)",
                "snapshot of a VM with a DataVolume template (populated or not)"]
        await cancel_a_clone_once_its_vm_is_made(stack, with_agent, f"clone-cx-{suffix}")
        ran.append("clone cancelled after its VM was made (the saga deletes the VM)")

    await delete(with_agent)
    await delete(without_agent)
    ran += ["delete (Delete policy)", "delete (Retain policy)"]

    if "SweepOrphans" in types:
        await run(stack, "SweepOrphans", {"namespaces": [NS], "grace": "0s", "dry_run": True},
                  f"rbac-sweep-{suffix}")
        await run(stack, "SweepOrphans", {"all_namespaces": True, "grace": "0s",
                                          "dry_run": True}, f"rbac-sweep-all-{suffix}")
        ran.append("orphan sweeps (dry run) of the namespace and of all served ones")

    with pytest.raises(WorkflowFailureError) as refused:
        await run(stack, "SnapshotVirtualMachine", {"namespace": OTHER_NS, "vm": "eight"},
                  f"rbac-unserved-{suffix}")
    assert getattr(refused.value.cause, "type", None) == "NamespaceNotServed"
    ran.append("a snapshot in a namespace the worker does not serve (refused)")

    if "ScheduledVirtualMachineSnapshots" in types:
        for attempt in range(2):  # the second run prunes the first run's snapshot (keep 1)
            await run(stack, "ScheduledVirtualMachineSnapshots",
                      {"schedule": "rbac", "namespace": NS, "vm": "agentless", "keep": 1},
                      f"rbac-scheduled-{suffix}-{attempt}")
            await asyncio.sleep(1.1)  # generated names carry whole seconds
        await run(stack, "ScheduledVirtualMachineSnapshots",
                  {"schedule": "rbac-sel", "namespace": NS, "selector": "rbac=nothing",
                   "keep": 1}, f"rbac-scheduled-selector-{suffix}")
        ran.append("scheduled runs with retention (by name and by selector)")
    return ran


async def cancel_an_in_place_restore_once_its_vm_is_written(
    stack: Stack, snapshot: str, vm: str
) -> None:
    """A fault holds the restore's write of the VM for a few seconds; the restore is
    cancelled while it is held, so the write lands and the saga must put the VM back, from
    the spec the restore kept in its record (not from the workflow's history)."""
    path = f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines/{vm}"
    before = (await asyncio.to_thread(stack.sim.request, "GET", path))["spec"]
    hold = {"verb": "update", "group": "kubevirt.io", "resource": "virtualmachines",
            "namespace": NS, "name": vm, "subresource": "", "latency": "3s", "count": 1}
    await cancel_while_held(
        stack, hold, "RestoreVirtualMachine",
        {"namespace": NS, "snapshot": snapshot, "running_vm_policy": "stop"},
        f"rbac-restore-cancelled-{uuid.uuid4().hex[:6]}", "the VM write never came")
    after = (await asyncio.to_thread(stack.sim.request, "GET", path))["spec"]
    assert after["template"]["spec"]["volumes"] == before["template"]["spec"]["volumes"], \
        "the cancelled restore's VM was not put back"


async def cancel_while_held(stack: Stack, hold: dict[str, Any], workflow: str,
                            document: dict[str, Any], workflow_id: str, never: str) -> None:
    """Start `workflow` with the simulator holding one request (`hold`), cancel it once that
    request has come in, and wait until it has failed (its saga run)."""
    await asyncio.to_thread(stack.sim.set_faults, {"rules": [hold]})
    try:
        handle = await stack.client.start_workflow(
            workflow, document, id=workflow_id, task_queue=stack.task_queue)
        deadline = asyncio.get_running_loop().time() + 60
        while not (await asyncio.to_thread(stack.sim.request, "GET", "/sim/faults")
                   )["rules"][0]["fired"]:
            assert asyncio.get_running_loop().time() < deadline, never
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    finally:
        await asyncio.to_thread(stack.sim.clear_faults)


async def cancel_a_clone_once_its_vm_is_made(stack: Stack, snapshot: str, target: str) -> None:
    """A simulator fault holds the clone's create of its VM for a few seconds; the clone is
    cancelled while it is held, so the create lands and the saga must delete the VM."""
    hold = {"verb": "create", "group": "kubevirt.io", "resource": "virtualmachines",
            "namespace": NS, "latency": "3s", "count": 1}
    await cancel_while_held(
        stack, hold, "CloneVirtualMachine",
        {"namespace": NS, "source_snapshot": snapshot, "target": target},
        f"rbac-clone-cancelled-{target}", "the VM create never came")
    with pytest.raises(urllib.error.HTTPError) as missing:
        await asyncio.to_thread(stack.sim.request, "GET",
                                f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines/{target}")
    assert missing.value.code == 404, "the cancelled clone's VM is still there"


@register(__file__, own_stacks)
async def rbac_worker_requests(stacks: OwnStacks) -> tuple[list[str], list[Request]]:
    """Runs in the background from the session's start (tests/support/background.py)."""
    stack = await asyncio.to_thread(stacks.start, SEED, WHOLE_VM_SEED,
                                    extra_env={"VMSNAP_NAMESPACES": NS})
    # Restored PVCs bind after a second, so that the restore and clone waits find them
    # pending and watch (else the watch rule's use would depend on the machine's speed).
    # The simulator enforces deploy/rbac on the worker, which runs as its ServiceAccount:
    # its requests, from its start-up (the watches of its copies and of the record
    # reconciler) on, are those the simulator logged as that user; the test's own (kubectl,
    # the admin) are not.
    await asyncio.to_thread(stack.sim.kubectl, "annotate", "volumesnapshotclass", "csi-snap",
                            f"{BIND_LATENCY}=1s", "--overwrite")
    ran = await exercise_every_workflow(stack)
    entries = (await asyncio.to_thread(stack.sim.request, "GET", "/sim/requests"))["items"]
    refused = [e for e in entries if e["status"] in (401, 403)]
    assert not refused, f"the simulator refused the worker: {refused}"
    return ran, [Request.from_log(e) for e in entries if e["user"] == WORKER_USER]


@pytest.fixture(scope="module")
async def worker_requests(background: Background) -> list[Request]:
    """Every API request the worker made while running every workflow."""
    ran, requests = await background.result(rbac_worker_requests, timeout=280)
    print("covered:", "; ".join(ran))
    return list(requests)


def cluster_form() -> Policy:
    return policy_for_service_account(load_documents(RBAC_DIR))


def namespaced_form(directory: Path) -> Policy:
    """The overlay the generator writes for the worker's namespace, rendered by kustomize."""
    write_overlay(directory, [NS])
    rendered = subprocess.run(["kubectl", "kustomize", str(directory)], check=True,
                              capture_output=True, text=True, timeout=60).stdout
    return policy_for_service_account(d for d in yaml.safe_load_all(rendered) if d)


@pytest.fixture(scope="module", params=["cluster", "namespaced"])
def policy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Policy:
    if request.param == "cluster":
        return cluster_form()
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with its built-in kustomize) renders the namespaced form")
    return namespaced_form(tmp_path_factory.mktemp("namespaced"))


async def test_every_worker_request_is_allowed_and_every_rule_is_used(
    worker_requests: list[Request], policy: Policy,
) -> None:
    verdict = check(policy, worker_requests)
    assert worker_requests and verdict.proven, verdict.explain()


async def test_removing_any_one_rule_breaks_the_proof(worker_requests: list[Request],
                                                      policy: Policy) -> None:
    for rule in policy.rules:
        verdict = check(policy.without(rule), worker_requests)
        assert verdict.denied, f"{rule.label} can be removed: nothing needs it"


async def test_the_namespaced_form_grants_nothing_in_another_namespace(
    worker_requests: list[Request], tmp_path: Path,
) -> None:
    """The worker asked nothing of a namespace it does not serve, and the namespaced form
    would refuse it everything there (the cluster-scoped reads aside: the kube-system
    namespace object, read once for the cluster id, is one of them)."""
    cluster_id_reads = [r for r in worker_requests if r.resource == "namespaces"]
    assert {(r.verb, r.name) for r in cluster_id_reads} <= {("get", "kube-system")}
    assert {r.namespace for r in worker_requests if r not in cluster_id_reads} <= {NS, ""}
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with its built-in kustomize) renders the namespaced form")
    elsewhere = [Request(verb=r.verb, path=r.path, group=r.group, resource=r.resource,
                         subresource=r.subresource, namespace=OTHER_NS, name=r.name)
                 for r in worker_requests if r.namespace == NS]
    assert not namespaced_form(tmp_path).allowing(elsewhere[0])
    verdict = check(namespaced_form(tmp_path / "again"), elsewhere)
    assert len(verdict.denied) == len(set(elsewhere))
