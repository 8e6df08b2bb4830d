"""VolumeSnapshots: retry-safe create, read, list, delete, and the watch for cut and ready."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from cluster.client import Cluster
from cluster.errors import Conflict, Invalid, NotFound
from rules.models import VolumeSnapshotState
from tests.cluster.conftest import NS

LABELS = {"vmsnap.io/test": "snapshots"}


def test_create_is_retry_safe_and_refuses_a_different_source(cluster: Cluster) -> None:
    first = cluster.create_volume_snapshot(NS, "vs-retry", "snap-a", "fast-snap", LABELS)
    assert (first.name, first.source_pvc, first.snapshot_class) == ("vs-retry", "snap-a",
                                                                    "fast-snap")
    again = cluster.create_volume_snapshot(NS, "vs-retry", "snap-a", "fast-snap", LABELS)
    assert again.name == "vs-retry" and again.source_pvc == "snap-a"
    with pytest.raises(Conflict, match="already exists for PVC 'snap-a'"):
        cluster.create_volume_snapshot(NS, "vs-retry", "root-disk", "fast-snap", LABELS)
    with pytest.raises(Conflict):
        cluster.create_volume_snapshot(NS, "vs-retry", "snap-a", "multi-default", LABELS)
    assert cluster.delete_volume_snapshot(NS, "vs-retry") is True


def test_get_list_and_delete(cluster: Cluster) -> None:
    labels = {"vmsnap.io/test": "list"}
    owner_less = cluster.create_volume_snapshot(NS, "vs-list-1", "snap-a", "fast-snap", labels)
    cluster.create_volume_snapshot(NS, "vs-list-2", "root-disk", "fast-snap", labels)
    cluster.create_volume_snapshot(NS, "vs-other", "root-disk", "fast-snap", LABELS)
    assert owner_less.labels == labels
    got = cluster.get_volume_snapshot(NS, "vs-list-1")
    assert got is not None and got.source_pvc == "snap-a"
    listed = cluster.list_volume_snapshots(NS, "vmsnap.io/test=list")
    assert sorted(s.name for s in listed) == ["vs-list-1", "vs-list-2"]
    for name in ("vs-list-1", "vs-list-2", "vs-other"):
        assert cluster.delete_volume_snapshot(NS, name) is True
    assert cluster.delete_volume_snapshot(NS, "vs-list-1") in (True, False)
    gone_deadline = time.monotonic() + 5
    while cluster.get_volume_snapshot(NS, "vs-list-1") is not None:
        assert time.monotonic() < gone_deadline, "vs-list-1 was never removed"
        time.sleep(0.05)
    assert cluster.delete_volume_snapshot(NS, "vs-list-1") is False
    assert cluster.get_volume_snapshot(NS, "never-existed") is None


def test_the_watch_sees_the_last_cut_within_milliseconds(cluster: Cluster) -> None:
    """fast-snap cuts after 200ms; slow-disk after 500ms (its own annotation)."""
    names = ["vs-cut-fast", "vs-cut-slow"]
    cluster.create_volume_snapshot(NS, names[0], "snap-a", "fast-snap", LABELS)
    cluster.create_volume_snapshot(NS, names[1], "slow-disk", "fast-snap", LABELS)
    seen: list[list[VolumeSnapshotState]] = []
    states = cluster.watch_volume_snapshots(NS, names, "cut", timeout_seconds=10,
                                            on_change=seen.append)
    returned = datetime.now(UTC)
    assert [s.name for s in states] == names
    assert all(s.cut for s in states)
    last_cut = max(s.creation_time for s in states if s.creation_time is not None)
    lag = (returned - last_cut).total_seconds()
    assert lag < 0.15, f"noticed the last cut {lag * 1000:.0f} ms late"
    print(f"last cut noticed after {lag * 1000:.1f} ms")
    # Progress was reported: first with nothing or one cut, last with both.
    assert seen and not all(s.cut for s in seen[0])
    assert all(s.cut for s in seen[-1])
    ready = cluster.watch_volume_snapshots(NS, names, "ready", timeout_seconds=10)
    assert all(s.ready_to_use and s.restore_size for s in ready)
    for name in names:
        cluster.delete_volume_snapshot(NS, name)


def test_waiting_for_what_already_holds_returns_at_once(cluster: Cluster) -> None:
    cluster.create_volume_snapshot(NS, "vs-done", "snap-a", "fast-snap", LABELS)
    cluster.watch_volume_snapshots(NS, ["vs-done"], "ready", timeout_seconds=10)
    started = time.monotonic()
    (state,) = cluster.watch_volume_snapshots(NS, ["vs-done"], "cut", timeout_seconds=10)
    assert state.ready_to_use and time.monotonic() - started < 0.5
    cluster.delete_volume_snapshot(NS, "vs-done")


def test_a_snapshot_that_never_cuts_times_out_with_progress(cluster: Cluster) -> None:
    cluster.create_volume_snapshot(NS, "vs-never", "never-disk", "never-snap", LABELS)
    reports: list[float] = []
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"vs-never \(not cut"):
        cluster.watch_volume_snapshots(
            NS, ["vs-never"], "cut", timeout_seconds=1.0,
            on_change=lambda _: reports.append(time.monotonic() - started),
            progress_interval_seconds=0.2)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.0
    assert len(reports) >= 4, f"progress reported only at {reports}"
    cluster.delete_volume_snapshot(NS, "vs-never")


def test_an_on_change_error_ends_the_wait(cluster: Cluster) -> None:
    cluster.create_volume_snapshot(NS, "vs-cancel", "never-disk", "never-snap", LABELS)

    class Cancelled(Exception):
        pass

    def cancel(_: list[VolumeSnapshotState]) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        cluster.watch_volume_snapshots(NS, ["vs-cancel"], "cut", timeout_seconds=5,
                                       on_change=cancel)
    cluster.delete_volume_snapshot(NS, "vs-cancel")


def test_waiting_for_a_missing_snapshot_is_not_found(cluster: Cluster) -> None:
    with pytest.raises(NotFound, match="vs-missing"):
        cluster.watch_volume_snapshots(NS, ["vs-missing"], "cut", timeout_seconds=2)


def test_a_snapshot_deleted_during_the_wait_is_not_found(cluster: Cluster) -> None:
    cluster.create_volume_snapshot(NS, "vs-doomed", "never-disk", "never-snap", LABELS)

    def delete_once(states: list[VolumeSnapshotState]) -> None:
        if states and not states[0].deleting:
            cluster.delete_volume_snapshot(NS, "vs-doomed")

    with pytest.raises(NotFound, match="vs-doomed"):
        cluster.watch_volume_snapshots(NS, ["vs-doomed"], "cut", timeout_seconds=5,
                                       on_change=delete_once)


def test_bad_requests_are_refused(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="'cut' or 'ready'"):
        cluster.watch_volume_snapshots(NS, ["x"], "bound", timeout_seconds=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="> 0"):
        cluster.watch_volume_snapshots(NS, ["x"], "cut", timeout_seconds=0)
    with pytest.raises(ValueError, match="no VolumeSnapshot names"):
        cluster.watch_volume_snapshots(NS, [], "cut", timeout_seconds=1)
    with pytest.raises(Invalid):
        cluster.create_volume_snapshot(NS, "Bad_Name", "snap-a", "fast-snap", LABELS)
