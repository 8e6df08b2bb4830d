"""SweepOrphans on the time-skipping server with its real activity against a real simulator.

Objects are made by hand with vmsnap's labels; the grace period is counted in
workflow time, so two hours pass in a moment. A live operation is a workflow
really running under the snapshot's deterministic ID.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sweeper import SweeperActivities, WorkflowStates
from cluster.apis import VOLUME_SNAPSHOTS
from cluster.client import Cluster
from cluster.creation_marks import creating_for
from cluster.record_kinds import VIRTUAL_MACHINE_SNAPSHOT_CONTENTS
from cluster.snapshot_content import VolumeBackup, content_body
from cluster.snapshot_record import snapshot_owner_reference
from contracts.sweep import SweepOrphansInput, SweepOrphansResult
from rules.creation_marks import CREATED_BY_ANNOTATION, CreationMark
from rules.naming import (
    cut_label_key,
    group_snapshot_name,
    restore_workflow_id,
    snapshot_workflow_id,
)
from tests.conftest import SEEDS, StartSim
from tests.workflows.conftest import TEST_SERVER
from tests.workflows.doubles import CLUSTER, admission
from workflows.sweeper import SweepOrphans

NS = "demo"
GHOST_UID = "00000000-0000-4000-8000-000000000001"
GHOST_RUN = "00000000-0000-4000-8000-0000000000aa"  # the run of a workflow Temporal never saw


@workflow.defn(name="HoldForSweeperTest", sandboxed=False)
class Hold:
    """Stands in for a snapshot in progress: runs until cancelled."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own: the grace period compares the objects'
    real creation times with workflow time, and the session's shared server has been
    skipped hours ahead by earlier tests (every object would look old)."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter)
    yield environment
    await environment.shutdown()


@pytest.fixture
def cluster(start_sim: StartSim, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The sweeper's cluster, named as the doubles' admission names it (`CLUSTER`)."""
    sim = start_sim(SEEDS / "demo.yaml", name="sweeper-wf-sim")
    monkeypatch.setenv("VMSNAP_CLUSTER_ID", CLUSTER)
    with Cluster.from_environment(str(sim.kubeconfig)) as made:
        assert made.cluster_id == CLUSTER
        yield made
    sim.process.stop()


class Install:
    """When the sweeper counts as installed: a minute before the test starts, unless a test
    moves it (the time-skipping server has no schedules to ask)."""

    def __init__(self) -> None:
        self.at: datetime | None = datetime.now(UTC) - timedelta(minutes=1)

    def __call__(self, task_queue: str) -> datetime | None:
        return self.at


@pytest.fixture
def install() -> Install:
    return Install()


@pytest.fixture
async def sweeper_worker(env: WorkflowEnvironment, cluster: Cluster, task_queue: str,
                         install: Install) -> AsyncIterator[Worker]:
    import asyncio

    states = WorkflowStates(env.client, asyncio.get_running_loop())
    with ThreadPoolExecutor(4) as pool:
        worker = Worker(env.client, task_queue=task_queue, workflows=[SweepOrphans, Hold],
                        activities=[*SweeperActivities(cluster, states, installed_at=install)
                                    .all(), admission()],
                        activity_executor=pool)
        async with worker:
            yield worker


def labels(snapshot: str, cluster_id: str = CLUSTER) -> dict[str, str]:
    return {"vmsnap.io/snapshot": snapshot, "vmsnap.io/vm": "web-1",
            "vmsnap.io/cluster": cluster_id}


def made_by(workflow_id: str, made_in: str | None) -> Any:
    """Create as the activities of `workflow_id` in cluster `made_in` do (its creation mark,
    `cluster.creation_marks`); None: as a user does, with no mark. `made_in` must be the
    adapter's own cluster: the adapter writes its own id into the mark."""
    if made_in is None:
        return contextlib.nullcontext()
    return creating_for(workflow_id, GHOST_RUN)


def make_volume_snapshot(cluster: Cluster, name: str, snapshot: str, owned: bool) -> None:
    """A VolumeSnapshot as a snapshot run of this cluster makes it (marked)."""
    owner = snapshot_owner_reference(snapshot, GHOST_UID) if owned else None
    with made_by(snapshot_workflow_id(cluster.cluster_id, NS, snapshot), cluster.cluster_id):
        cluster.create_volume_snapshot(NS, name, "web-1-root", "csi-hostpath-snapclass",
                                       labels(snapshot, cluster.cluster_id), owner)


def make_content(cluster: Cluster, name: str, snapshot: str, volume_snapshot: str) -> None:
    body = content_body(
        NS, name, snapshot, GHOST_UID, cluster.get_vm(NS, "web-1"),
        {"web-1-root": cluster.get_pvc(NS, "web-1-root") or {}},
        [VolumeBackup(volume_name="rootdisk", pvc_name="web-1-root",
                      volume_snapshot=volume_snapshot)], labels(snapshot, cluster.cluster_id))
    with made_by(snapshot_workflow_id(cluster.cluster_id, NS, snapshot), cluster.cluster_id):
        cluster.create_custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, NS, body)


def restore_pvc_body(name: str, restore: str, cluster_id: str | None,
                     mark: str | None = None) -> dict[str, Any]:
    """A restored PVC's body: labelled for `restore` (and cluster `cluster_id` when given);
    `mark`: a creation mark written as is (another cluster's)."""
    meta: dict[str, Any] = {"name": name, "labels": {
        "vmsnap.io/restore": restore, "vmsnap.io/snapshot": "gone",
        **({"vmsnap.io/cluster": cluster_id} if cluster_id else {})}}
    if mark is not None:
        meta["annotations"] = {CREATED_BY_ANNOTATION: mark}
    return {"metadata": meta,
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "csi-hostpath-sc",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def make_restore_pvc(cluster: Cluster, name: str, restore: str, *, marked: bool = True) -> str:
    """A restored PVC as a restore run of this cluster makes it (`marked`), or a PVC a user
    labelled so (not marked); its uid."""
    target = restore.split("-restore-")[0]
    with made_by(restore_workflow_id(cluster.cluster_id, NS, target),
                 cluster.cluster_id if marked else None):
        made = cluster.create_pvc(NS, restore_pvc_body(
            name, restore, cluster.cluster_id if marked else None))
    return str(made["metadata"]["uid"])


def names(items: list[Any]) -> set[str]:
    return {i.name for i in items}


async def sweep(env: WorkflowEnvironment, task_queue: str, **fields: Any) -> SweepOrphansResult:
    """One sweep of NS. Time moves only by `env.sleep`: waiting for a result would otherwise
    skip to the next deadline on the server, the held workflow's execution timeout."""
    with env.auto_time_skipping_disabled():
        return await env.client.execute_workflow(
            SweepOrphans.run, SweepOrphansInput(namespaces=[NS], **fields),
            id=f"sweep-{uuid.uuid4().hex[:8]}", task_queue=task_queue)


async def test_sweeper_removes_only_old_orphans(
    env: WorkflowEnvironment, cluster: Cluster, sweeper_worker: Worker, task_queue: str
) -> None:
    live = await env.client.start_workflow(Hold.run, id=snapshot_workflow_id(CLUSTER, NS, "live"),
                                           task_queue=task_queue,
                                           execution_timeout=timedelta(days=30))
    make_volume_snapshot(cluster, "ghost-root", "ghost", owned=True)
    make_content(cluster, "ghost-content", "ghost", "ghost-root")
    make_volume_snapshot(cluster, "kept-root", "kept", owned=False)
    make_volume_snapshot(cluster, "live-root", "live", owned=True)
    make_restore_pvc(cluster, "ghost-restore-disk", "web-9-restore-20260101-000000-abcd")
    try:
        first = await sweep(env, task_queue, grace="1h")
        assert first.removed == []
        assert names(first.too_young) == {"ghost-root", "ghost-content", "ghost-restore-disk"}
        assert all("inside the grace period (3600s)" in v.reason for v in first.too_young)

        await env.sleep(timedelta(hours=2))
        dry = await sweep(env, task_queue, grace="1h", dry_run=True)
        assert [(r.kind, r.name, r.removed) for r in dry.removed] == [
            ("VolumeSnapshot", "ghost-root", False),
            ("VirtualMachineSnapshotContent", "ghost-content", False),
            ("PersistentVolumeClaim", "ghost-restore-disk", False)]
        assert cluster.get_volume_snapshot(NS, "ghost-root") is not None

        done = await sweep(env, task_queue, grace="1h")
        reasons = {r.name: r.reason for r in done.removed if r.removed}
        assert set(reasons) == {"ghost-root", "ghost-content", "ghost-restore-disk"}
        assert "record of snapshot demo/ghost is gone" in reasons["ghost-root"]
        assert "record of restore demo/web-9-restore" in reasons["ghost-restore-disk"]
        kept = {v.name: v.reason for v in done.kept}
        assert kept["live-root"] == \
            f"live operation: workflow snapshot/{CLUSTER}/demo/live is running"
        assert "Retain" in kept["kept-root"]
        assert cluster.get_volume_snapshot(NS, "ghost-root") is None
        assert cluster.get_custom_or_none(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, NS,
                                          "ghost-content") is None
        assert cluster.get_pvc(NS, "ghost-restore-disk") is None
        assert cluster.get_volume_snapshot(NS, "live-root") is not None
        assert cluster.get_volume_snapshot(NS, "kept-root") is not None
        assert cluster.get_pvc(NS, "web-1-root") is not None

        again = await sweep(env, task_queue, grace="1h")
        assert again.removed == [] and again.errors == []
    finally:
        await live.cancel()
    assert len(cluster.list_custom(VOLUME_SNAPSHOTS, NS).get("items") or []) == 2


def make_pod(cluster: Cluster, name: str, claim: str) -> None:
    """A Pod that mounts `claim` (as a virt-launcher mounts a VM's disks)."""
    cluster.call_json(cluster.core.create_namespaced_pod, NS, {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "compute", "image": "example.org/launcher:1"}],
                 "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": claim}}]}})


async def test_only_unused_orphans_this_cluster_made_since_its_install_go(
    env: WorkflowEnvironment, cluster: Cluster, sweeper_worker: Worker, task_queue: str,
    install: Install,
) -> None:
    restore = "web-9-restore-20260101-000000-abcd"
    make_restore_pvc(cluster, "orphan-disk", restore)
    make_restore_pvc(cluster, "users-disk", restore, marked=False)
    west = CreationMark(cluster="west", workflow_id=restore_workflow_id("west", NS, "web-9"),
                        run_id=GHOST_RUN).text()
    cluster.create_pvc(NS, restore_pvc_body("west-disk", restore, "west", mark=west))
    make_restore_pvc(cluster, "mounted-disk", restore)
    make_pod(cluster, "virt-launcher-web-9-x", "mounted-disk")
    await env.sleep(timedelta(hours=2))

    done = await sweep(env, task_queue, grace="1h")
    assert [(r.name, r.removed) for r in done.removed] == [("orphan-disk", True)]
    kept = {v.name: v.reason for v in done.kept}
    assert kept["users-disk"].startswith(
        "not made by vmsnap in this cluster: it has no creation mark")
    assert "by its labels alone: the record of restore demo/web-9-restore" in kept["users-disk"]
    assert kept["west-disk"].startswith(
        f"not made by vmsnap in this cluster: its creation mark names cluster 'west', not "
        f"'{CLUSTER}'")
    assert kept["mounted-disk"] == "in use: Pod demo/virt-launcher-web-9-x mounts it"
    assert cluster.get_pvc(NS, "orphan-disk") is None
    for name in ("users-disk", "west-disk", "mounted-disk"):
        assert cluster.get_pvc(NS, name) is not None

    # Installed after the next orphan was made: it is only reported, until asked for.
    make_restore_pvc(cluster, "older-disk", restore)
    install.at = datetime.now(UTC) + timedelta(seconds=1)
    await env.sleep(timedelta(hours=2))
    reported = await sweep(env, task_queue, grace="1h")
    assert reported.removed == [] and reported.installed_at == install.at
    (older,) = reported.reported
    assert older.name == "older-disk" and "made before the sweeper was installed" in older.reason
    assert cluster.get_pvc(NS, "older-disk") is not None
    asked = await sweep(env, task_queue, grace="1h", include_older_than_install=True)
    assert [(r.name, r.removed) for r in asked.removed] == [("older-disk", True)]
    assert cluster.get_pvc(NS, "older-disk") is None


HOSTPATH = "hostpath.csi.k8s.io"


def labels_of(cluster: Cluster, pvc: str) -> dict[str, str]:
    return dict(((cluster.get_pvc(NS, pvc) or {}).get("metadata") or {}).get("labels") or {})


def make_cut_group(cluster: Cluster, snapshot: str, pvc: str) -> str:
    """A snapshot run's group of one PVC (labelled for the cut, marked, owned), cut, its
    member labelled as the cut labels it; the group's name."""
    name = group_snapshot_name(snapshot, HOSTPATH)
    key = cut_label_key(NS, name)
    cluster.label_pvc(NS, pvc, key, name)
    with made_by(snapshot_workflow_id(cluster.cluster_id, NS, snapshot), cluster.cluster_id):
        cluster.create_group_snapshot(NS, name, "csi-hostpath-groupsnapclass", {key: name},
                                      labels(snapshot, cluster.cluster_id),
                                      snapshot_owner_reference(snapshot, GHOST_UID))
    deadline = time.monotonic() + 10
    while not (members := [m for m in cluster.group_members(NS, name)
                           if (m.get("status") or {}).get("creationTime")]):
        assert time.monotonic() < deadline, f"group {name} never cut"
        time.sleep(0.05)
    for member in members:
        cluster.label_volume_snapshot(NS, member["metadata"]["name"],
                                      labels(snapshot, cluster.cluster_id))
    return name


async def test_an_orphan_group_goes_with_its_members_and_stale_cut_labels_come_off(
    env: WorkflowEnvironment, cluster: Cluster, sweeper_worker: Worker, task_queue: str
) -> None:
    live = await env.client.start_workflow(Hold.run, id=snapshot_workflow_id(CLUSTER, NS, "live"),
                                           task_queue=task_queue,
                                           execution_timeout=timedelta(days=30))
    ghost = make_cut_group(cluster, "ghost", "web-1-root")
    ghost_key = cut_label_key(NS, ghost)
    [member] = [m["metadata"]["name"] for m in cluster.group_members(NS, ghost)]
    # A live cut's label, before its group is made; one whose group is long gone; and a
    # label under vmsnap's prefix that vmsnap would not write (its key is not its value's).
    live_group = group_snapshot_name("live", HOSTPATH)
    cluster.label_pvc(NS, "web-1-data-1", cut_label_key(NS, live_group), live_group)
    gone_group = group_snapshot_name("gone", HOSTPATH)
    cluster.label_pvc(NS, "web-1-data-1", cut_label_key(NS, gone_group), gone_group)
    cluster.label_pvc(NS, "web-1-data-2", "vmsnap.io/cut-0000000000000000", ghost)
    before = {p: labels_of(cluster, p) for p in ("web-1-root", "web-1-data-1", "web-1-data-2")}
    try:
        await env.sleep(timedelta(hours=2))
        dry = await sweep(env, task_queue, grace="1h", dry_run=True)
        assert [(r.kind, r.name) for r in dry.removed] == [("VolumeGroupSnapshot", ghost)]
        assert sorted((v.pvc, v.value) for v in dry.cut_labels if v.action == "remove") == [
            ("web-1-data-1", gone_group), ("web-1-root", ghost)]
        assert {p: labels_of(cluster, p) for p in before} == before
        assert cluster.get_group_snapshot(NS, ghost) is not None

        done = await sweep(env, task_queue, grace="1h")
        assert [(r.kind, r.name, r.removed) for r in done.removed] == [
            ("VolumeGroupSnapshot", ghost, True)]
        assert "record of snapshot demo/ghost is gone" in done.removed[0].reason
        kept = {v.name: v.reason for v in done.kept}
        assert kept[member].startswith(f"a member of VolumeGroupSnapshot demo/{ghost}")
        verdicts = {(v.pvc, v.value): v for v in done.cut_labels}
        assert verdicts[("web-1-root", ghost)].removed
        assert verdicts[("web-1-data-1", gone_group)].removed
        assert verdicts[("web-1-data-1", live_group)].reason == \
            f"live cut: workflow snapshot/{CLUSTER}/demo/live is running"
        assert "not a label vmsnap writes" in verdicts[("web-1-data-2", ghost)].reason
        assert labels_of(cluster, "web-1-root") == {
            k: v for k, v in before["web-1-root"].items() if k != ghost_key}
        assert labels_of(cluster, "web-1-data-1") == {
            k: v for k, v in before["web-1-data-1"].items()
            if k != cut_label_key(NS, gone_group)}
        assert labels_of(cluster, "web-1-data-2") == before["web-1-data-2"]
        assert cluster.get_group_snapshot(NS, ghost) is None
        deadline = time.monotonic() + 10
        while cluster.get_volume_snapshot(NS, member) is not None:
            assert time.monotonic() < deadline, "the group's member outlived it"
            time.sleep(0.05)
        again = await sweep(env, task_queue, grace="1h")
        assert again.removed == [] and again.errors == []
        assert [v.action for v in again.cut_labels] == ["keep", "keep"]
    finally:
        await live.cancel()


async def test_second_sweep_with_the_same_id_is_refused(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    # No worker polls this queue: the first run stays open while the second start is tried.
    first = await env.client.start_workflow(
        SweepOrphans.run, SweepOrphansInput(all_namespaces=True), id="sweep-orphans/all-test",
        task_queue=f"{task_queue}-idle")
    try:
        with pytest.raises(WorkflowAlreadyStartedError):
            await env.client.start_workflow(
                SweepOrphans.run, SweepOrphansInput(all_namespaces=True),
                id="sweep-orphans/all-test", task_queue=f"{task_queue}-idle")
    finally:
        await first.terminate()


@pytest.mark.parametrize("document, message", [
    ({}, "name the namespaces to sweep"),
    ({"namespaces": ["a"], "all_namespaces": True}, "not both"),
    ({"namespaces": ["Bad_NS"]}, "not a valid name"),
    ({"all_namespaces": True, "grace": "soon"}, "duration"),
    ({"all_namespaces": True, "dryRun": True}, "dryRun"),
])
async def test_bad_input_fails_at_once(
    env: WorkflowEnvironment, sweeper_worker: Worker, task_queue: str,
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await env.client.execute_workflow("SweepOrphans", document,
                                          id=f"sweep-bad-{uuid.uuid4().hex[:8]}",
                                          task_queue=task_queue)
    assert message in str(failure.value.cause)
