"""RBAC proof for the orphan sweeper: every request it makes is allowed by deploy/rbac.

A real worker sweeps (namespaced and cluster-wide, dry run and for real) a
simulator holding hand-made orphans (a VolumeGroupSnapshot and the stale cut label
on its PVC among them), so each kind is listed, read again and deleted, and the
label patched off. Every request the simulator logged during the sweeps is matched
against the rules bound to the worker's ServiceAccount; and the sweeper's own
rules (list of contents, restores, clones, Pods and VMIs) are each shown to be needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cluster.client import Cluster
from starter.local_stack import REPO_ROOT
from tests.e2e.conftest import Stack, StartStack
from tests.support.rbac import Request, check, load_documents, policy_for_service_account
from tests.workflows.test_sweeper import (
    make_content,
    make_cut_group,
    make_restore_pvc,
    make_volume_snapshot,
)

pytestmark = pytest.mark.e2e

RBAC_DIR = REPO_ROOT / "deploy" / "rbac"
NS = "demo"


@pytest.fixture(scope="module")
def sweeper_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(extra_env={"VMSNAP_SWEEPER_SCHEDULE": "off"})
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


@pytest.fixture(scope="module")
async def sweeper_requests(sweeper_stack: Stack) -> list[Request]:
    """The requests the worker made while sweeping (objects made before the mark)."""
    with Cluster.from_environment(str(sweeper_stack.sim.kubeconfig)) as cluster:
        make_volume_snapshot(cluster, "ghost-root", "ghost", owned=True)
        make_content(cluster, "ghost-content", "ghost", "ghost-root")
        make_restore_pvc(cluster, "ghost-restore-disk", "web-9-restore-20260101-000000-abcd")
        group = make_cut_group(cluster, "ghost", "web-1-root")
    mark = sweeper_stack.sim.request("GET", "/sim/requests")["next"]
    removed: list[str] = []
    labels_removed: list[str] = []
    # The worker runs without its schedule, so the sweeper's install is not known: every
    # orphan counts as older than it and is removed only when the sweep includes those.
    for document in ({"namespaces": [NS], "grace": "0s", "dry_run": True},
                     {"all_namespaces": True, "grace": "0s",
                      "include_older_than_install": True}):
        result = await sweeper_stack.client.execute_workflow(
            "SweepOrphans", document, id=f"rbac-sweep-{uuid.uuid4().hex[:6]}",
            task_queue=sweeper_stack.task_queue)
        removed += [r["name"] for r in result["removed"] if r["removed"]]
        labels_removed += [v["pvc"] for v in result["cut_labels"] if v["removed"]]
    assert sorted(removed) == sorted(["ghost-content", "ghost-restore-disk", "ghost-root", group])
    assert labels_removed == ["web-1-root"]
    entries = sweeper_stack.sim.request("GET", f"/sim/requests?since={mark}")["items"]
    return [Request.from_log(e) for e in entries]


async def test_every_sweeper_request_is_allowed(sweeper_requests: list[Request]) -> None:
    policy = policy_for_service_account(load_documents(RBAC_DIR))
    verdict = check(policy, sweeper_requests)
    assert sweeper_requests and not verdict.denied, verdict.explain()
    kinds = {(r.verb, r.resource) for r in sweeper_requests}
    for needed in [("list", "volumesnapshots"), ("list", "vmsnapcontents"),
                   ("list", "persistentvolumeclaims"), ("list", "vmsnaprestores"),
                   ("list", "vmsnapclones"), ("list", "vmsnapsnapshots"),
                   ("list", "pods"), ("list", "virtualmachineinstances"),
                   ("delete", "volumesnapshots"), ("delete", "vmsnapcontents"),
                   ("delete", "persistentvolumeclaims"), ("list", "volumegroupsnapshots"),
                   ("delete", "volumegroupsnapshots"), ("patch", "persistentvolumeclaims"),
                   ("list", "storageclasses"), ("list", "volumegroupsnapshotclasses")]:
        assert needed in kinds, f"the sweep never made {needed}: the proof would be hollow"


async def test_the_sweepers_list_rules_are_needed(sweeper_requests: list[Request]) -> None:
    policy = policy_for_service_account(load_documents(RBAC_DIR))
    for resource in ("vmsnapcontents", "vmsnaprestores", "vmsnapclones", "pods",
                     "virtualmachineinstances"):
        rule = next(r for r in policy.rules if resource in r.resources and "list" in r.verbs)
        verdict = check(policy.without(rule), sweeper_requests)
        assert any(d.resource == resource and d.verb == "list" for d in verdict.denied), rule
