"""cluster/snapshot_*.py and cluster/lock.py against the simulator (no Temporal needed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster import record_kinds, snapshot_content, snapshot_record, snapshot_users
from cluster.client import Cluster
from cluster.errors import AlreadyExists, Conflict, NotFound
from cluster.lock import (
    LOCK_ANNOTATION,
    LockHolder,
    LockLost,
    VmLocked,
    acquire_vm_lock,
    holder_is_alive,
    now_holder,
    read_vm_lock,
    release_vm_lock,
    renew_vm_lock,
)
from cluster.snapshot_record import SnapshotRecordStatus, SnapshotSpec, WorkflowRun
from tests.conftest import StartSim
from tests.support.sim import Sim

pytestmark = pytest.mark.e2e

SEED = Path(__file__).parent / "snapshot_seeds" / "snapshot.yaml"
NS = "snap"
A = WorkflowRun(workflow_id="snapshot/snap/a", run_id="run-a")
B = WorkflowRun(workflow_id="snapshot/snap/b", run_id="run-b")


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(SEED, name="records")
    yield started
    started.process.stop()


@pytest.fixture(scope="module")
def cluster(sim: Sim) -> Iterator[Cluster]:
    with Cluster.from_environment(str(sim.kubeconfig), request_timeout_seconds=10) as adapter:
        yield adapter


def holder(run: WorkflowRun, operation: str = "snapshot") -> LockHolder:
    return now_holder(run.workflow_id, run.run_id, operation)


def test_a_record_belongs_to_the_run_that_made_it(cluster: Cluster) -> None:
    spec = SnapshotSpec(vm="twice")
    made = snapshot_record.create_snapshot_record(cluster, NS, "owned", spec, {"team": "a"}, A)
    again = snapshot_record.create_snapshot_record(cluster, NS, "owned", spec, {"team": "a"}, A)
    assert again.uid == made.uid and made.owner == A
    with pytest.raises(AlreadyExists, match=r"already exists .* made by snapshot/snap/a"):
        snapshot_record.create_snapshot_record(cluster, NS, "owned", spec, {}, B)

    status = SnapshotRecordStatus(phase="InProgress", indications=["Online"])
    assert snapshot_record.write_snapshot_status(cluster, NS, "owned", status, owner=A)
    failed = SnapshotRecordStatus(phase="Failed", error_message="not mine to say")
    assert not snapshot_record.write_snapshot_status(cluster, NS, "owned", failed, owner=B)
    stored = snapshot_record.get_snapshot_record(cluster, NS, "owned")
    assert stored is not None and stored.phase == "InProgress"
    with pytest.raises(NotFound):
        snapshot_record.write_snapshot_status(cluster, NS, "never-made", status, owner=A)


def test_status_goes_through_the_status_subresource_and_kubectl_shows_it(
    cluster: Cluster, sim: Sim
) -> None:
    snapshot_record.create_snapshot_record(cluster, NS, "shown", SnapshotSpec(vm="twice"), {}, A)
    snapshot_record.write_snapshot_status(cluster, NS, "shown", SnapshotRecordStatus(
        phase="Succeeded", ready_to_use=True, freeze_window_ms=42), owner=A)
    table = sim.kubectl("get", "vmsnap", "-n", NS, "shown", "-o", "wide").stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "VM", "PHASE", "READY"]
    assert row.split()[:4] == ["shown", "twice", "Succeeded", "true"] and "42" in row
    # an error, then cleared: the merge patch removes it
    snapshot_record.write_snapshot_status(cluster, NS, "shown", SnapshotRecordStatus(
        phase="Succeeded", error_message="slow"), owner=A)
    snapshot_record.write_snapshot_status(cluster, NS, "shown", SnapshotRecordStatus(
        phase="Succeeded", ready_to_use=True), owner=A)
    status = cluster.get_custom(record_kinds.VIRTUAL_MACHINE_SNAPSHOTS, NS, "shown")["status"]
    assert "error" not in status and "freezeWindowMilliseconds" not in status


def test_content_of_another_snapshot_is_a_conflict(cluster: Cluster) -> None:
    made = snapshot_record.create_snapshot_record(cluster, NS, "with-content",
                                                  SnapshotSpec(vm="twice"), {}, A)
    vm = cluster.get_vm(NS, "twice")
    pvc = cluster.get_pvc(NS, "twice-root")
    assert pvc is not None
    backups = [snapshot_content.VolumeBackup(volume_name="root", pvc_name="twice-root",
                                             volume_snapshot="with-content-root")]
    body = snapshot_content.content_body(NS, "with-content-content", "with-content", made.uid,
                                         vm, {"twice-root": pvc}, backups, {})
    first = snapshot_content.create_snapshot_content(cluster, NS, body)
    assert snapshot_content.create_snapshot_content(cluster, NS, body)["metadata"]["uid"] == (
        first["metadata"]["uid"])
    other = {**body, "spec": {**body["spec"], "virtualMachineSnapshotName": "someone-else"}}
    with pytest.raises(Conflict, match="another snapshot"):
        snapshot_content.create_snapshot_content(cluster, NS, other)


def test_the_lock_is_refused_to_a_second_live_run_and_taken_over_from_a_dead_one(
    cluster: Cluster,
) -> None:
    first, second = holder(A), holder(B, "restore")
    assert acquire_vm_lock(cluster, NS, "locked", first, lambda h: True) is None
    assert acquire_vm_lock(cluster, NS, "locked", first, lambda h: True) is None  # idempotent
    with pytest.raises(VmLocked, match="locked by snapshot workflow snapshot/snap/a") as caught:
        acquire_vm_lock(cluster, NS, "locked", second, lambda h: True)
    assert caught.value.holder == first
    taken = acquire_vm_lock(cluster, NS, "locked", second, lambda h: h != first)
    assert taken == first
    assert not release_vm_lock(cluster, NS, "locked", first)  # no longer the holder
    assert read_vm_lock(cluster, NS, "locked") == second
    assert release_vm_lock(cluster, NS, "locked", second)
    assert read_vm_lock(cluster, NS, "locked") is None
    assert not release_vm_lock(cluster, NS, "locked", second)
    with pytest.raises(NotFound):
        acquire_vm_lock(cluster, NS, "no-such-vm", first, lambda h: True)


def test_a_lease_is_renewed_only_by_its_holder_and_an_expired_one_is_taken_over(
    cluster: Cluster,
) -> None:
    now = datetime.now(UTC)
    first = holder(A).renewed(60, now).model_copy(
        update={"cluster": "east", "temporal_namespace": "default"})
    assert acquire_vm_lock(cluster, NS, "locked", first, lambda h: True) is None
    held = first.to_annotation()
    later = first.renewed(600, now)
    assert renew_vm_lock(cluster, NS, "locked", held, later) == later.to_annotation()
    assert read_vm_lock(cluster, NS, "locked") == later
    # Renewed against a stale annotation: read, still ours, written.
    assert renew_vm_lock(cluster, NS, "locked", held, first) == first.to_annotation()
    # The lease ends; another deployment's run takes the VM; the first has lost it.
    second = holder(B, "restore").renewed(60, now).model_copy(
        update={"cluster": "west", "temporal_namespace": "default"})
    expired = first.renewed(0, now - timedelta(seconds=1))
    assert renew_vm_lock(cluster, NS, "locked", None, expired)
    assert acquire_vm_lock(cluster, NS, "locked", second,
                           lambda h: holder_is_alive(h, second, now, lambda _: True)) == expired
    with pytest.raises(LockLost, match="locked by restore workflow snapshot/snap/b"):
        renew_vm_lock(cluster, NS, "locked", first.to_annotation(), later)
    assert release_vm_lock(cluster, NS, "locked", second)


def test_racing_runs_never_both_get_the_lock(cluster: Cluster) -> None:
    contenders = [holder(WorkflowRun(workflow_id=f"snapshot/snap/r{i}", run_id=f"r{i}"))
                  for i in range(6)]
    winners: list[LockHolder] = []
    losers: list[BaseException] = []
    barrier = threading.Barrier(len(contenders))

    def contend(who: LockHolder) -> None:
        barrier.wait()
        try:
            acquire_vm_lock(cluster, NS, "gc", who, lambda h: True)
            winners.append(who)
        except (VmLocked, Conflict) as err:
            losers.append(err)

    threads = [threading.Thread(target=contend, args=(c,)) for c in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1 and len(losers) == len(contenders) - 1
    assert read_vm_lock(cluster, NS, "gc") == winners[0]
    assert release_vm_lock(cluster, NS, "gc", winners[0])


def test_an_unreadable_lock_is_never_taken_over(cluster: Cluster, sim: Sim) -> None:
    sim.kubectl("annotate", "vm", "-n", NS, "paused", f"{LOCK_ANNOTATION}=garbage")
    with pytest.raises(VmLocked, match="unreadable"):
        acquire_vm_lock(cluster, NS, "paused", holder(A), lambda h: False)
    sim.kubectl("annotate", "vm", "-n", NS, "paused", f"{LOCK_ANNOTATION}-")


def test_users_of_a_snapshot(cluster: Cluster) -> None:
    snapshot_record.create_snapshot_record(cluster, NS, "used", SnapshotSpec(vm="twice"), {}, A)
    restore, clone = holder(B, "restore"), holder(A, "clone")
    snapshot_users.add_snapshot_user(cluster, NS, "used", restore)
    snapshot_users.add_snapshot_user(cluster, NS, "used", restore)  # idempotent
    used = snapshot_users.add_snapshot_user(cluster, NS, "used", clone)
    assert used.users == [restore, clone]
    live = snapshot_users.remove_stale_snapshot_users(cluster, NS, "used", lambda h: h == clone)
    assert live == [clone]
    assert snapshot_users.remove_snapshot_user(cluster, NS, "used", clone)
    record = snapshot_record.get_snapshot_record(cluster, NS, "used")
    assert record is not None and record.users == []
    assert not snapshot_users.remove_snapshot_user(cluster, NS, "gone", clone)
