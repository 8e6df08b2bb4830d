"""The console's actions: each starts what the CLI's verb starts, through the same SDK
call, so the same checks refuse the same requests and the same workflow ID is used.

A form's values become the contract's input model; a value the model refuses is an
`InvalidRequest` naming the field, and nothing is started. What an action started is
returned as an `Started` (the operation and the workflow ID the SDK gave), which the
console's operation page follows to its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from pydantic import ValidationError

from contracts.clone import CloneVirtualMachineInput
from contracts.restore import RestoreVirtualMachineInput
from contracts.snapshot import Quiesce, SnapshotVirtualMachineInput
from starter.sdk import InvalidRequest, VmsnapClient
from starter.sdk_errors import invalid

QUIESCE_CHOICES: list[Quiesce] = ["auto", "required", "skip"]
RUNNING_VM_POLICIES = ["fail", "stop"]
RUN_STRATEGIES = ["Halted", "Always", "Manual", "RerunOnFailure", "Once"]
ScheduleVerb = Literal["pause", "resume", "trigger"]


@dataclass(frozen=True)
class Started:
    operation: str
    workflow_id: str


def _text(form: Mapping[str, str], key: str) -> str | None:
    value = (form.get(key) or "").strip()
    return value or None


def _choice(form: Mapping[str, str], key: str, choices: list[str], default: str) -> str:
    value = _text(form, key) or default
    if value not in choices:
        raise InvalidRequest(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


async def snapshot(client: VmsnapClient, namespace: str, vm: str,
                   form: Mapping[str, str]) -> Started:
    try:
        request = SnapshotVirtualMachineInput(
            namespace=namespace, vm=vm, name=_text(form, "name"),
            quiesce=cast(Quiesce, _choice(form, "quiesce", list(QUIESCE_CHOICES), "auto")))
    except ValidationError as error:
        raise invalid(error) from None
    handle = await client.start_snapshot(request)
    return Started("snapshot", handle.workflow_id)


async def restore(client: VmsnapClient, namespace: str, snapshot: str,
                  form: Mapping[str, str]) -> Started:
    """In place (`mode=in-place`, with the running-VM policy) or to a new VM (`target`)."""
    mode = _choice(form, "mode", ["in-place", "new-vm"], "in-place")
    target = _text(form, "target") if mode == "new-vm" else None
    if mode == "new-vm" and target is None:
        raise InvalidRequest("target: a restore to a new VM needs the new VM's name")
    try:
        request = RestoreVirtualMachineInput(
            namespace=namespace, snapshot=snapshot, target=target,
            running_vm_policy=cast(Literal["fail", "stop"], _choice(
                form, "running_vm_policy", RUNNING_VM_POLICIES, "fail")))
    except ValidationError as error:
        raise invalid(error) from None
    handle = await client.start_restore(request)
    return Started("restore", handle.workflow_id)


async def clone(client: VmsnapClient, namespace: str, form: Mapping[str, str]) -> Started:
    """From a snapshot (`source_snapshot`) or from a VM (`source_vm`) to a new VM."""
    target = _text(form, "target")
    if target is None:
        raise InvalidRequest("target: a clone needs the new VM's name")
    try:
        request = CloneVirtualMachineInput(
            namespace=namespace, source_vm=_text(form, "source_vm"),
            source_snapshot=_text(form, "source_snapshot"), target=target,
            run_strategy=cast(Literal["Always", "Halted", "Manual", "RerunOnFailure", "Once"],
                              _choice(form, "run_strategy", RUN_STRATEGIES, "Halted")))
    except ValidationError as error:
        raise invalid(error) from None
    handle = await client.start_clone(request)
    return Started("clone", handle.workflow_id)


async def delete(client: VmsnapClient, namespace: str, snapshot: str) -> Started:
    handle = await client.start_delete(namespace, snapshot)
    return Started("delete", handle.workflow_id)


async def schedule(client: VmsnapClient, namespace: str, name: str, verb: ScheduleVerb,
                   user: str) -> str:
    """Pause, resume or trigger a schedule; one line saying what happened."""
    if verb == "pause":
        await client.pause_schedule(namespace, name, note=f"paused from the console by {user}")
        return f"schedule {name} paused: it starts no run until it is resumed"
    if verb == "resume":
        await client.unpause_schedule(namespace, name,
                                      note=f"resumed from the console by {user}")
        return f"schedule {name} resumed: it runs again from its next scheduled time"
    started = await client.trigger_schedule(namespace, name)
    if started is None:
        return f"schedule {name}: a run is in progress, so this one was skipped (overlap: skip)"
    return f"schedule {name} triggered: run {started} started"
