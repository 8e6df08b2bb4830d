"""`vmsnap snapshot create|list|get|delete|cancel|plan`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts.snapshot import (
    DeletionPolicy,
    GroupSnapshotMode,
    Quiesce,
    SnapshotVirtualMachineInput,
    SnapshotVirtualMachineResult,
)
from starter.cli_common import (
    EXIT_FAILED,
    AllNamespacesOption,
    ListOutput,
    ListOutputOption,
    NamespaceOption,
    Output,
    OutputOption,
    SelectorOption,
    age,
    build,
    check_duration,
    check_name,
    check_selector,
    console,
    emit_data,
    parse_labels,
    resolve_namespace,
    run,
    show,
    table,
)
from starter.plan import SnapshotPlan
from starter.progress import follow_snapshot
from starter.sdk import SnapshotFailed, SnapshotInfo, VmsnapClient

app = typer.Typer(help="Take, list, inspect and delete VM snapshots.", no_args_is_help=True)

SNAPSHOT_FLAGS = {"namespace": "--namespace", "vm": "", "name": "--name",
                  "failure_deadline": "--deadline", "ready_deadline": "--ready-deadline",
                  "labels": "--label", "quiesce": "--quiesce",
                  "deletion_policy": "--deletion-policy", "freeze_budget": "--freeze-budget",
                  "fail_if_locked": "--fail-if-locked", "group_snapshot": "--group-snapshot"}

QuiesceOption = Annotated[str, typer.Option(
    "--quiesce", help="auto (freeze when possible) | required | skip")]


def _group_snapshot(value: str) -> GroupSnapshotMode:
    if value not in ("auto", "required", "never"):
        typer.echo(f"error: --group-snapshot {value!r}: use auto, required or never", err=True)
        raise typer.Exit(2)
    return value  # type: ignore[return-value]


def _quiesce(value: str) -> Quiesce:
    if value not in ("auto", "required", "skip"):
        typer.echo(f"error: --quiesce {value!r}: use auto, required or skip", err=True)
        raise typer.Exit(2)
    return value  # type: ignore[return-value]


@app.command("create")
def create(
    ctx: typer.Context,
    vm: Annotated[str, typer.Argument(help="the VirtualMachine", metavar="VM")],
    name: Annotated[str | None, typer.Option(
        help="snapshot name (default: VM-YYYYMMDD-HHMMSS)")] = None,
    deadline: Annotated[str, typer.Option(
        "--deadline", help="failure deadline for the cut (Go duration; 0 = none)")] = "5m",
    ready_deadline: Annotated[str, typer.Option(
        help="bound on readiness after the cut (0 = none)")] = "1h",
    quiesce: QuiesceOption = "auto",
    deletion_policy: Annotated[str, typer.Option(
        help="Delete | Retain: what deleting the snapshot does to its VolumeSnapshots")
    ] = "Delete",
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="key=value on the records (repeatable; -l selects, on list verbs)")
    ] = None,
    freeze_budget: Annotated[str | None, typer.Option(
        help="longest the guest may stay frozen (Go duration, 1s-5m; default: the VM's "
        "vmsnap.io/freeze-budget annotation, else 10s)")] = None,
    fail_if_locked: Annotated[bool, typer.Option(
        "--fail-if-locked", help="fail at once when another operation holds the VM, "
        "instead of waiting for it within the deadline")] = False,
    group_snapshot: Annotated[str, typer.Option(
        "--group-snapshot", help="auto (one VolumeGroupSnapshot per CSI driver with a "
        "default group class, for 2+ disks) | required (every disk in a group) | never")
    ] = "auto",
    wait: Annotated[bool, typer.Option(
        "--wait", help="follow progress and wait until ready; non-zero exit on failure")
    ] = False,
    check: Annotated[bool, typer.Option(
        help="check the VM and its disks first (needs a kubeconfig)")] = True,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Snapshot a VM (SnapshotVirtualMachine)."""
    ns = resolve_namespace(ctx, namespace)
    check_duration(deadline, "--deadline")
    check_duration(ready_deadline, "--ready-deadline")
    if freeze_budget is not None:
        check_duration(freeze_budget, "--freeze-budget")
    if deletion_policy not in ("Delete", "Retain"):
        typer.echo(f"error: --deletion-policy {deletion_policy!r}: use Delete or Retain",
                   err=True)
        raise typer.Exit(2)
    policy: DeletionPolicy = "Retain" if deletion_policy == "Retain" else "Delete"
    request = build(SnapshotVirtualMachineInput, SNAPSHOT_FLAGS, namespace=ns, vm=vm, name=name,
                    failure_deadline=deadline, ready_deadline=ready_deadline,
                    quiesce=_quiesce(quiesce), deletion_policy=policy,
                    labels=parse_labels(label), freeze_budget=freeze_budget,
                    fail_if_locked=fail_if_locked, group_snapshot=_group_snapshot(group_snapshot))

    async def work(client: VmsnapClient) -> int:
        handle = await client.start_snapshot(request, check=check)
        out = console()
        info = console(err=output is not Output.table)
        info.print(f"snapshot {ns}/{handle.name} of VM {vm} started "
                   f"(workflow {handle.workflow_id}, task queue {client.task_queue})")
        if not wait:
            if output is not Output.table:
                emit_data({"namespace": ns, "name": handle.name, "vm": vm,
                           "workflow_id": handle.workflow_id, "run_id": handle.run_id}, output)
            return 0
        try:
            result = await follow_snapshot(handle, info)
        except SnapshotFailed as failure:
            if output is not Output.table and failure.result is not None:
                emit_data(failure.result, output)
            typer.echo(f"error: snapshot {ns}/{handle.name} failed: {failure.message} "
                       f"({failure.error_type})", err=True)
            return EXIT_FAILED
        if output is Output.table:
            print_result(out, result)
        else:
            emit_data(result, output)
        return 0

    run(ctx, work)


def print_result(out: Console, result: SnapshotVirtualMachineResult) -> None:
    ready = "ready to use" if result.ready_to_use else "not ready"
    out.print(f"snapshot {result.namespace}/{result.name}: {result.phase}, {ready}")
    out.print(f"  indications:  {', '.join(result.indications) or 'none'}")
    out.print(f"  consistency:  {result.consistency or '-'}")
    out.print(f"  disks cut:    {result.volume_consistency or '-'}")
    for group in result.groups:
        out.print(f"  group     {group.name} (class {group.group_class}, driver "
                  f"{group.driver}): {', '.join(group.volumes)}")
    frozen = (f"{result.freeze_window_ms} ms" if result.freeze_window_ms is not None
              else "not frozen")
    out.print(f"  freeze window: {frozen}")
    for volume in result.included_volumes:
        out.print(f"  included  {volume.volume_name} (PVC {volume.pvc_name}, class "
                  f"{volume.snapshot_class}) -> {volume.volume_snapshot}"
                  + (f" (group {volume.group})" if volume.group else ""))
    for excluded in result.excluded_volumes:
        out.print(f"  excluded  {excluded.volume_name}: {excluded.reason}")


@app.command("list")
def list_(
    ctx: typer.Context,
    vm: Annotated[str | None, typer.Option(help="only this VM's snapshots")] = None,
    schedule: Annotated[str | None, typer.Option(help="only this schedule's snapshots")] = None,
    selector: SelectorOption = None,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    output: ListOutputOption = ListOutput.table,
) -> None:
    """List snapshots (from the vmsnap.io records in the cluster)."""
    ns = None if all_namespaces else resolve_namespace(ctx, namespace)
    if vm is not None:
        check_name(vm, "vm")
    if schedule is not None:
        check_name(schedule, "schedule", subdomain=False)
    selector = check_selector(selector)

    async def work(client: VmsnapClient) -> int:
        infos = await client.list_snapshots(ns, vm=vm, schedule=schedule, selector=selector)
        if not output.is_table:
            emit_data(infos, output)
            return 0
        if not infos:
            where = "any namespace" if ns is None else f"namespace {ns}"
            typer.echo(f"No snapshots found in {where}.", err=True)
            return 0
        show(snapshot_table(infos, all_namespaces=ns is None,
                            wide=output is ListOutput.wide))
        return 0

    run(ctx, work)


SNAPSHOT_COLUMNS = ["NAME", "VM", "PHASE", "READY", "INDICATIONS", "FREEZE", "VOLUMES", "AGE"]
# -o wide: how it was taken and what owns it, before the free-text ERROR.
SNAPSHOT_WIDE_COLUMNS = ["QUIESCE", "CONSISTENCY", "DEADLINE", "DELETION", "CUT AT", "SCHEDULE",
                         "WORKFLOW"]


def snapshot_table(infos: list[SnapshotInfo], *, all_namespaces: bool = False,
                   wide: bool = False) -> Table:
    """`snapshot list`: kubectl's columns (NAMESPACE with -A; more with -o wide)."""
    columns = [*SNAPSHOT_COLUMNS, *(SNAPSHOT_WIDE_COLUMNS if wide else []), "ERROR"]
    result = table(["NAMESPACE", *columns] if all_namespaces else columns)
    now = datetime.now(UTC)
    for info in infos:
        row = [*_snapshot_row(info, now), *(_snapshot_wide_row(info) if wide else []),
               (info.error or "")[:80]]
        result.add_row(*([info.namespace, *row] if all_namespaces else row))
    return result


def _snapshot_row(info: SnapshotInfo, now: datetime) -> list[str]:
    return [info.name, info.vm, info.phase or "-", "true" if info.ready_to_use else "false",
            ",".join(info.indications) or "-",
            f"{info.freeze_window_ms}ms" if info.freeze_window_ms is not None else "-",
            str(len(info.included_volumes)),
            age((now - info.created).total_seconds() if info.created else None)]


def _snapshot_wide_row(info: SnapshotInfo) -> list[str]:
    cut = (info.creation_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
           if info.creation_time else "-")
    return [info.quiesce or "-", info.consistency or "-", info.failure_deadline or "-",
            info.deletion_policy or "-", cut, info.schedule or "-", info.workflow_id or "-"]


@app.command("get")
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the snapshot", metavar="NAME")],
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show one snapshot: phase, readiness, indications, volumes, freeze window, progress."""
    ns = resolve_namespace(ctx, namespace)
    check_name(name, "snapshot name")

    async def work(client: VmsnapClient) -> int:
        info = await client.get_snapshot(ns, name)
        if output is not Output.table:
            emit_data(info, output)
            return 0
        out = console()
        out.print(f"Name:           {info.name}")
        out.print(f"Namespace:      {info.namespace}")
        out.print(f"VM:             {info.vm}")
        out.print(f"Phase:          {info.phase or '-'}")
        out.print(f"Ready to use:   {str(info.ready_to_use).lower()}")
        out.print(f"Indications:    {', '.join(info.indications) or '-'}")
        out.print(f"Consistency:    {info.consistency or '-'}")
        out.print(f"Disks cut:      {info.volume_consistency or '-'}")
        for group in info.groups:
            cut = group.creation_time.isoformat() if group.creation_time else "not cut"
            out.print(f"Group:          {group.name} (class {group.group_class or '-'}, "
                      f"driver {group.driver or '-'}, {cut}): {', '.join(group.volumes)}")
        frozen = (f"{info.freeze_window_ms} ms" if info.freeze_window_ms is not None
                  else "not frozen")
        out.print(f"Freeze window:  {frozen}")
        out.print(f"Created:        {info.created.isoformat() if info.created else '-'}")
        out.print(f"Cut taken at:   "
                  f"{info.creation_time.isoformat() if info.creation_time else '-'}")
        out.print(f"Deletion:       {info.deletion_policy or '-'}")
        if info.schedule:
            out.print(f"Schedule:       {info.schedule}")
        out.print(f"Workflow:       {info.workflow_id or '-'}")
        if info.error:
            out.print(f"Error:          {info.error}")
        out.print("Volumes:")
        for volume in info.included_volumes:
            out.print(f"  included  {volume}")
        for excluded in info.excluded_volumes:
            out.print(f"  excluded  {excluded.volume_name}: {excluded.reason}")
        if info.volume_snapshots:
            out.print(f"VolumeSnapshots: {', '.join(info.volume_snapshots)}")
        if info.progress is not None:
            from starter.progress import plain_line

            out.print(f"Progress:       {plain_line(info.progress)}")
        return 0

    run(ctx, work)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the snapshot", metavar="NAME")],
    wait: Annotated[bool, typer.Option(help="wait until it is gone")] = True,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Delete a snapshot: its VolumeSnapshots (unless Retain), content and record."""
    ns = resolve_namespace(ctx, namespace)
    check_name(name, "snapshot name")

    async def work(client: VmsnapClient) -> int:
        handle = await client.start_delete(ns, name)
        if not wait:
            console(err=output is not Output.table).print(
                f"deletion of snapshot {ns}/{name} started (workflow {handle.workflow_id})")
            return 0
        result = await handle.result()
        if output is not Output.table:
            emit_data(result, output)
            return 0
        retained = (f", VolumeSnapshots retained: {', '.join(result.retained_volume_snapshots)}"
                    if result.retained_volume_snapshots else "")
        console().print(f"snapshot {ns}/{name} deleted "
                        f"({len(result.deleted_volume_snapshots)} VolumeSnapshot(s) deleted"
                        f"{retained})")
        return 0

    run(ctx, work)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the snapshot being taken", metavar="NAME")],
    namespace: NamespaceOption = None,
) -> None:
    """Cancel a snapshot in progress: it thaws, cleans up and ends Failed (canceled)."""
    ns = resolve_namespace(ctx, namespace)
    check_name(name, "snapshot name")

    async def work(client: VmsnapClient) -> int:
        await client.cancel_snapshot(ns, name)
        console().print(f"cancellation of snapshot {ns}/{name} requested")
        return 0

    run(ctx, work)


@app.command("plan")
def plan(
    ctx: typer.Context,
    vm: Annotated[str, typer.Argument(help="the VirtualMachine", metavar="VM")],
    quiesce: QuiesceOption = "auto",
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Dry run: what a snapshot of VM would do now. Changes nothing; exit 1 if impossible."""
    ns = resolve_namespace(ctx, namespace)
    check_name(vm, "vm")
    mode = _quiesce(quiesce)

    async def work(client: VmsnapClient) -> int:
        result = await client.plan_snapshot(ns, vm, mode)
        if output is not Output.table:
            emit_data(result, output)
        else:
            print_plan(console(), result)
        return 0 if result.possible else EXIT_FAILED

    run(ctx, work)


def print_plan(out: Console, plan: SnapshotPlan) -> None:
    agent = {True: "connected", False: "not connected", None: "n/a (not running)"}[
        plan.guest_agent]
    out.print(f"VM {plan.namespace}/{plan.vm}: {plan.state}"
              f" (status {plan.printable_status or '-'}, runStrategy {plan.run_strategy or '-'})")
    out.print(f"  guest agent:  {agent}")
    freeze = "yes" if plan.will_freeze else "no"
    out.print(f"  freeze:       {freeze} (quiesce {plan.quiesce}; "
              f"{plan.consistency}-consistent)")
    out.print(f"  indications:  {', '.join(plan.indications) or 'none'}")
    disks = table(["VOLUME", "SNAPSHOT", "PVC", "STORAGECLASS", "VOLUMESNAPSHOTCLASS",
                   "REASON"])
    for disk in plan.disks:
        disks.add_row(disk.volume_name, "include" if disk.included else "exclude",
                      disk.pvc_name or "-", disk.storage_class or "-",
                      disk.snapshot_class or "-",
                      ("hot-plugged" if disk.hotpluggable else "") if disk.included
                      else disk.reason or "")
    show(disks)
    for warning in plan.warnings:
        out.print(f"warning: {warning}")
    if plan.possible:
        out.print(f"snapshot possible: {sum(d.included for d in plan.disks)} disk(s)")
    else:
        out.print(f"snapshot not possible: {'; '.join(plan.problems)}")
