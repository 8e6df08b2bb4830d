"""What the adapter creates for a workflow run carries the run's creation mark; a delete
with a uid removes that object only."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import uuid
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.registration import implements
from cluster.apis import VOLUME_SNAPSHOTS
from cluster.client import Cluster
from cluster.creation_marks import creating_for
from cluster.errors import Replaced
from contracts.activity import ActivityRef
from rules.creation_marks import CREATED_BY_ANNOTATION, CreationMark, read_mark
from tests.cluster.conftest import NS


def claim(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def mark_of(obj: dict[str, Any]) -> CreationMark | None:
    return read_mark((obj["metadata"].get("annotations") or {}).get(CREATED_BY_ANNOTATION))


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_nothing_is_marked_outside_a_run(cluster: Cluster) -> None:
    assert mark_of(cluster.create_pvc(NS, claim(fresh("plain")))) is None


def test_a_run_marks_pvcs_and_custom_objects_even_from_its_threads(cluster: Cluster) -> None:
    wanted = CreationMark(cluster=cluster.cluster_id, workflow_id="snapshot/c/adapter/s",
                          run_id="run-1")
    made: list[dict[str, Any]] = []
    with creating_for("snapshot/c/adapter/s", "run-1"):
        made.append(cluster.create_pvc(NS, claim(fresh("marked"))))
        # A thread started with a copy of the context, as the cut creates its VolumeSnapshots.
        name = fresh("marked-vs")
        worker = threading.Thread(target=contextvars.copy_context().run, args=(
            cluster.create_volume_snapshot, NS, name, "root-disk", "csi-snap", {}))
        worker.start()
        worker.join()
    made.append(cluster.get_custom(VOLUME_SNAPSHOTS, NS, name))
    assert [mark_of(o) for o in made] == [wanted, wanted]
    assert mark_of(cluster.create_pvc(NS, claim(fresh("after")))) is None


def test_a_mark_carried_over_from_another_object_is_replaced(cluster: Cluster) -> None:
    old = CreationMark(cluster="west", workflow_id="restore/west/adapter/x").text()
    with creating_for("clone/c/adapter/y", "run-2"):
        made = cluster.create_pvc(NS, claim(fresh("copied"), {CREATED_BY_ANNOTATION: old}))
    assert mark_of(made) == CreationMark(cluster=cluster.cluster_id,
                                         workflow_id="clone/c/adapter/y", run_id="run-2")


MAKE_CLAIM = ActivityRef("MakeClaimForMarkTest", str, str)


class ClaimMaker:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @implements(MAKE_CLAIM)
    def make(self, name: str) -> str:
        made = self.cluster.create_pvc(NS, claim(name))
        return str(made["metadata"]["annotations"][CREATED_BY_ANNOTATION])


def test_a_registered_activity_marks_with_its_workflow_run(cluster: Cluster) -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="restore/c/adapter/web",
                                   workflow_run_id="run-3")
    text = env.run(ClaimMaker(cluster).make, fresh("by-activity"))
    assert read_mark(text) == CreationMark(cluster=cluster.cluster_id,
                                           workflow_id="restore/c/adapter/web", run_id="run-3")
    # Called as a plain method (no activity), it marks nothing.
    with pytest.raises(KeyError):
        ClaimMaker(cluster).make(fresh("plain-call"))


def test_a_delete_by_uid_spares_an_object_made_again_under_the_name(cluster: Cluster) -> None:
    name = fresh("again")
    first = cluster.create_pvc(NS, claim(name))["metadata"]["uid"]
    assert cluster.delete_pvc(NS, name, uid=first)
    second = cluster.create_pvc(NS, claim(name))["metadata"]["uid"]
    with pytest.raises(Replaced, match="The object might have been deleted and then recreated"):
        cluster.delete_pvc(NS, name, uid=first)
    assert (cluster.get_pvc(NS, name) or {})["metadata"]["uid"] == second
    assert cluster.delete_pvc(NS, name, uid=second)
    assert not cluster.delete_pvc(NS, name, uid=second)  # already gone


def test_a_custom_delete_by_uid_is_refused_for_another_object(cluster: Cluster) -> None:
    name = fresh("vs")
    cluster.create_volume_snapshot(NS, name, "root-disk", "csi-snap", {})
    with pytest.raises(Replaced):
        cluster.delete_custom(VOLUME_SNAPSHOTS, NS, name, uid=str(uuid.uuid4()))
    assert cluster.get_custom_or_none(VOLUME_SNAPSHOTS, NS, name) is not None
    uid = cluster.get_custom(VOLUME_SNAPSHOTS, NS, name)["metadata"]["uid"]
    assert cluster.delete_custom(VOLUME_SNAPSHOTS, NS, name, uid=uid)
