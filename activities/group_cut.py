"""The VolumeGroupSnapshot side of a cut (activities/cut.py drives it beside the per-disk
VolumeSnapshots, in the same freeze window).

  - before the freeze: each group's label on its PVCs (the group selects by it);
  - in the window: the group created with the per-disk creates (same pool, same start
    signal), and followed by a watch until it is cut (`status.creationTime`) or failed
    (`status.error`);
  - after the thaw: its members (the VolumeSnapshots the group snapshot controller made
    and named, one per PVC) found, checked to be exactly the planned PVCs, and labelled
    with the snapshot's labels so that its selectors find them;
  - always at the end, and in every failure: the labels taken off the PVCs again.

A group that fails (driver error) or took other PVCs than planned (a foreign PVC that
carries its label, one that lost it) is deleted; `auto` cuts its disks per disk, `required`
fails (GroupSnapshotFailed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from cluster.client import Cluster
from cluster.errors import ClusterError, Conflict
from cluster.group_snapshots import GroupSnapshotState
from cluster.snapshots import volume_snapshot_state
from contracts import common as error_types
from contracts.snapshot import CutInput, PlannedGroup
from rules.models import VolumeSnapshotState

MEMBERS_WAIT_SECONDS = 30.0  # after the cut, for the controller to make every member
MEMBERS_POLL_SECONDS = 0.1
GONE_WAIT_SECONDS = 30.0


class GroupCut:
    """The groups of one cut (see the module docstring)."""

    def __init__(self, cluster: Cluster, input: CutInput) -> None:
        self.cluster = cluster
        self.input = input
        self.groups = list(input.groups)

    # ---- before the freeze ----------------------------------------------------------------

    def label_pvcs(self) -> None:
        """Each group's label on its PVCs (a merge patch each): the group's selector."""
        for group in self.groups:
            for pvc in group.pvcs:
                self.cluster.label_pvc(self.input.namespace, pvc, group.label_key,
                                       group.label_value)

    def unlabel_pvcs(self) -> None:
        """Take the labels off again; best effort (the sweeper removes what stays)."""
        for group in self.groups:
            for pvc in group.pvcs:
                try:
                    self.cluster.label_pvc(self.input.namespace, pvc, group.label_key, None)
                except ClusterError as err:
                    activity.logger.warning("could not take label %s off PVC %s/%s: %s",
                                            group.label_key, self.input.namespace, pvc, err)

    # ---- in the window ----------------------------------------------------------------------

    def create(self, group: PlannedGroup, owner: dict[str, Any] | None) -> GroupSnapshotState:
        """Create one group (a retry finds its own); Conflict of another one is final."""
        try:
            return self.cluster.create_group_snapshot(
                self.input.namespace, group.name, group.group_class,
                {group.label_key: group.label_value}, self.input.labels, owner)
        except Conflict as err:
            if err.reason == "AlreadyExists":
                raise ApplicationError(
                    f"group {group.name}: {err.message}",
                    type=error_types.VOLUME_SNAPSHOT_CONFLICT, non_retryable=True) from err
            raise

    def watch(self, timeout_seconds: float,
              on_change: Callable[[list[GroupSnapshotState]], None],
              progress_seconds: float, label_selector: str) -> list[GroupSnapshotState]:
        """Until every group is cut or failed."""
        return self.cluster.watch_group_snapshots(
            self.input.namespace, [g.name for g in self.groups], timeout_seconds,
            on_change=on_change, progress_interval_seconds=progress_seconds,
            label_selector=label_selector)

    def content_cut(self, content: str) -> bool:
        """Whether the group's content shows the driver's cut (one GET)."""
        return self.cluster.group_content_cut(content)

    # ---- after the thaw ---------------------------------------------------------------------

    def members(self, group: PlannedGroup, state: GroupSnapshotState
                ) -> tuple[dict[str, VolumeSnapshotState], str | None]:
        """PVC -> its member, once the controller has made every member of the cut; and
        what is wrong when the group took other PVCs than planned (None: exactly them)."""
        namespace = self.input.namespace
        deadline = time.monotonic() + MEMBERS_WAIT_SECONDS
        while True:
            handles = (self.cluster.group_volume_handles(state.bound_content)
                       if state.bound_content else None)
            expected = None if handles is None else len(handles)
            if expected is None:
                fresh = self.cluster.get_group_snapshot(namespace, group.name)
                state = fresh or state
            # By name (a GET per member), else a list of every VolumeSnapshot of the
            # namespace, which grows with every snapshot kept there.
            found = ((self.cluster.group_members_by_name(namespace, group.name, state.uid,
                                                          handles)
                      if handles and state.uid else None)
                     or self.cluster.group_members(namespace, group.name))
            cut = [m for m in found if (m.get("status") or {}).get("creationTime")]
            if expected is not None and len(cut) >= expected:
                break
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"VolumeGroupSnapshot {namespace}/{group.name} was cut but its member "
                    f"VolumeSnapshots did not all appear within {MEMBERS_WAIT_SECONDS:.0f}s "
                    f"({len(cut)} of {expected if expected is not None else '?'})",
                    type=error_types.GROUP_SNAPSHOT_FAILED, non_retryable=True)
            time.sleep(MEMBERS_POLL_SECONDS)
        by_pvc: dict[str, VolumeSnapshotState] = {}
        for member in cut:
            member_state = volume_snapshot_state(member)
            if member_state.source_pvc:
                by_pvc[member_state.source_pvc] = member_state
        planned, took = set(group.pvcs), set(by_pvc)
        wrong = None
        if took != planned:
            parts = []
            if took - planned:
                parts.append(f"also took {', '.join(sorted(took - planned))} (carrying its "
                             f"label {group.label_key})")
            if planned - took:
                parts.append(f"left out {', '.join(sorted(planned - took))}")
            wrong = (f"VolumeGroupSnapshot {namespace}/{group.name} did not cut exactly its "
                     f"planned PVCs: it {' and '.join(parts)}")
        return by_pvc, wrong

    def label_members(self, members: list[VolumeSnapshotState]) -> None:
        """The snapshot's labels on the members, so that its selectors find them."""
        for member in members:
            missing = {k: v for k, v in self.input.labels.items() if member.labels.get(k) != v}
            if missing:
                self.cluster.label_volume_snapshot(self.input.namespace, member.name, missing)

    def delete(self, names: list[str], wait: bool) -> None:
        """Delete groups (the controller deletes their members); with `wait`, until gone."""
        namespace = self.input.namespace
        for name in names:
            self.cluster.delete_group_snapshot(namespace, name)
        if not wait:
            return
        deadline = time.monotonic() + GONE_WAIT_SECONDS
        while any(self.cluster.get_group_snapshot(namespace, n) is not None for n in names):
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"VolumeGroupSnapshots {', '.join(names)} in {namespace} are not gone "
                    f"{GONE_WAIT_SECONDS:.0f}s after their deletion",
                    type=error_types.GROUP_SNAPSHOTS_NOT_GONE)
            time.sleep(MEMBERS_POLL_SECONDS)

    def delete_quietly(self, names: list[str]) -> None:
        with contextlib.suppress(ClusterError):
            self.delete(names, wait=False)
