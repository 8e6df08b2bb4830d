"""Kubernetes `v1` Events on a VirtualMachine, as KubeVirt records them for its snapshots.

Operators see what vmsnap did to a VM where they already look: `kubectl
describe vm` and `kubectl get events`. Each Event names the VM with its uid
(so it follows that VM, not a later one of the same name), says who reported
it (`reportingComponent: vmsnap`, `source.component: vmsnap`), and may point
at the vmsnap record it is about (`related`).

Names are deterministic (the VM, then a digest of the operation and the
reason), so a retried activity finds its own Event: AlreadyExists is success.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cluster.apis import VIRTUAL_MACHINES, KubeApis, core_path
from cluster.errors import AlreadyExists, translated_errors

EventType = Literal["Normal", "Warning"]
REPORTING_COMPONENT = "vmsnap"
MAX_MESSAGE = 1024  # events.k8s.io's limit on `note`; kubectl shows it whole
_REASON = re.compile(r"[A-Z][A-Za-z0-9]{0,127}")
_MAX_NAME = 253


@dataclass(frozen=True)
class Related:
    """The object an Event is also about (a vmsnap snapshot record, say)."""

    api_version: str
    kind: str
    name: str


def event_name(vm: str, operation: str, reason: str) -> str:
    """`<vm>.<16 hex>`: one Event per (operation, reason), stable across retries."""
    digest = hashlib.sha256(f"{operation}\x00{reason}".encode()).hexdigest()[:16]
    return f"{vm[:_MAX_NAME - 17]}.{digest}"


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reporting_instance() -> str:
    """This worker: the pod name in a cluster (HOSTNAME), else the host name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def vm_event_body(
    vm: dict[str, Any],
    *,
    operation: str,
    reason: str,
    message: str,
    type: EventType,
    action: str,
    related: Related | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Event for `vm` (as read from the server: its uid is required).

    ValueError on a reason that is not CamelCase, a type other than Normal or
    Warning, an empty message or operation, or a VM without name or uid.
    """
    metadata = vm.get("metadata") or {}
    name, namespace, uid = (str(metadata.get(k) or "") for k in ("name", "namespace", "uid"))
    if not (name and namespace and uid):
        raise ValueError("the VM needs metadata.name, .namespace and .uid for an Event")
    if not _REASON.fullmatch(reason):
        raise ValueError(f"event reason {reason!r} must be CamelCase letters and digits")
    if type not in ("Normal", "Warning"):
        raise ValueError(f"event type {type!r} must be Normal or Warning")
    if not message.strip() or not operation.strip() or not action.strip():
        raise ValueError("an Event needs a message, an operation and an action")
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    stamp = _timestamp(now or datetime.now(UTC))
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(name, operation, reason), "namespace": namespace},
        "involvedObject": {
            "apiVersion": VIRTUAL_MACHINES.api_version,
            "kind": VIRTUAL_MACHINES.kind,
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "reason": reason,
        "message": message,
        "type": type,
        "action": action,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": reporting_instance(),
    }
    if related is not None:
        body["related"] = {"apiVersion": related.api_version, "kind": related.kind,
                           "name": related.name, "namespace": namespace}
    return body


class EventOperations(KubeApis):
    """Create Events on VMs (`create events` in the core group: the only verb needed)."""

    def create_event(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Event; (the Event as sent or stored, whether this call created it).

        AlreadyExists is success: the same operation already reported this reason.
        """
        namespace = str(body["metadata"]["namespace"])
        name = str(body["metadata"]["name"])
        try:
            with translated_errors(f"create Event {namespace}/{name}"):
                return dict(self.request_json(
                    "POST", core_path("events", namespace), body=body)), True
        except AlreadyExists:
            return body, False
