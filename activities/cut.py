"""Steps 3-5 of a snapshot in one activity: freeze, every VolumeSnapshot at once, thaw at the cut.

Why one activity: the freeze window is what the guest pays, and every hop
through the workflow between freeze and thaw (activity done, workflow task,
next activity scheduled and polled) added about 100 ms on our machines. Here
nothing but the cluster's own latency sits between the calls:

  1. prepare, not frozen yet: check every PVC is still there (from the worker's
     watch-fed cache: no request) and hand every create to its own thread, blocked
     until the freeze is done with (a failed `required` freeze or a cancellation
     abandons them);
  2. freeze, if planned, up to FREEZE_ATTEMPTS times, with the freeze budget (the
     input's, lowered to the worker's maximum: rules.freeze_budget) as unfreezeTimeout;
     when it keeps failing, `required` fails (FreezeFailed) and `auto` goes on
     crash-consistent;
  3. create every VolumeSnapshot at once (threads); transient API errors are
     retried in place, the guest still frozen; from the freeze call to the thaw,
     requests are urgent (`cluster.rate_limit.urgent_requests`): a client-side rate
     limit lets them pass before unfrozen work;
  4. watch them and thaw the moment every one has `status.creationTime` (from
     inside the watch, before its connection is dropped), or at freeze time + budget
     (or the failure deadline) if that comes first: the cut is then crash-consistent
     (QuiesceTimeout), and `required` fails (QuiesceTimedOut) while `auto` goes on;
  5. on any error or cancellation while frozen, thaw before leaving. An error
     once the guest has been frozen is final (CutFailed): a retry could no
     longer prove the cut was taken while it was frozen, so the workflow
     cleans up instead.

The freeze window is measured on the worker's clock, from just before the
freeze call to the end of the unfreeze call: an upper bound of what the guest saw.

A worker that dies while the guest is frozen: a thread of its own heartbeats every
HEARTBEAT_EVERY_SECONDS from QUIET_START_SECONDS on (activities/heartbeat.py), with
what the freeze is (frozen at, thawed at, given up), so the server notices within the
cut's short heartbeat timeout (workflows.snapshot.CUT_HEARTBEAT), retries at once on
another worker, and that attempt takes over the guest where the dead one left it
(`_take_over`): still frozen, it waits for the cut without freezing again and thaws;
the budget counts from the first freeze.

VolumeGroupSnapshots (`input.groups`, activities/group_cut.py) take part in every step:
their PVCs are labelled in step 1, each group is created with the VolumeSnapshots in
step 3 (same threads, same start signal), and step 4 thaws when every group and every
VolumeSnapshot is cut (a second watch, on its own thread, follows the groups; a third
thread reads their contents, which show the driver's cut before the groups do). A group
that fails is deleted: `auto` cuts its disks per disk, in the window while the budget
lasts; `required` thaws and fails (GroupSnapshotFailed). After the thaw each group's
members are found, checked against the planned PVCs and labelled; the labels come off
the PVCs at the end, in every case.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import cluster_errors
from activities.group_cut import GroupCut
from activities.heartbeat import BackgroundHeartbeat
from cluster import snapshot_record
from cluster.client import Cluster
from cluster.errors import ClusterError, Conflict, Invalid, NotFound
from cluster.group_snapshots import GroupSnapshotState
from cluster.rate_limit import urgent_requests
from cluster.waiting import WaitTimeout
from contracts import common as error_types
from contracts.snapshot import (
    CutInput,
    CutOutcome,
    GroupResult,
    PlannedGroup,
    PlannedVolumeSnapshot,
)
from rules.durations import format_go_duration
from rules.freeze_budget import DEFAULT_MAX_FREEZE_BUDGET, capped
from rules.models import VolumeSnapshotState
from rules.naming import snapshot_selector

FREEZE_ATTEMPTS = 3
FREEZE_RETRY_DELAY_SECONDS = 0.5
THAW_ATTEMPTS = 6
MIN_UNFREEZE_TIMEOUT_SECONDS = 1.0  # a deadline almost spent still gives the guest this
WATCH_WINDOW_SECONDS = 3600.0
WATCH_PROGRESS_SECONDS = 1.0  # the watch reports what is cut so far (heartbeat details)
HEARTBEAT_EVERY_SECONDS = 0.2  # the background heartbeat; the SDK throttles what it sends
# A cut done sooner sends no heartbeat at all: see activities/heartbeat.py. It must stay
# below the cut's heartbeat timeout (workflows.snapshot.CUT_HEARTBEAT, 1.5 s).
QUIET_START_SECONDS = 0.4
MAX_PARALLEL_REQUESTS = 32
GROUP_WAIT_POLL_SECONDS = 0.05  # the thread that waits for the groups checks the budget so
# A frozen guest's groups' contents are read this often: the first to show the cut.
GROUP_CONTENT_POLL_SECONDS = 0.02


# What the QEMU guest agent answers an unfreeze when Windows VSS could not hold the freeze
# (its limit is about 10 seconds): the guest thawed itself before the thaw (KubeVirt reports
# QuiesceTimeout on this same text).
VSS_FREEZE_LIMIT = "fsfreeze is limited"


def _now() -> datetime:
    return datetime.now(UTC)


_T = TypeVar("_T")


class _Stopped(Exception):
    """The cut is over (failed or cancelled): the groups' watch stops."""


@dataclass(frozen=True)
class EarlierFreeze:
    """What an earlier attempt of this activity did to the guest, as its last heartbeat
    (or, without one, the VMI) tells: a retry takes over from there."""

    frozen_at: datetime | None = None
    thawed_at: datetime | None = None
    thawed_before_cut: bool = False
    freeze_error: str | None = None


class GuestCut:
    """One run of steps 3-5 for one snapshot (see the module docstring)."""

    def __init__(self, cluster: Cluster, input: CutInput,
                 max_freeze_budget: float = DEFAULT_MAX_FREEZE_BUDGET) -> None:
        self.cluster = cluster
        self.input = input
        self.frozen_at: datetime | None = None
        self.thawed_at: datetime | None = None
        self.thawed_before_cut = False
        self.freeze_error: str | None = None
        plan = input.freeze
        # The budget kept: the one asked for, never above the worker's maximum.
        self.budget = None if plan is None else capped(plan.budget_seconds, max_freeze_budget)
        self.thaw_by: datetime | None = None  # set once frozen: freeze time + budget, or sooner
        self._began = time.monotonic()
        # Per-disk VolumeSnapshots and groups; a group's disks are cut by the group.
        self._per_disk = [v for v in input.volumes if v.group is None]
        self._groups = GroupCut(cluster, input)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(len(self._per_disk) + 2 * len(input.groups) + 1,
                                   MAX_PARALLEL_REQUESTS)),
            thread_name_prefix="cut")
        # What is not cut yet; the thaw comes when both are empty (under `_cut_lock`: the
        # groups' watch thread and this one both look).
        self._not_cut = {v.name for v in self._per_disk}
        self._groups_not_cut = {g.name for g in input.groups}
        self._group_contents: dict[str, str] = {}  # group -> its bound content, once known
        self._cut_lock = threading.RLock()
        self._stop = threading.Event()
        self._fallback: list[str] = []
        self._fallback_errors: list[str] = []
        self._go = threading.Event()  # set once the freeze is done with: the creates leave
        self._abandoned = False  # set before `_go` when the creates must not be made
        self._cut_seen_at: datetime | None = None
        self._heartbeat = BackgroundHeartbeat(HEARTBEAT_EVERY_SECONDS, QUIET_START_SECONDS,
                                              self._began)

    def run(self) -> CutOutcome:
        with self._heartbeat:
            try:
                return self._run()
            except BaseException:
                if self.frozen_at is not None:
                    # The retry (if any) learns what the guest went through from here.
                    self._heartbeat.send_now()
                raise

    def _run(self) -> CutOutcome:
        groups: list[GroupResult] = []
        cut_names: dict[str, str] = {}
        try:
            self._prepare()
            # Every create waits in its own thread, ready before the freeze: once the freeze
            # answers, all of them leave at once (no thread start inside the window).
            pending = self._create_volume_snapshots()
            try:
                with self._urgency():
                    self._freeze()
                    self._go.set()
                    for creating in pending:
                        creating.result()
                    if self.input.groups:
                        group_states = self._wait_for_groups_and_cut()
                    else:
                        group_states, states = [], self._wait_for_cut()
                    cut_at = self._cut_seen_at or _now()
                    if self._frozen:
                        self._thaw()
                if self.thawed_before_cut:
                    self._refuse_if_required("the guest thawed itself before the cut (its "
                                             "own freeze limit passed)")
                if self.input.groups:
                    if group_states:
                        groups, cut_names = self._take_members(group_states)
                    states = self._final_states(cut_names)
            except BaseException as err:
                self._abandoned = True  # creates not sent yet never are
                self._stop.set()
                if self._frozen and _still_this_attempts():
                    with self._urgency():
                        self._thaw_on_the_way_out()
                if (self.frozen_at is not None and isinstance(err, ApplicationError | ClusterError)
                        and getattr(err, "type", None) not in (
                            error_types.QUIESCE_TIMED_OUT, error_types.GROUP_SNAPSHOT_FAILED)):
                    thawed = ("it is thawed" if self.thawed_at is not None else
                              "the thaw failed too: the guest thaws by itself by its "
                              "unfreezeTimeout")
                    raise ApplicationError(
                        f"the cut failed after the guest was frozen ({thawed}): {err}",
                        type=error_types.CUT_FAILED, non_retryable=True) from err
                raise
        finally:
            # Creates still waiting (the freeze failed for good, or cancellation) never start.
            self._abandoned = self._abandoned or not self._go.is_set()
            self._stop.set()
            self._go.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self.input.groups:
                with activity.shield_thread_cancel_exception():
                    self._groups.unlabel_pvcs()
        return CutOutcome(
            volume_snapshots=states, cut_names=cut_names, groups=groups,
            fallback=self._fallback, fallback_errors=self._fallback_errors,
            cut_at=cut_at, frozen_at=self.frozen_at,
            thawed_at=self.thawed_at, thawed_before_cut=self.thawed_before_cut,
            freeze_window_ms=self._window_ms(), freeze_error=self.freeze_error,
            freeze_budget_seconds=self.budget if self.frozen_at is not None else None)

    # ---- 1. prepare -----------------------------------------------------------------------

    def _prepare(self) -> None:
        with cluster_errors():
            pvcs = self.cluster.get_pvcs(self.input.namespace,
                                         [v.pvc_name for v in self.input.volumes])
        for volume in self.input.volumes:
            if volume.pvc_name not in pvcs:
                raise ApplicationError(
                    f"PVC {self.input.namespace}/{volume.pvc_name} of volume "
                    f"{volume.volume_name} is gone", type=error_types.PVC_MISSING,
                    non_retryable=True)
        if self.input.groups:
            # The groups select their PVCs by this label: on them before the freeze.
            with cluster_errors():
                self._groups.label_pvcs()

    # ---- 2. freeze ------------------------------------------------------------------------

    @property
    def _frozen(self) -> bool:
        return self.frozen_at is not None and self.thawed_at is None

    def _freeze(self) -> None:
        plan = self.input.freeze
        if plan is None:
            return
        if self._take_over(self._earlier_freeze()):
            return
        assert self.budget is not None
        for attempt in range(1, FREEZE_ATTEMPTS + 1):
            started = _now()
            timeout = self._unfreeze_timeout(started)
            try:
                with activity.shield_thread_cancel_exception():
                    # The budget, or less when the deadline comes sooner; never the
                    # deadline's whole span: the guest's own safety net stays short.
                    self.cluster.freeze(self.input.namespace, plan.vmi, timeout)
                self._frozen_from(started)
                self._go.set()  # the creates leave now; log after them
                activity.logger.info("froze %s/%s (unfreezeTimeout %s)", self.input.namespace,
                                     plan.vmi, format_go_duration(timeout))
                return
            except (Invalid, Conflict, NotFound) as err:
                # 400: the agent failed to freeze; 409/404: no running instance.
                self.freeze_error = f"freeze failed: {err.message}"
            except ClusterError as err:
                if not err.retryable:
                    raise ApplicationError(err.message, type=type(err).__name__,
                                           non_retryable=True) from err
                self.freeze_error = f"freeze failed: {err.message}"
                # No answer: the guest may be frozen all the same. Thaw to be sure.
                self._unfreeze_quietly(plan.vmi)
            activity.logger.warning("freeze attempt %d of %s/%s: %s", attempt,
                                    self.input.namespace, plan.vmi, self.freeze_error)
            if attempt < FREEZE_ATTEMPTS:
                time.sleep(FREEZE_RETRY_DELAY_SECONDS)
        if plan.required:
            raise ApplicationError(f"quiesce is required and {self.freeze_error}",
                                   type=error_types.FREEZE_FAILED, non_retryable=True)
        self._heartbeat.update(freeze_error=self.freeze_error)

    def _unfreeze_timeout(self, now: datetime) -> float:
        """The guest's self-thaw bound for a freeze at `now`: the budget, cut to what is
        left of the failure deadline (at least MIN_UNFREEZE_TIMEOUT_SECONDS)."""
        plan = self.input.freeze
        assert plan is not None and self.budget is not None
        if plan.thaw_by is None:
            return self.budget
        left = round((plan.thaw_by - now).total_seconds(), 3)
        return max(min(self.budget, left), MIN_UNFREEZE_TIMEOUT_SECONDS)

    def _frozen_from(self, frozen_at: datetime) -> None:
        """The guest is frozen since `frozen_at`: thawed by its budget at the latest."""
        plan = self.input.freeze
        assert plan is not None and self.budget is not None
        self.frozen_at = frozen_at
        by = frozen_at + timedelta(seconds=self.budget)
        self.thaw_by = by if plan.thaw_by is None else min(by, plan.thaw_by)
        self._heartbeat.update(frozen_at=frozen_at.isoformat())

    def _take_over(self, earlier: EarlierFreeze | None) -> bool:
        """Carry on from an earlier attempt that died; True when there is nothing to freeze.

        The guest it left frozen is not frozen again (that would restart nothing: the
        guest's own timer runs from the first freeze) and keeps the first freeze's
        budget; one it gave up on (thawed before the cut, or never frozen with `auto`) is
        not frozen now either, since its VolumeSnapshots may be cut already.
        """
        if earlier is None:
            return False
        plan = self.input.freeze
        assert plan is not None
        self.freeze_error = earlier.freeze_error
        if earlier.frozen_at is None:
            # It gave up on the freeze and went on crash-consistent; or nothing is known.
            return earlier.freeze_error is not None
        self._frozen_from(earlier.frozen_at)
        if earlier.thawed_at is not None:
            self.thawed_at = earlier.thawed_at
            self.thawed_before_cut = earlier.thawed_before_cut
            self._heartbeat.update(thawed_at=earlier.thawed_at.isoformat(),
                                   thawed_before_cut=earlier.thawed_before_cut or None)
            if earlier.thawed_before_cut:
                self._refuse_if_required("the freeze budget passed before the cut")
            return True
        activity.logger.warning("taking over %s/%s, frozen since %s by an earlier attempt",
                                self.input.namespace, plan.vmi, earlier.frozen_at.isoformat())
        assert self.thaw_by is not None
        if _now() >= self.thaw_by:
            self._thaw_before_cut("the freeze budget passed while no worker held the guest")
        return True

    def _earlier_freeze(self) -> EarlierFreeze | None:
        """What an earlier attempt of this activity did to the guest, if this is a retry.

        Its heartbeat says, when it heartbeated. If it did not (it died within
        QUIET_START_SECONDS), the VMI tells whether the guest is frozen now (we hold the
        VM's lock: no other operation froze it), and the earliest it can have been
        frozen is when the first attempt was scheduled: the window and the budget count
        from there (what the guest paid, never less). A guest not frozen whose snapshots
        exist already was cut by that attempt, frozen or not, nobody knows: no new freeze,
        and the cut is crash-consistent (`required` fails).
        """
        info = activity.info()
        if info.attempt <= 1:
            return None
        heartbeated = _freeze_by_earlier_attempt()
        if heartbeated is not None:
            return heartbeated
        plan = self.input.freeze
        assert plan is not None
        with cluster_errors():
            vmi = self.cluster.get_vmi(self.input.namespace, plan.vmi)
        frozen = ((vmi or {}).get("status") or {}).get("fsFreezeStatus") == "frozen"
        if frozen:
            return EarlierFreeze(frozen_at=info.scheduled_time)
        if not self._created_by_earlier_attempt():
            return None
        # The creates leave only once the freeze is done with, so that attempt froze (or gave
        # up on the freeze) and its cut may be taken already: freezing now would not cover
        # it, and claiming so would be a lie.
        why = ("an earlier attempt of this cut created its snapshots and left no word of its "
               "freeze (its heartbeats did not reach the server): the cut is not known to "
               "have been taken while the guest was frozen")
        if plan.required:
            raise ApplicationError(f"quiesce is required and {why}",
                                   type=error_types.FREEZE_FAILED, non_retryable=True)
        return EarlierFreeze(freeze_error=why)

    def _created_by_earlier_attempt(self) -> bool:
        """Whether any VolumeSnapshot or VolumeGroupSnapshot this cut plans exists already
        (one list request each, by the snapshot's label)."""
        selector = snapshot_selector(self.input.snapshot)
        with cluster_errors():
            if self._per_disk:
                planned = {v.name for v in self._per_disk}
                listed = self.cluster.list_volume_snapshots(self.input.namespace, selector)
                if any(s.name in planned for s in listed):
                    return True
            if self.input.groups:
                planned = {g.name for g in self.input.groups}
                groups = self.cluster.list_group_snapshots(self.input.namespace, selector)
                return any((g.get("metadata") or {}).get("name") in planned for g in groups)
        return False

    # ---- 3. create ------------------------------------------------------------------------

    def _create_volume_snapshots(self) -> list[Future[object]]:
        """Submit one create per per-disk volume and per group; each waits for `_go`
        (None if abandoned).

        They are submitted before the freeze so that the pool has started one thread per
        create (up to MAX_PARALLEL_REQUESTS) and each is blocked, ready to send: a pool
        warmed with no-op tasks reuses its first idle threads and starts fewer.
        """
        input = self.input
        owner = (snapshot_record.snapshot_owner_reference(input.snapshot, input.snapshot_uid)
                 if input.owned_by_snapshot else None)
        def create(volume: PlannedVolumeSnapshot) -> object:
            self._go.wait()
            if self._abandoned:
                return None
            with self._urgency():
                return self._create_one(volume)

        def create_group(group: PlannedGroup) -> object:
            self._go.wait()
            if self._abandoned:
                return None
            with self._urgency():
                return self._retried(lambda: self._groups.create(group, owner))

        # Each in a copy of this thread's context: the request priority of the run (set by
        # activities/request_priority.py) goes with the creates of a crash-consistent cut.
        return [*(self._pool.submit(contextvars.copy_context().run, create, volume)
                  for volume in self._per_disk),
                *(self._pool.submit(contextvars.copy_context().run, create_group, group)
                  for group in input.groups)]

    def _create_one(self, volume: PlannedVolumeSnapshot) -> VolumeSnapshotState:
        """One VolumeSnapshot, transient errors retried (see `_retried`)."""
        input = self.input
        owner = (snapshot_record.snapshot_owner_reference(input.snapshot, input.snapshot_uid)
                 if input.owned_by_snapshot else None)

        def once() -> VolumeSnapshotState:
            try:
                return self.cluster.create_volume_snapshot(
                    input.namespace, volume.name, volume.pvc_name, volume.snapshot_class,
                    input.labels, owner)
            except Conflict as err:
                if err.reason == "AlreadyExists":  # same name, another PVC or class
                    raise ApplicationError(
                        f"volume {volume.volume_name}: {err.message}",
                        type=error_types.VOLUME_SNAPSHOT_CONFLICT, non_retryable=True) from err
                raise

        return self._retried(once)

    def _retried(self, call: Callable[[], _T]) -> _T:
        """`call`, its transient API errors retried: while frozen up to the thaw, else up to
        the deadline, if any."""
        delay = 0.05
        while True:
            try:
                return call()
            except ClusterError as err:
                if not err.retryable:
                    raise ApplicationError(err.message, type=type(err).__name__,
                                           non_retryable=True) from err
                last = err
            limit = self.thaw_by if self._frozen else (
                self.input.freeze.thaw_by if self.input.freeze else None)
            if limit is not None and _now() >= limit:
                raise last
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ---- 4. wait for the cut, thaw --------------------------------------------------------

    def _wait_for_cut(self, names: list[str] | None = None) -> list[VolumeSnapshotState]:
        """Watch the per-disk VolumeSnapshots (or `names`) until cut; the thaw comes from
        inside the watch (`_on_cut_progress`), or at the budget."""
        names = [v.name for v in self._per_disk] if names is None else names
        plan = self.input.freeze
        while True:
            window = WATCH_WINDOW_SECONDS
            if plan is not None and self._frozen and self.thaw_by is not None:
                window = max((self.thaw_by - _now()).total_seconds(), 0.001)
            try:
                with cluster_errors(not_found=error_types.VOLUME_SNAPSHOT_MISSING):
                    return self.cluster.watch_volume_snapshots(
                        self.input.namespace, names, "cut", window,
                        on_change=self._on_cut_progress,
                        progress_interval_seconds=WATCH_PROGRESS_SECONDS,
                        label_selector=snapshot_selector(self.input.snapshot))
            except WaitTimeout:
                self._thaw_if_budget_passed()

    def _thaw_if_budget_passed(self) -> None:
        if self._frozen and self.thaw_by is not None and _now() >= self.thaw_by:
            self._thaw_before_cut("the freeze budget passed before the cut")

    def _wait_for_groups_and_cut(self) -> list[GroupSnapshotState]:
        """The groups' watch on a thread of its own, the per-disk VolumeSnapshots' here;
        whichever sees the last cut thaws. A group that fails: `required` thaws and fails,
        `auto` deletes it and cuts its disks per disk (in the window, while it lasts)."""
        watching = self._pool.submit(contextvars.copy_context().run, self._watch_groups)
        if self._frozen:
            self._pool.submit(contextvars.copy_context().run, self._follow_group_contents)
        if self._per_disk:
            self._wait_for_cut()
        while True:
            try:
                states = watching.result(timeout=GROUP_WAIT_POLL_SECONDS)
                break
            except FutureTimeout:
                self._thaw_if_budget_passed()
        failed = [s for s in states if not s.cut]
        if not failed:
            return states
        why = "; ".join(f"VolumeGroupSnapshot {self.input.namespace}/{s.name}: {s.error}"
                        for s in failed)
        if self.input.group_required:
            if self._frozen:
                self._thaw()
            raise ApplicationError(f"group snapshots are required and {why}",
                                   type=error_types.GROUP_SNAPSHOT_FAILED, non_retryable=True)
        activity.logger.warning("cutting per disk instead: %s", why)
        thawed = self.frozen_at is not None and not self._frozen
        self._fall_back([s.name for s in failed], why)
        if thawed:
            # Thawed when the groups' contents showed their cut, and a group failed after
            # that: its disks were cut per disk after the thaw.
            self.thawed_before_cut = True
            self._refuse_if_required("a VolumeGroupSnapshot failed after its content showed "
                                     "the cut, and its disks were cut after the thaw")
        return [s for s in states if s.cut]

    def _watch_groups(self) -> list[GroupSnapshotState]:
        def on_change(states: list[GroupSnapshotState]) -> None:
            if self._stop.is_set():
                raise _Stopped()
            with self._cut_lock:
                self._groups_not_cut -= {s.name for s in states if s.cut}
                self._group_contents.update(
                    {s.name: s.bound_content for s in states if s.bound_content})
            self._thaw_if_all_cut()
            self._heartbeat.update(groups_cut=[s.name for s in states if s.cut])

        with cluster_errors(not_found=error_types.VOLUME_SNAPSHOT_MISSING):
            return self._groups.watch(WATCH_WINDOW_SECONDS, on_change, WATCH_PROGRESS_SECONDS,
                                      snapshot_selector(self.input.snapshot))

    def _follow_group_contents(self) -> None:
        """While the guest is frozen, read each group's content until it shows the cut.

        The driver's cut shows first on the group's content (`status.creationTime`, from the
        CSI snapshotter); the group snapshot controller then makes a VolumeSnapshot and a
        content per member and only then shows the cut on the group: tens of milliseconds
        per disk that the guest need not stay frozen for. The group's watch learns the
        content's name (`boundVolumeGroupSnapshotContentName`, set before the cut) and
        stays what decides a failed group. A read that fails is tried again at the next
        turn: the watch thaws in any case.
        """
        while self._frozen and not self._stop.is_set():
            with self._cut_lock:
                known = {n: self._group_contents.get(n) for n in self._groups_not_cut}
            if not known:
                return
            for group, content in known.items():
                if content is None:
                    continue
                try:
                    cut = self._groups.content_cut(content)
                except ClusterError as err:
                    activity.logger.debug("reading %s: %s", content, err)
                    continue
                if cut:
                    with self._cut_lock:
                        self._groups_not_cut.discard(group)
                    self._thaw_if_all_cut()
            self._stop.wait(GROUP_CONTENT_POLL_SECONDS)

    def _fall_back(self, groups: list[str], why: str) -> None:
        """Delete failed groups and cut their disks by VolumeSnapshots of their own; the
        thaw waits for them too (in the window, while the budget lasts)."""
        volumes = [v for v in self.input.volumes if v.group in groups]
        with self._cut_lock:
            self._not_cut |= {v.name for v in volumes}
            self._groups_not_cut -= set(groups)
        self._groups.delete_quietly(groups)
        with self._urgency():
            for creating in [self._pool.submit(contextvars.copy_context().run,
                                               self._create_one, v) for v in volumes]:
                creating.result()
        self._fallback += [v.volume_name for v in volumes]
        self._fallback_errors.append(why)
        self._wait_for_cut([v.name for v in volumes])

    def _take_members(self, states: list[GroupSnapshotState]
                      ) -> tuple[list[GroupResult], dict[str, str]]:
        """After the thaw: each group's members, checked and labelled; a group that took
        other PVCs than planned is deleted and its disks cut per disk (`auto`: after the
        thaw, so crash-consistent) or the cut fails (`required`)."""
        planned = {g.name: g for g in self.input.groups}
        results: list[GroupResult] = []
        cut_names: dict[str, str] = {}
        wrong: list[str] = []
        for state in states:
            group = planned[state.name]
            with cluster_errors():
                by_pvc, problem = self._groups.members(group, state)
            if problem is not None:
                wrong.append(group.name)
                self._fallback_errors.append(problem)
                continue
            with cluster_errors():
                self._groups.label_members(list(by_pvc.values()))
            for volume, pvc in zip(group.volumes, group.pvcs, strict=True):
                cut_names[volume] = by_pvc[pvc].name
            results.append(GroupResult(name=group.name, group_class=group.group_class,
                                       driver=group.driver, volumes=list(group.volumes),
                                       creation_time=state.creation_time))
        if wrong:
            if self.input.group_required:
                raise ApplicationError("group snapshots are required and "
                                       + "; ".join(self._fallback_errors),
                                       type=error_types.GROUP_SNAPSHOT_FAILED,
                                       non_retryable=True)
            activity.logger.warning("cutting per disk instead: %s",
                                    "; ".join(self._fallback_errors))
            volumes = [v for v in self.input.volumes if v.group in wrong]
            with cluster_errors():
                self._groups.delete(wrong, wait=True)
            for creating in [self._pool.submit(contextvars.copy_context().run,
                                               self._create_one, v) for v in volumes]:
                creating.result()
            self._fallback += [v.volume_name for v in volumes]
            self._wait_for_cut([v.name for v in volumes])
            self.thawed_before_cut = self.thawed_before_cut or self.frozen_at is not None
            self._refuse_if_required("a VolumeGroupSnapshot took other PVCs than planned "
                                     "and its disks were cut after the thaw")
        return results, cut_names

    def _final_states(self, cut_names: dict[str, str]) -> list[VolumeSnapshotState]:
        """Every disk's VolumeSnapshot as it is now, in the order of the volumes."""
        names = [cut_names.get(v.volume_name, v.name) for v in self.input.volumes]
        with cluster_errors(not_found=error_types.VOLUME_SNAPSHOT_MISSING):
            found = {s.name: s for s in self.cluster.list_volume_snapshots(
                self.input.namespace, snapshot_selector(self.input.snapshot))}
        missing = [n for n in names if n not in found]
        if missing:
            raise ApplicationError(f"VolumeSnapshots {', '.join(missing)} in "
                                   f"{self.input.namespace} are gone after the cut",
                                   type=error_types.VOLUME_SNAPSHOT_MISSING, non_retryable=True)
        return [found[n] for n in names]

    def _thaw_before_cut(self, why: str) -> None:
        """Thaw first; then `auto` goes on crash-consistent (QuiesceTimeout) and `required`
        fails (QuiesceTimedOut)."""
        plan = self.input.freeze
        assert plan is not None
        activity.logger.warning("thawing %s/%s before the cut: %s (budget %s)",
                                self.input.namespace, plan.vmi, why,
                                format_go_duration(self.budget or 0))
        self._thaw()
        self.thawed_before_cut = True
        self._heartbeat.update(thawed_before_cut=True)
        self._refuse_if_required(why)

    def _refuse_if_required(self, why: str) -> None:
        plan = self.input.freeze
        if plan is not None and plan.required and self.thawed_before_cut:
            raise ApplicationError(
                f"quiesce is required and the guest was thawed before every volume was cut: "
                f"{why}; the cut would be crash-consistent", type=error_types.QUIESCE_TIMED_OUT,
                non_retryable=True)

    def _thaw(self) -> None:
        """Unfreeze, retrying transient API errors a few times: the guest comes first."""
        plan = self.input.freeze
        assert plan is not None
        delay = 0.05
        with activity.shield_thread_cancel_exception(), cluster_errors():
            for attempt in range(THAW_ATTEMPTS):
                try:
                    self.cluster.unfreeze(self.input.namespace, plan.vmi)
                    break
                except NotFound:
                    break  # no instance, so nothing is frozen
                except ClusterError as err:
                    if VSS_FREEZE_LIMIT in err.message:
                        # The guest held the freeze as long as it could (Windows VSS: about
                        # 10 s) and thawed itself before this call: the cut is
                        # crash-consistent (KubeVirt's QuiesceTimeout).
                        activity.logger.warning(
                            "the guest of %s/%s thawed itself before the cut ended (%s)",
                            self.input.namespace, plan.vmi, err.message)
                        self.thawed_before_cut = True
                        self._heartbeat.update(thawed_before_cut=True)
                        break
                    if isinstance(err, Conflict):
                        # KubeVirt answers 409 for a VMI that is not running (nothing
                        # frozen), but a 409 is also what a contended write gets: only the
                        # VMI can tell.
                        if not self._guest_may_be_frozen(plan.vmi):
                            break
                        if attempt == THAW_ATTEMPTS - 1:
                            raise
                        activity.logger.warning(
                            "unfreeze of %s/%s answered 409 while the guest is frozen: "
                            "retrying (%s)", self.input.namespace, plan.vmi, err.message)
                    elif not err.retryable or attempt == THAW_ATTEMPTS - 1:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        self.thawed_at = _now()
        self._heartbeat.update(thawed_at=self.thawed_at.isoformat())

    def _guest_may_be_frozen(self, vmi: str) -> bool:
        """Whether the VMI still says frozen; an unreadable VMI counts as frozen (retry)."""
        try:
            instance = self.cluster.get_vmi(self.input.namespace, vmi)
        except ClusterError:
            return True
        if instance is None:
            return False
        status = instance.get("status") or {}
        return bool(status.get("fsFreezeStatus") == "frozen")

    def _thaw_on_the_way_out(self) -> None:
        try:
            self._thaw()
        except Exception as err:  # the saga thaws again; the first error matters more
            activity.logger.error("could not thaw %s: %s", self.input.namespace, err)

    def _unfreeze_quietly(self, vmi: str) -> None:
        with contextlib.suppress(ClusterError):
            self.cluster.unfreeze(self.input.namespace, vmi)

    # ---- helpers ----------------------------------------------------------------------------

    def _urgency(self) -> contextlib.AbstractContextManager[None]:
        """Urgent requests only when a guest is (to be) frozen: a crash-consistent cut has no
        window to protect and queues with everyone else."""
        return urgent_requests() if self.input.freeze is not None else contextlib.nullcontext()

    def _window_ms(self) -> int | None:
        if self.frozen_at is None or self.thawed_at is None:
            return None
        return max(0, round((self.thawed_at - self.frozen_at).total_seconds() * 1000))

    def _on_cut_progress(self, states: list[VolumeSnapshotState]) -> None:
        """Thaw here, inside the watch, the moment the last cut shows; then heartbeat.

        Thawing before the watch returns matters: it is the first moment the cut is known,
        before the watch stream is closed (closing it drops its connection; when the
        unfreeze went through the same urllib3 pool, it then paid a new TLS handshake
        inside the window, 5-10 ms; with libcurl it has a pool of its own, but the
        order still saves the close). A thaw that fails raises out of the watch, to the
        same handling as before.
        """
        with self._cut_lock:
            self._not_cut -= {s.name for s in states if s.cut}
        self._thaw_if_all_cut()
        self._heartbeat_states(states)

    def _thaw_if_all_cut(self) -> None:
        """Thaw the moment nothing is left to cut (per-disk VolumeSnapshots and groups)."""
        with self._cut_lock:
            if self._not_cut or self._groups_not_cut:
                return
            if self._cut_seen_at is None:
                self._cut_seen_at = _now()
            if self._frozen:
                self._thaw()

    def _heartbeat_states(self, states: list[VolumeSnapshotState]) -> None:
        """What is cut so far, for the background heartbeat's details."""
        self._heartbeat.update(cut=[s.name for s in states if s.cut],
                               waiting=[s.name for s in states if not s.cut])


def _still_this_attempts() -> bool:
    """False when the server has handed this attempt's work on (it timed out: a worker
    that could not heartbeat in time): the next attempt holds the guest now, and a thaw
    from here could thaw it under that attempt's cut. The saga thaws if none comes."""
    details = activity.cancellation_details()
    return not (details is not None and (details.timed_out or details.not_found))


def _freeze_by_earlier_attempt() -> EarlierFreeze | None:
    """What a previous attempt of this activity heartbeated about the freeze, if it did."""
    details = activity.info().heartbeat_details
    if not details or not isinstance(details[-1], dict):
        return None
    last = details[-1]
    error = last.get("freeze_error")
    earlier = EarlierFreeze(frozen_at=_instant(last.get("frozen_at")),
                            thawed_at=_instant(last.get("thawed_at")),
                            thawed_before_cut=last.get("thawed_before_cut") is True,
                            freeze_error=error if isinstance(error, str) else None)
    if earlier.frozen_at is None and earlier.freeze_error is None:
        return None  # it heartbeated before any freeze: nothing to take over
    return earlier


def _instant(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
