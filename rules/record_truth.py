"""What a snapshot record's status must say, given what its VolumeSnapshots say now.

A record is written by its workflow while the snapshot is taken; afterwards the world
moves on: storage that was slow makes a VolumeSnapshot ready hours later, a user deletes
one, the CSI driver reports an error on one, or the record's status is lost (restored
from a backup without it). The reconciler (`cluster.record_reconciler`) applies this rule
whenever one of those objects changes, so the record says the truth for as long as it
exists:

- readiness follows the VolumeSnapshots: ready when every one exists, is `readyToUse`
  and has no error; not ready otherwise, with the reason (the first missing one, or the
  driver's error);
- an error the record shows about readiness is cleared once they are all ready again;
  any other error (the workflow's own) is kept;
- a status that is gone is rebuilt from the content (which VolumeSnapshots, which
  volumes) and the VolumeSnapshots (the cut time); a record without a content stays as
  it is: nothing says what it held;
- while its workflow still follows readiness (within `readyDeadline` of the cut being
  taken), the record's readiness is the workflow's to write: only a VolumeSnapshot gone
  or in error is said at once (`followed_until` tells when to look again).

Pure: the reconciler reads, this decides, the reconciler writes only what changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rules.durations import parse_duration


def volume_snapshots_of(record: Mapping[str, Any], content: Mapping[str, Any] | None) -> list[str]:
    """The VolumeSnapshots the record stands for: its status's list, else its content's."""
    listed = (record.get("status") or {}).get("volumeSnapshots") or []
    if listed:
        return [str(n) for n in listed]
    backups = ((content or {}).get("spec") or {}).get("volumeBackups") or []
    return [str(b["volumeSnapshotName"]) for b in backups if b.get("volumeSnapshotName")]


@dataclass(frozen=True)
class RecordTruth:
    """What the record must say: readiness and the error shown; for a status that was
    gone, the rest of it too."""

    ready_to_use: bool
    error: str | None
    rebuilt: dict[str, Any] | None = None


def readiness(namespace: str, names: list[str],
              volume_snapshots: Mapping[str, Mapping[str, Any] | None]
              ) -> tuple[bool, str | None]:
    """(ready, why not) of a snapshot made of `names`; no reason while they only wait."""
    if not names:
        return False, None
    for name in names:
        found = volume_snapshots.get(name)
        if found is None or (found.get("metadata") or {}).get("deletionTimestamp"):
            gone = "was deleted" if found is None else "is being deleted"
            return False, (f"VolumeSnapshot {namespace}/{name} {gone}; the snapshot cannot "
                           "be restored from any more")
        error = (found.get("status") or {}).get("error") or {}
        if error.get("message"):
            return False, f"VolumeSnapshot {namespace}/{name}: {error['message']}"
    ready = all(bool(((volume_snapshots[n] or {}).get("status") or {}).get("readyToUse"))
                for n in names)
    return ready, None


def record_truth(record: Mapping[str, Any], content: Mapping[str, Any] | None,
                 volume_snapshots: Mapping[str, Mapping[str, Any] | None],
                 now: datetime | None = None) -> RecordTruth | None:
    """What the record must say now, or None when this rule has nothing to say.

    Only a record whose cut was taken (phase Succeeded), or whose status is gone, is
    looked at: while a snapshot is taken or after it failed, its workflow speaks. A
    Succeeded record's error is about readiness (the workflow writes no other there): it
    goes once every VolumeSnapshot is ready, and a waiting one keeps what it says.
    """
    metadata = record.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return None
    namespace = str(metadata.get("namespace") or "")
    status = record.get("status") or {}
    if not status:
        return _rebuilt(namespace, content, volume_snapshots)
    if status.get("phase") != "Succeeded":
        return None
    names = volume_snapshots_of(record, content)
    ready, why_not = readiness(namespace, names, volume_snapshots)
    until = followed_until(record)
    if why_not is None and now is not None and until is not None and now < until:
        return None  # its workflow follows readiness still
    shown = (status.get("error") or {}).get("message")
    error = None if ready else (why_not or shown)
    return RecordTruth(ready_to_use=ready, error=error)


def followed_until(record: Mapping[str, Any]) -> datetime | None:
    """When the snapshot's workflow stops following readiness (the cut's time plus the
    ready deadline), for a Succeeded record; None when it does not (deadline 0 follows
    for ever: `datetime.max`)."""
    status = record.get("status") or {}
    if status.get("phase") != "Succeeded":
        return None
    succeeded = next((c.get("lastTransitionTime") for c in status.get("conditions") or []
                      if c.get("type") == "Progressing" and c.get("reason") == "Succeeded"),
                     None)
    if not succeeded:
        return None
    try:
        seconds = parse_duration(str((record.get("spec") or {}).get("readyDeadline") or "0"))
        cut = datetime.fromisoformat(str(succeeded).replace("Z", "+00:00"))
    except ValueError:
        return None
    if seconds == 0:
        return datetime.max.replace(tzinfo=cut.tzinfo)
    return cut + timedelta(seconds=seconds)


def differs(record: Mapping[str, Any], truth: RecordTruth) -> bool:
    """Whether the record says something else than `truth`."""
    status = record.get("status") or {}
    if truth.rebuilt is not None:
        return not status
    return (bool(status.get("readyToUse")) != truth.ready_to_use
            or (status.get("error") or {}).get("message") != truth.error)


def _rebuilt(namespace: str, content: Mapping[str, Any] | None,
             volume_snapshots: Mapping[str, Mapping[str, Any] | None]) -> RecordTruth | None:
    if content is None:
        return None
    names = volume_snapshots_of({}, content)
    cut_times = [str(((volume_snapshots.get(n) or {}).get("status") or {}).get("creationTime")
                     or "") for n in names]
    cut = bool(names) and all(cut_times)
    ready, why_not = readiness(namespace, names, volume_snapshots)
    rebuilt: dict[str, Any] = {
        "phase": "Succeeded" if cut else "Unknown",
        "contentName": (content.get("metadata") or {}).get("name"),
        "volumeSnapshots": names,
        "includedVolumes": [str(b.get("volumeName")) for b in
                            ((content.get("spec") or {}).get("volumeBackups") or [])],
        "creationTime": max(cut_times) if cut else None,
    }
    return RecordTruth(ready_to_use=ready, error=why_not, rebuilt=rebuilt)
