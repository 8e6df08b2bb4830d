"""The `sim.vmsnap.io/*` annotations that seed the simulator's behaviour, and their parsing.

Seeds (and tests) steer the parts of the cluster that are absent with these
annotations; a real cluster ignores them. Where each one is read:

| annotation | on | values (default) |
| --- | --- | --- |
| `guest-agent` | VirtualMachine (or a bare VMI) | `connected` (default), `absent`, `freeze-fails` |
| `paused` | VirtualMachine | `"true"`: the VMI starts paused (`"false"`) |
| `start-latency` | VirtualMachine | VMI creation to `Running` (`50ms`) |
| `stop-latency` | VirtualMachine | VMI deletion to gone (`20ms`) |
| `cut-latency` | VolumeSnapshotClass, or the source PVC | content to `creationTime` (`50ms`) |
| `ready-latency` | VolumeSnapshotClass, or the source PVC | the cut to `readyToUse` (`100ms`) |
| `bind-latency` | StorageClass, VolumeSnapshotClass, or the PVC | claim to Bound (`50ms`) |
| `fail` | VolumeSnapshotClass, or the source PVC | `never-cut`, `never-ready`, `error` |
| `cut-latency` | VolumeGroupSnapshotClass | the group content to its one cut (`50ms`) |
| `ready-latency` | VolumeGroupSnapshotClass | the cut to `readyToUse`, members first (`100ms`) |
| `fail` | VolumeGroupSnapshotClass | `never-cut`, `never-ready`, `error` for the group |
| `import-latency` | DataVolume (or a VM's template) | bind to `Succeeded`: import, copy (`200ms`) |
| `freeze-limit` | VirtualMachine (or a bare VMI) | a freeze to the guest's own thaw (none) |

Latencies are Go durations (`200ms`, `1.5s`). `freeze-limit` is how long the
guest holds a freeze before it thaws itself, as Windows VSS does after 10s.
For `bind-latency` the PVC's own annotation comes first, then the
VolumeSnapshotClass of the snapshot it is restored from, then its StorageClass.
A PVC's own annotation wins over its class's: one slow or failing disk among
several is then easy to seed. A VolumeGroupSnapshot has one cut for all its
volumes: only its VolumeGroupSnapshotClass steers it, with the same names and
parser (`first_latency`, `snapshot_failure`); `never-cut` leaves the group
without `creationTime` or members, `never-ready` cuts it and makes its members
but never sets `readyToUse`, `error` fails CreateVolumeGroupSnapshot. A value
that does not parse is reported (the controllers record a Warning Event naming
it) and the default is used.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import Enum, StrEnum
from typing import Any

from simulator.durations import setting_seconds

# Go duration strings repeat (the same annotations and timeouts on every request):
# parse each once. A bad one raises every time, with the same message.
_parsed_duration = functools.lru_cache(maxsize=256, typed=True)(setting_seconds)

PREFIX = "sim.vmsnap.io/"
GUEST_AGENT = PREFIX + "guest-agent"
PAUSED = PREFIX + "paused"
START_LATENCY = PREFIX + "start-latency"
STOP_LATENCY = PREFIX + "stop-latency"
CUT_LATENCY = PREFIX + "cut-latency"
READY_LATENCY = PREFIX + "ready-latency"
BIND_LATENCY = PREFIX + "bind-latency"
FAIL = PREFIX + "fail"
IMPORT_LATENCY = PREFIX + "import-latency"
FREEZE_LIMIT = PREFIX + "freeze-limit"

DEFAULT_LATENCIES: dict[str, float] = {
    START_LATENCY: 0.05,
    STOP_LATENCY: 0.02,
    CUT_LATENCY: 0.05,
    READY_LATENCY: 0.1,
    BIND_LATENCY: 0.05,
    IMPORT_LATENCY: 0.2,
}


class AnnotationError(ValueError):
    """An annotation value that does not parse; the message names the annotation."""


class GuestAgent(StrEnum):
    CONNECTED = "connected"
    ABSENT = "absent"
    FREEZE_FAILS = "freeze-fails"


class SnapshotFailure(StrEnum):
    NEVER_CUT = "never-cut"
    NEVER_READY = "never-ready"
    ERROR = "error"


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    if not obj:
        return {}
    return (obj.get("metadata") or {}).get("annotations") or {}


def _choice(value: str, name: str, enum: type[Enum]) -> Any:
    allowed = ", ".join(str(member.value) for member in enum)
    try:
        return enum(value.strip())
    except ValueError:
        raise AnnotationError(f'annotation {name}: "{value}" is not one of {allowed}') from None


def guest_agent(obj: Mapping[str, Any] | None) -> GuestAgent:
    """The guest agent's state; an absent annotation means a connected agent."""
    value = annotations_of(obj).get(GUEST_AGENT)
    if value is None:
        return GuestAgent.CONNECTED
    return GuestAgent(_choice(value, GUEST_AGENT, GuestAgent))


def paused(obj: Mapping[str, Any] | None) -> bool:
    value = annotations_of(obj).get(PAUSED)
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise AnnotationError(f'annotation {PAUSED}: "{value}" is not "true" or "false"')


def snapshot_failure(obj: Mapping[str, Any] | None) -> SnapshotFailure | None:
    value = annotations_of(obj).get(FAIL)
    if value is None or not value.strip():
        return None
    return SnapshotFailure(_choice(value, FAIL, SnapshotFailure))


def latency(obj: Mapping[str, Any] | None, name: str) -> float | None:
    """Seconds set by the latency annotation `name` on `obj`, or None when it is absent."""
    if name not in DEFAULT_LATENCIES:
        raise KeyError(f"{name} is not a latency annotation")
    value = annotations_of(obj).get(name)
    if value is None:
        return None
    try:
        return _parsed_duration(value)
    except ValueError as exc:
        raise AnnotationError(f"annotation {name}: {exc}") from None


def freeze_limit(obj: Mapping[str, Any] | None) -> float | None:
    """Seconds the guest holds a freeze before it thaws itself; None: no limit."""
    value = annotations_of(obj).get(FREEZE_LIMIT)
    if value is None or not value.strip():
        return None
    try:
        return _parsed_duration(value)
    except ValueError as exc:
        raise AnnotationError(f"annotation {FREEZE_LIMIT}: {exc}") from None


def first_latency(name: str, *objs: Mapping[str, Any] | None) -> float:
    """The first of `objs` that sets latency `name` decides; else the default.

    Raises AnnotationError for a value that does not parse, so the caller can
    report it before falling back to `default_latency(name)`.
    """
    for obj in objs:
        value = latency(obj, name)
        if value is not None:
            return value
    return DEFAULT_LATENCIES[name]


def default_latency(name: str) -> float:
    return DEFAULT_LATENCIES[name]
