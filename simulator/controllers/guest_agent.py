"""The guest side of a running VMI: the QEMU guest agent's fs freeze, and pause/unpause.

Checked against KubeVirt (virt-api `FreezeVMI`, virt-handler `FreezeHandler`,
virt-launcher `FreezeVMI`/`UnfreezeVMI`):

- freeze/unfreeze of a VMI that is not `Running`: 409 (`VM is not running`,
  `VMI is not running`); virt-api checks only the phase.
- freeze needs a body with `unfreezeTimeout`, a Go duration string
  (`metav1.Duration`): missing or unreadable is 400. `0s` is accepted and means
  no safety net: the guest never thaws by itself.
- The guest agent answers the freeze: with no agent, or with the domain paused
  (libvirt: "domain is not running"), or with `sim.vmsnap.io/guest-agent:
  freeze-fails`, the freeze fails. Note: virt-handler answers these with 400
  and real virt-api forwards any virt-handler failure as a 500 InternalError;
  the simulator answers 400 as KubeVirt documents for the freeze API (inject a
  500 on the freeze route with `/sim/faults` to test the other).
- A freeze while frozen is a no-op that succeeds: no new log entry, and the
  pending self-thaw keeps its original time (virt-launcher returns early when
  the filesystems are already frozen, without touching its timer).
- unfreeze of a thawed guest succeeds (the agent is still asked, so it fails
  without an agent or on a paused domain, as for freeze).
- The guest thaws itself `unfreezeTimeout` after the freeze (thawed_by
  `timeout`), counted in whole seconds as virt-handler passes it on (so
  `500ms` means no self-thaw at all); a VMI that stops while frozen is thawed
  (thawed_by `stop`).
- `status.fsFreezeStatus` is `frozen` while frozen, absent otherwise (set at
  once here; virt-handler's agent poller shows it a little later).
- A guest with a limited freeze (`sim.vmsnap.io/freeze-limit`, as Windows VSS
  holds writes for 10s at most) thaws itself when the limit passes: the freeze
  log records that instant (thawed_by `freeze-limit`), but the guest agent
  still reports `frozen` (so does `fsFreezeStatus`, and a new freeze is the
  no-op above). The unfreeze that follows fails as virt-launcher's
  `UnfreezeVMI` does when `guest-fsfreeze-thaw` meets the lapsed VSS snapshot
  (QEMU guest agent: "couldn't hold writes: fsfreeze is limited up to 10
  seconds"; KubeVirt's snapshot controller looks for "fsfreeze is limited"),
  after which the agent reports thawed. The safety unfreeze meets the same
  failure and leaves the agent thawed too.
- pause: 409 when not Running or already paused; unpause: 409 `VMI is not
  paused`. A paused VMI carries condition `Paused=True`.

The freeze log has one entry per real freeze, with wall-clock instants in
RFC 3339 with microseconds.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from simulator import annotations as ann
from simulator.controllers import kubevirt_errors as errors
from simulator.controllers.runtime import (
    KUBEVIRT,
    Runtime,
    condition,
    rfc3339_micro,
    rfc3339_seconds,
)
from simulator.documents import copy_document
from simulator.durations import go_seconds

# Go duration strings repeat (the same annotations and timeouts on every request):
# parse each once. A bad one raises every time, with the same message.
_parsed_duration = functools.lru_cache(maxsize=256, typed=True)(go_seconds)

_VMI = "virtualmachineinstance"


def _libvirt_failure(command: str, code: int, message: str) -> str:
    """How virt-handler reports a failed launcher command."""
    return (
        f'server error. command {command} failed: "LibvirtError(Code={code}, Domain=10, '
        f"Message='{message}')\""
    )


_NO_AGENT = (86, "Guest agent is not responding: QEMU guest agent is not connected")
_NOT_RUNNING = (55, "Requested operation is not valid: domain is not running")
_FREEZE_FAILS = (
    1,
    "internal error: unable to execute QEMU agent command 'guest-fsfreeze-freeze': "
    "failed to freeze /: Device or resource busy",
)
# qga/vss-win32/requester.cpp (VSS_E_HOLD_WRITES_TIMEOUT), through libvirt; the Windows
# message qga appends after ": " is empty for that HRESULT.
_FREEZE_LAPSED = (
    1,
    "internal error: unable to execute QEMU agent command 'guest-fsfreeze-thaw': "
    "couldn't hold writes: fsfreeze is limited up to 10 seconds: ",
)


@dataclass
class _Freeze:
    namespace: str
    name: str
    entry: dict[str, Any]
    timer: asyncio.TimerHandle | None = field(default=None)
    limit_timer: asyncio.TimerHandle | None = field(default=None)
    # The guest thawed itself at its freeze limit; the agent still reports frozen.
    lapsed: bool = False


class GuestAgents:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._frozen: dict[str, _Freeze] = {}
        self._log: list[dict[str, Any]] = []

    # ---- what the agent is ---------------------------------------------------------

    def owner_vm(self, vmi: dict[str, Any]) -> dict[str, Any] | None:
        """The VMI's controlling VM, the stored object itself: to read only."""
        metadata = vmi["metadata"]
        for ref in metadata.get("ownerReferences") or []:
            if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                vm = self.rt.view(
                    KUBEVIRT, "virtualmachines", metadata.get("namespace"), ref["name"]
                )
                if vm is not None and vm["metadata"]["uid"] == ref.get("uid"):
                    return vm
        return None

    def mode(self, vmi: dict[str, Any]) -> ann.GuestAgent:
        """From the VMI's own annotation, else its VM's; connected when neither says."""
        for obj in (vmi, self.owner_vm(vmi)):
            if obj is not None and ann.GUEST_AGENT in ann.annotations_of(obj):
                try:
                    return ann.guest_agent(obj)
                except ann.AnnotationError as exc:
                    self.rt.record(
                        obj, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator"
                    )
                    return ann.GuestAgent.CONNECTED
        return ann.GuestAgent.CONNECTED

    def is_frozen(self, vmi: dict[str, Any]) -> bool:
        return vmi["metadata"]["uid"] in self._frozen

    def freeze_log(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self._log]

    # ---- subresources --------------------------------------------------------------

    def freeze(self, namespace: str, name: str, body: Any) -> None:
        vmi = self._running_vmi(namespace, name, "VM is not running")
        timeout = unfreeze_timeout_seconds(body)
        self._ask_agent(vmi, "Freeze")
        uid = vmi["metadata"]["uid"]
        if uid in self._frozen:
            return
        if self.mode(vmi) is ann.GuestAgent.FREEZE_FAILS:
            raise errors.bad_request(_libvirt_failure("Freeze", *_FREEZE_FAILS))
        limit = self._freeze_limit(vmi)
        entry = {
            "namespace": namespace,
            "vmi": name,
            "frozen_at": rfc3339_micro(),
            "thawed_at": None,
            "thawed_by": None,
            "unfreeze_timeout_seconds": timeout,
            "freeze_limit_seconds": limit,
        }
        self._log.append(entry)
        record = _Freeze(namespace, name, entry)
        if timeout > 0:
            record.timer = self.rt.call_later(timeout, lambda: self._thaw(uid, "timeout"))
        if limit is not None:
            record.limit_timer = self.rt.call_later(limit, lambda: self._lapse(uid))
        self._frozen[uid] = record
        self._write_freeze_status(namespace, name, uid, frozen=True)

    def unfreeze(self, namespace: str, name: str) -> None:
        vmi = self._running_vmi(namespace, name, "VMI is not running")
        self._ask_agent(vmi, "Unfreeze")
        uid = vmi["metadata"]["uid"]
        record = self._frozen.get(uid)
        self._thaw(uid, "unfreeze")
        if record is not None and record.lapsed:
            raise errors.bad_request(_libvirt_failure("Unfreeze", *_FREEZE_LAPSED))

    def pause(self, namespace: str, name: str) -> None:
        vmi = self._running_vmi(namespace, name, "VM is not running")
        if condition(vmi, "Paused") is not None:
            raise errors.conflict(_VMI, name, "VMI is already paused")
        vmi = copy_document(vmi)
        set_paused(vmi, True)
        self.rt.write_status(KUBEVIRT, "virtualmachineinstances", vmi, shared=True)

    def unpause(self, namespace: str, name: str) -> None:
        vmi = self._running_vmi(namespace, name, "VMI is not paused")
        if condition(vmi, "Paused") is None:
            raise errors.conflict(_VMI, name, "VMI is not paused")
        vmi = copy_document(vmi)
        set_paused(vmi, False)
        self.rt.write_status(KUBEVIRT, "virtualmachineinstances", vmi, shared=True)

    # ---- lifecycle -----------------------------------------------------------------

    def vmi_stopped(self, uid: str) -> None:
        """The VMI is shutting down or gone: a frozen guest is thawed by the stop."""
        self._thaw(uid, "stop", write_status=False)

    def stop(self) -> None:
        for record in self._frozen.values():
            for timer in (record.timer, record.limit_timer):
                if timer is not None:
                    timer.cancel()

    # ---- internals -----------------------------------------------------------------

    def _running_vmi(self, namespace: str, name: str, not_running: str) -> dict[str, Any]:
        """The stored VMI itself (to read only), if it is running."""
        vmi = self.rt.view(KUBEVIRT, "virtualmachineinstances", namespace, name)
        if vmi is None:
            raise errors.not_found(_VMI, name)
        if (vmi.get("status") or {}).get("phase") != "Running":
            raise errors.conflict(_VMI, name, not_running)
        return vmi

    def _ask_agent(self, vmi: dict[str, Any], command: str) -> None:
        """guest-fsfreeze-status, which every freeze and unfreeze starts with."""
        paused = condition(vmi, "Paused")
        if paused is not None and paused.get("status") == "True":
            raise errors.bad_request(_libvirt_failure(command, *_NOT_RUNNING))
        if self.mode(vmi) is ann.GuestAgent.ABSENT:
            raise errors.bad_request(_libvirt_failure(command, *_NO_AGENT))

    def _thaw(self, uid: str, by: str, *, write_status: bool = True) -> None:
        """The agent thaws (and reports thawed); the log keeps the first thaw of the guest."""
        record = self._frozen.pop(uid, None)
        if record is None:
            return
        for timer in (record.timer, record.limit_timer):
            if timer is not None:
                timer.cancel()
        if record.entry["thawed_at"] is None:
            record.entry["thawed_at"] = rfc3339_micro()
            record.entry["thawed_by"] = by
        if write_status:
            self._write_freeze_status(record.namespace, record.name, uid, frozen=False)

    def _lapse(self, uid: str) -> None:
        """The freeze limit passed: the guest's filesystems thaw (VSS gives up holding
        writes); the agent goes on reporting frozen until a thaw is asked of it."""
        record = self._frozen.get(uid)
        if record is None or record.lapsed:
            return
        record.lapsed = True
        record.limit_timer = None
        record.entry["thawed_at"] = rfc3339_micro()
        record.entry["thawed_by"] = "freeze-limit"

    def _freeze_limit(self, vmi: dict[str, Any]) -> float | None:
        """From the VMI's own annotation, else its VM's; None when neither sets one."""
        for obj in (vmi, self.owner_vm(vmi)):
            if obj is not None and ann.FREEZE_LIMIT in ann.annotations_of(obj):
                try:
                    return ann.freeze_limit(obj)
                except ann.AnnotationError as exc:
                    self.rt.record(
                        obj, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator"
                    )
                    return None
        return None

    def _write_freeze_status(self, namespace: str, name: str, uid: str, *, frozen: bool) -> None:
        vmi = self.rt.view(KUBEVIRT, "virtualmachineinstances", namespace, name)
        if vmi is None or vmi["metadata"]["uid"] != uid:
            return
        status = dict(vmi.get("status") or {})
        if frozen:
            status["fsFreezeStatus"] = "frozen"
        else:
            status.pop("fsFreezeStatus", None)
        self.rt.write_status(KUBEVIRT, "virtualmachineinstances", {**vmi, "status": status},
                             shared=True, owned_status=True)


def set_paused(vmi: dict[str, Any], paused: bool) -> None:
    status = vmi.setdefault("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Paused"]
    if paused:
        now = rfc3339_seconds()
        conditions.append(
            {
                "type": "Paused",
                "status": "True",
                "reason": "PausedByUser",
                "message": "VMI was paused by user",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
        )
    status["conditions"] = conditions


def unfreeze_timeout_seconds(body: Any) -> int:
    """Whole seconds in the body's `unfreezeTimeout` (a Go duration string), as virt-handler
    reads it."""
    if body is None or body == b"" or body == "":
        raise errors.bad_request("failed to retrieve unfreeze timeout")
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            raise errors.bad_request("failed to unmarshal unfreeze timeout") from None
    if not isinstance(body, dict):
        raise errors.bad_request("failed to unmarshal unfreeze timeout")
    value = body.get("unfreezeTimeout")
    if value is None:
        raise errors.bad_request("Unfreeze timeout in freeze request is not set")
    if not isinstance(value, str):
        raise errors.bad_request(
            "failed to unmarshal unfreeze timeout: unfreezeTimeout must be a duration string "
            f'such as "5m0s", not {json.dumps(value)}'
        )
    try:
        seconds = _parsed_duration(value)
    except ValueError as exc:
        raise errors.bad_request(f"failed to unmarshal unfreeze timeout: {exc}") from None
    if seconds < 0:
        raise errors.bad_request(
            f'failed to unmarshal unfreeze timeout: negative duration "{value}"')
    # virt-handler passes int32(timeout.Seconds()): a sub-second timeout is 0, no safety net.
    return int(seconds)
