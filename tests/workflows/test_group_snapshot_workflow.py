"""The snapshot workflow with VolumeGroupSnapshots planned (time-skipping server, doubles):
the members stand for their disks from the cut on; `required` without a class is refused
before any freeze."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from contracts.snapshot import FREEZE_AND_CUT, PlannedGroup
from tests.workflows.conftest import StartWorker
from tests.workflows.doubles import World
from tests.workflows.test_snapshot_workflow import failed_result, failure_of, start


def group(*volumes: str) -> PlannedGroup:
    return PlannedGroup(name="g-1-fast-abc123", group_class="fast-group", driver="fast.csi",
                        volumes=list(volumes), pvcs=[f"{v}-pvc" for v in volumes],
                        label_key="vmsnap.io/cut-0123456789abcdef")


async def test_members_stand_for_their_disks_from_the_cut_on(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(groups=[group("root", "data")])
    async with worker_for(world):
        result = await (await start(env, task_queue, name="g-1")).result()
    assert result.phase == "Succeeded" and result.ready_to_use
    assert result.volume_snapshots == ["snapshot-root", "snapshot-data"]
    assert [(v.volume_snapshot, v.group) for v in result.included_volumes] == [
        ("snapshot-root", "g-1-fast-abc123"), ("snapshot-data", "g-1-fast-abc123")]
    assert result.volume_consistency == "group" and result.groups[0].volumes == ["root", "data"]
    cut = world.cut_inputs[0]
    assert cut.groups == world.groups and not cut.group_required
    assert [v.group for v in cut.volumes] == ["g-1-fast-abc123"] * 2
    # The members are named in the content once, with Succeeded.
    named = [s.content_volume_snapshots for s in world.status_inputs]
    assert named.count({"root": "snapshot-root", "data": "snapshot-data"}) == 1


async def test_a_group_of_some_disks_is_per_disk_consistency(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(groups=[group("root")])
    async with worker_for(world):
        result = await (await start(env, task_queue, name="g-2")).result()
    assert result.volume_snapshots == ["snapshot-root", "g-2-data"]
    assert result.volume_consistency == "per-disk"


async def test_required_without_a_group_class_fails_before_any_freeze(
    env: WorkflowEnvironment, task_queue: str, worker_for: StartWorker
) -> None:
    world = World(group_refusal="group snapshots are required and no default "
                  "VolumeGroupSnapshotClass takes these disks: data (driver slow.csi)")
    async with worker_for(world):
        error = await failure_of(await start(env, task_queue, name="g-3",
                                             group_snapshot="required"))
    assert error.type == "NoGroupSnapshotClass" and "data (driver slow.csi)" in error.message
    assert FREEZE_AND_CUT.name not in world.calls and "freeze" not in world.calls
    assert failed_result(error).phase == "Failed" and world.contents == {}
