"""Keeps every snapshot record saying what its VolumeSnapshots say, for as long as it exists.

The snapshot workflow follows readiness within `ready_deadline` and then stops; storage
keeps moving. This reconciler, a small controller in each worker process, watches the
records and the VolumeSnapshots vmsnap made (label `vmsnap.io/snapshot`) and applies
`rules.record_truth` whenever one changes: late readiness turns a record ready, a
VolumeSnapshot deleted or in error turns it not ready with the reason, a status that is
gone is rebuilt from the content.

Why a controller in the worker rather than a workflow: the question is "what changed in
the cluster", which a watch answers at once and for free while nothing changes; a
workflow would have to poll through activities, paying requests and history for every
quiet minute. The worker already keeps watch-fed copies (`cluster.informer`); this adds
two watches, listed once at start (so a restarted worker catches up with what it
missed) and then followed. Several workers each follow, and each writes only a status
that differs from the stored one, conditional on the resourceVersion it read: the first
write wins and the others then find nothing to change.

Knows nothing of Temporal; builds on the adapter (`Cluster`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cluster.apis import VOLUME_SNAPSHOTS
from cluster.client import Cluster
from cluster.errors import ClusterError, Conflict, NotFound
from cluster.informer import WatchedCollection, namespaced_key
from cluster.record_kinds import (
    VIRTUAL_MACHINE_SNAPSHOT_CONTENTS,
    VIRTUAL_MACHINE_SNAPSHOTS,
    k8s_time,
)
from cluster.snapshot_record import RecordPhase, SnapshotRecordStatus, snapshot_conditions
from rules.naming import SNAPSHOT_LABEL, content_name
from rules.record_truth import (
    RecordTruth,
    differs,
    followed_until,
    record_truth,
    volume_snapshots_of,
)

log = logging.getLogger(__name__)

# A record is created without a status, which its workflow writes a moment later: one
# without a status is looked at only once it is this old (its status is then gone, not
# yet to come), so a snapshot being taken costs no read of its content.
STATUSLESS_GRACE = timedelta(seconds=10)


class RecordReconciler:
    """Follows the records and VolumeSnapshots of every namespace (or of `namespaces`)."""

    def __init__(self, cluster: Cluster, namespaces: Iterable[str] | None = None) -> None:
        self.cluster = cluster
        self._wanted: set[str] = set()
        self._later: dict[str, datetime] = {}  # records to look at again, and when
        self._record_of: dict[str, str] = {}  # VolumeSnapshot key -> its record's key
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        scope: list[str | None] = (list(sorted(set(namespaces))) if namespaces is not None
                                   else [None])
        self._records = [self._watch(VIRTUAL_MACHINE_SNAPSHOTS.group,
                                     VIRTUAL_MACHINE_SNAPSHOTS.version,
                                     VIRTUAL_MACHINE_SNAPSHOTS.plural, ns, "",
                                     self._on_record) for ns in scope]
        self._snapshots = [self._watch(VOLUME_SNAPSHOTS.group, VOLUME_SNAPSHOTS.version,
                                       VOLUME_SNAPSHOTS.plural, ns, SNAPSHOT_LABEL,
                                       self._on_volume_snapshot) for ns in scope]
        self.writes = 0  # statuses written: what a test counts

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """List everything once (ClusterError if that fails), then follow on threads."""
        for collection in [*self._records, *self._snapshots]:
            collection.start()
        self._thread = threading.Thread(target=self._run, name="record reconciler",
                                        daemon=True)
        self._thread.start()
        self._want_all()

    def close(self, wait_seconds: float = 0.0) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        for collection in [*self._records, *self._snapshots]:
            collection.close(wait_seconds)
        if wait_seconds > 0 and self._thread is not None:
            self._thread.join(wait_seconds)

    def settled(self) -> bool:
        """Nothing waits to be looked at (every change seen so far is reconciled)."""
        with self._changed:
            return not self._wanted

    # ---- events (on the watches' threads: only queue) --------------------------------------

    def _on_record(self, kind: str, key: str | None) -> None:
        if kind == "SYNC" or key is None:
            self._want_all()
        elif kind != "DELETED":
            self._want([key])

    def _on_volume_snapshot(self, kind: str, key: str | None) -> None:
        if kind == "SYNC" or key is None:
            self._want_all()
            return
        # Its record, from the index the reconciling thread keeps, else from its label:
        # one lookup per event, not a scan of every record (hundreds change at once).
        owner = self._record_of.pop(key, None) if kind == "DELETED" else \
            self._record_of.get(key)
        if owner is None:
            labels = ((self._volume_snapshot(key) or {}).get("metadata") or {}).get(
                "labels") or {}
            label = labels.get(SNAPSHOT_LABEL)
            owner = f"{key.partition('/')[0]}/{label}" if label else None
        if owner is not None:
            self._want([owner])

    def _want(self, keys: Iterable[str]) -> None:
        with self._changed:
            before = len(self._wanted)
            self._wanted.update(keys)
            if len(self._wanted) != before:
                self._changed.notify()

    def _want_all(self) -> None:
        self._want(key for key, _ in self._all_records())

    # ---- the reconciling thread -----------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._changed:
                while not self._wanted and not self._closed.is_set():
                    self._move_due()
                    if self._wanted:
                        break
                    self._changed.wait(self._seconds_to_next())
                if self._closed.is_set():
                    return
                key = min(self._wanted)
                self._wanted.discard(key)
            try:
                self._reconcile(key)
            except Conflict:
                self._want([key])  # changed meanwhile: its watch event brings the new one
            except NotFound:
                pass  # gone meanwhile: nothing to say about it
            except ClusterError as error:
                log.warning("could not reconcile snapshot record %s: %s", key, error)
                self._closed.wait(1.0)
                self._want([key])

    def _move_due(self) -> None:
        """Records whose workflow has stopped following readiness: look at them now."""
        now = datetime.now(UTC)
        due = [key for key, at in self._later.items() if at <= now]
        for key in due:
            del self._later[key]
        self._wanted.update(due)

    def _seconds_to_next(self) -> float | None:
        if not self._later:
            return None
        left = (min(self._later.values()) - datetime.now(UTC)).total_seconds()
        return max(left, 0.0) + 0.05

    def _reconcile(self, key: str) -> None:
        record = self._record(key)
        if record is None:
            return
        namespace = str((record.get("metadata") or {}).get("namespace") or "")
        content = None
        if not record.get("status"):
            young_until = _created(record) + STATUSLESS_GRACE
            if datetime.now(UTC) < young_until:
                with self._changed:
                    self._later[key] = young_until
                return
            content = self._content_of(record)
        names = volume_snapshots_of(record, content)
        for name in names:
            self._record_of[f"{namespace}/{name}"] = key
        found = {name: self._volume_snapshot(f"{namespace}/{name}") for name in names}
        now = datetime.now(UTC)
        truth = record_truth(record, content, found, now)
        until = followed_until(record)
        if truth is None and until is not None and now < until < datetime.max.replace(
                tzinfo=UTC):
            with self._changed:
                self._later[key] = until  # its workflow may die: look again when it stops
            return
        if truth is None or not differs(record, truth):
            return
        self._write(record, truth)

    def _write(self, record: dict[str, Any], truth: RecordTruth) -> None:
        metadata = record.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        previous = record.get("status") or {}
        now = datetime.now(UTC)
        phase: RecordPhase = ((truth.rebuilt or {}).get("phase") or previous.get("phase")
                              or "Unknown")
        conditions = snapshot_conditions(
            list(previous.get("conditions") or []),
            SnapshotRecordStatus(phase=phase, ready_to_use=truth.ready_to_use,
                                 error_message=truth.error), now)
        old_error = previous.get("error") or {}
        error = None if truth.error is None else {
            "message": truth.error,
            "time": old_error.get("time") if old_error.get("message") == truth.error
            else k8s_time(now)}
        status: dict[str, Any] = {"readyToUse": truth.ready_to_use, "error": error,
                                  "conditions": conditions}
        if truth.rebuilt is not None:
            rebuilt = truth.rebuilt
            cut = rebuilt.get("creationTime")
            status.update({
                "phase": phase,
                "creationTime": k8s_time(datetime.fromisoformat(str(cut).replace("Z", "+00:00")))
                if cut else None,
                "virtualMachineSnapshotContentName": rebuilt.get("contentName"),
                "volumeSnapshots": rebuilt.get("volumeSnapshots"),
                "snapshotVolumes": {"includedVolumes": rebuilt.get("includedVolumes") or []}})
        # Conditional on the version read: a record changed meanwhile is looked at again.
        self.cluster.patch_custom(
            VIRTUAL_MACHINE_SNAPSHOTS, namespace, name,
            {"metadata": {"resourceVersion": metadata.get("resourceVersion")},
             "status": status}, subresource="status")
        self.writes += 1
        log.info("snapshot record %s/%s: readyToUse %s%s", namespace, name,
                 truth.ready_to_use, f" ({truth.error})" if truth.error else "")

    # ---- reads (from the copies; the content from the server, only to rebuild) ------------

    def _all_records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(namespaced_key(r), r) for c in self._records for r in c.values()]

    def _record(self, key: str) -> dict[str, Any] | None:
        for collection in self._records:
            if (found := collection.get(key)) is not None:
                return found
        return None

    def _volume_snapshot(self, key: str) -> dict[str, Any] | None:
        for collection in self._snapshots:
            if (found := collection.get(key)) is not None:
                return found
        return None

    def _content_of(self, record: dict[str, Any]) -> dict[str, Any] | None:
        metadata = record.get("metadata") or {}
        return self.cluster.get_custom_or_none(
            VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, str(metadata.get("namespace")),
            content_name(str(metadata.get("name"))))

    def _watch(self, group: str, version: str, plural: str, namespace: str | None,
               selector: str, on_event: Callable[[str, str | None], None]
               ) -> WatchedCollection:
        custom = self.cluster.custom
        call: Callable[..., Any]
        if namespace is None:
            call = functools.partial(custom.list_cluster_custom_object, group, version,
                                     plural, label_selector=selector)
            where = "every namespace"
        else:
            call = functools.partial(custom.list_namespaced_custom_object, group, version,
                                     namespace, plural, label_selector=selector)
            where = namespace
        return WatchedCollection(
            call, what=f"{plural} in {where}", key=namespaced_key, on_event=on_event,
            connect_timeout_seconds=self.cluster.connect_timeout_seconds,
            request_timeout_seconds=self.cluster.request_timeout_seconds)


def _created(record: dict[str, Any]) -> datetime:
    """The record's creationTimestamp (the epoch when unreadable: then it is old)."""
    stamp = str((record.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
