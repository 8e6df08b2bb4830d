"""`vmsnap schedule create|list|get|delete|pause|unpause|trigger`: Temporal Schedules that
snapshot VMs and prune old snapshots (workflow `ScheduledVirtualMachineSnapshots`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts.schedule import ScheduledSnapshotInput, ScheduledSnapshotResult
from contracts.snapshot import DeletionPolicy, Quiesce
from rules.durations import format_go_duration
from starter.cli_common import (
    EXIT_FAILED,
    AllNamespacesOption,
    ListOutput,
    ListOutputOption,
    NamespaceOption,
    Output,
    OutputOption,
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
    usage_error,
)
from starter.cli_selectors import selector_matches
from starter.sdk import (
    ScheduledRunFailed,
    ScheduleInfo,
    ScheduleTiming,
    VmsnapClient,
)

app = typer.Typer(help="Snapshot VMs on a schedule, keeping the newest N.",
                  no_args_is_help=True)

INPUT_FLAGS = {"schedule": "", "namespace": "--namespace", "vm": "--vm",
               "selector": "--selector", "keep": "--keep", "failure_deadline": "--deadline",
               "quiesce": "--quiesce", "labels": "--label", "deletion_policy":
               "--deletion-policy", "max_parallel": "--max-parallel"}
TIMING_FLAGS = {"cron": "--cron", "every": "--every", "jitter": "--jitter",
                "time_zone": "--time-zone"}

NameArgument = Annotated[str, typer.Argument(help="the schedule's name", metavar="NAME")]


def _name(name: str) -> str:
    return check_name(name, "schedule name", subdomain=False)


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArgument,
    vm: Annotated[str | None, typer.Option(help="snapshot this VM ...")] = None,
    selector: Annotated[str | None, typer.Option(
        "--selector", "-l", help="... or every VM matching this label selector (app=web)")
    ] = None,
    cron: Annotated[str | None, typer.Option(help='cron expression, e.g. "0 2 * * *"')] = None,
    every: Annotated[str | None, typer.Option(help="fixed interval, e.g. 6h")] = None,
    keep: Annotated[int | None, typer.Option(
        help="good snapshots to keep per VM; older ones are pruned")] = None,
    jitter: Annotated[str | None, typer.Option(
        help="spread start times randomly by up to this much, e.g. 5m")] = None,
    time_zone: Annotated[str | None, typer.Option(help="time zone of --cron (default UTC)")
                         ] = None,
    deadline: Annotated[str, typer.Option(help="failure deadline of each snapshot")] = "5m",
    quiesce: Annotated[str, typer.Option(help="auto | required | skip")] = "auto",
    deletion_policy: Annotated[str, typer.Option(help="Delete | Retain")] = "Delete",
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="key=value on each snapshot (repeatable)")] = None,
    max_parallel: Annotated[int, typer.Option(help="VMs snapshotted at once")] = 4,
    paused: Annotated[bool, typer.Option(help="create it paused")] = False,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Create a schedule (overlap policy: skip a run while the previous one runs)."""
    ns = resolve_namespace(ctx, namespace)
    _name(name)
    if (vm is None) == (selector is None):
        usage_error("give exactly one of --vm and --selector")
    if (cron is None) == (every is None):
        usage_error("give exactly one of --cron and --every")
    if keep is None:
        usage_error("--keep is required: how many good snapshots to keep per VM")
    check_duration(deadline, "--deadline")
    check_duration(every, "--every")
    check_duration(jitter, "--jitter")
    if quiesce not in ("auto", "required", "skip"):
        usage_error(f"--quiesce {quiesce!r}: use auto, required or skip")
    if deletion_policy not in ("Delete", "Retain"):
        usage_error(f"--deletion-policy {deletion_policy!r}: use Delete or Retain")
    mode: Quiesce = quiesce  # type: ignore[assignment]
    policy: DeletionPolicy = "Retain" if deletion_policy == "Retain" else "Delete"
    timing = build(ScheduleTiming, TIMING_FLAGS, cron=cron, every=every, jitter=jitter or 0,
                   time_zone=time_zone)
    request = build(ScheduledSnapshotInput, INPUT_FLAGS, schedule=name, namespace=ns, vm=vm,
                    selector=selector, keep=keep, failure_deadline=deadline, quiesce=mode,
                    deletion_policy=policy, labels=parse_labels(label),
                    max_parallel=max_parallel)

    async def work(client: VmsnapClient) -> int:
        info = await client.create_schedule(request, timing, paused=paused)
        if output is not Output.table:
            emit_data(info, output)
            return 0
        out = console()
        out.print(f"schedule {ns}/{name} created (Temporal schedule {info.schedule_id}): "
                  f"{request.target}, {timing.describe()}, keep {keep}"
                  + (", paused" if paused else ""))
        if selector and client.has_cluster():
            matched = await client.select_vms(ns, selector)
            out.print(f"  the selector matches {len(matched)} VM(s) now: "
                      f"{', '.join(matched) or '-'}")
        if info.next_runs:
            out.print(f"  next run: {info.next_runs[0].isoformat()}")
        return 0

    run(ctx, work)


@app.command("list")
def list_(
    ctx: typer.Context,
    selector: Annotated[str | None, typer.Option(
        "--selector", "-l", help="label selector on the labels each schedule puts on its "
        "snapshots (--label, and schedule.vmsnap.io/name)", show_default=False)] = None,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    output: ListOutputOption = ListOutput.table,
) -> None:
    """List vmsnap schedules (Temporal visibility: a new one may take a second to show)."""
    ns = None if all_namespaces else resolve_namespace(ctx, namespace)
    selector = check_selector(selector)

    async def work(client: VmsnapClient) -> int:
        infos = [info for info in await client.list_schedules(ns)
                 if selector is None or selector_matches(selector, info.labels)]
        if not output.is_table:
            emit_data(infos, output)
            return 0
        if not infos:
            typer.echo("No schedules found.", err=True)
            return 0
        show(schedule_table(infos, all_namespaces=ns is None,
                            wide=output is ListOutput.wide))
        return 0

    run(ctx, work)


def _when(info: ScheduleInfo) -> str:
    return info.timing.describe() if info.timing else "-"


SCHEDULE_COLUMNS = ["NAME", "TARGET", "WHEN", "KEEP", "PAUSED", "LAST RUN", "LAST STATUS",
                    "NEXT RUN"]
# -o wide: how each snapshot is taken, how often it ran, and its Temporal schedule.
SCHEDULE_WIDE_COLUMNS = ["QUIESCE", "DEADLINE", "RUNS", "SKIPPED", "RUNNING", "LABELS",
                         "SCHEDULE ID"]


def schedule_table(infos: list[ScheduleInfo], *, all_namespaces: bool = False,
                   wide: bool = False) -> Table:
    """`schedule list`: NAMESPACE with -A, more columns with -o wide."""
    columns = [*SCHEDULE_COLUMNS, *(SCHEDULE_WIDE_COLUMNS if wide else [])]
    result = table(["NAMESPACE", *columns] if all_namespaces else columns)
    now = datetime.now(UTC)
    for info in infos:
        row = [*_schedule_row(info, now), *(_schedule_wide_row(info) if wide else [])]
        result.add_row(*([info.namespace, *row] if all_namespaces else row))
    return result


def _schedule_row(info: ScheduleInfo, now: datetime) -> list[str]:
    last = info.recent_runs[-1] if info.recent_runs else None
    started = last.started_at if last else None
    return [info.name, f"vm {info.vm}" if info.vm else f"selector {info.selector}",
            _when(info), str(info.keep), str(info.paused).lower(),
            f"{age((now - started).total_seconds())} ago" if started else "-",
            (last.status or "-").lower() if last else "-",
            info.next_runs[0].strftime("%Y-%m-%dT%H:%M:%SZ") if info.next_runs
            and not info.paused else "-"]


def _schedule_wide_row(info: ScheduleInfo) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(info.labels.items()))
    return [info.quiesce, info.failure_deadline, str(info.actions), str(info.skipped_overlap),
            str(len(info.running)), labels or "-", info.schedule_id]


@app.command("get")
def get(
    ctx: typer.Context,
    name: NameArgument,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show a schedule: target, timing, retention, state, recent and next runs."""
    ns = resolve_namespace(ctx, namespace)
    _name(name)

    async def work(client: VmsnapClient) -> int:
        info = await client.get_schedule(ns, name)
        if output is not Output.table:
            emit_data(info, output)
            return 0
        out = console()
        out.print(f"Name:        {info.name}  (Temporal schedule {info.schedule_id})")
        target = f"vm {info.vm}" if info.vm else f"selector {info.selector}"
        out.print(f"Target:      {target}")
        out.print(f"When:        {_when(info)}")
        out.print(f"Keep:        {info.keep} per VM")
        out.print(f"Snapshot:    deadline {info.failure_deadline}, quiesce {info.quiesce}")
        out.print(f"Paused:      {str(info.paused).lower()}" + (
            f" ({info.note})" if info.note else ""))
        out.print(f"Runs:        {info.actions} started, {info.skipped_overlap} skipped "
                  "(overlap)")
        for run_ in info.recent_runs:
            when = run_.started_at.isoformat() if run_.started_at else "-"
            out.print(f"  {when}  {run_.workflow_id}  {(run_.status or '-').lower()}")
        if info.next_runs and not info.paused:
            out.print(f"Next run:    {info.next_runs[0].isoformat()}")
        return 0

    run(ctx, work)


@app.command("delete")
def delete(ctx: typer.Context, name: NameArgument, namespace: NamespaceOption = None) -> None:
    """Delete a schedule. Its snapshots stay; delete them with `vmsnap snapshot delete`."""
    ns = resolve_namespace(ctx, namespace)
    _name(name)

    async def work(client: VmsnapClient) -> int:
        await client.delete_schedule(ns, name)
        console().print(f"schedule {ns}/{name} deleted (its snapshots are kept)")
        return 0

    run(ctx, work)


@app.command("pause")
def pause(
    ctx: typer.Context,
    name: NameArgument,
    note: Annotated[str | None, typer.Option(help="why (shown in the Temporal UI)")] = None,
    namespace: NamespaceOption = None,
) -> None:
    """Pause a schedule: no run starts until it is unpaused."""
    ns = resolve_namespace(ctx, namespace)
    _name(name)

    async def work(client: VmsnapClient) -> int:
        await client.pause_schedule(ns, name, note)
        console().print(f"schedule {ns}/{name} paused")
        return 0

    run(ctx, work)


@app.command("unpause")
def unpause(
    ctx: typer.Context,
    name: NameArgument,
    note: Annotated[str | None, typer.Option(help="why (shown in the Temporal UI)")] = None,
    namespace: NamespaceOption = None,
) -> None:
    """Resume a paused schedule."""
    ns = resolve_namespace(ctx, namespace)
    _name(name)

    async def work(client: VmsnapClient) -> int:
        await client.unpause_schedule(ns, name, note)
        console().print(f"schedule {ns}/{name} unpaused")
        return 0

    run(ctx, work)


@app.command("trigger")
def trigger(
    ctx: typer.Context,
    name: NameArgument,
    wait: Annotated[bool, typer.Option(
        "--wait", help="wait for the run; non-zero exit if a snapshot failed")] = False,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Run a schedule now (skipped if a run is in progress, as scheduled runs are)."""
    ns = resolve_namespace(ctx, namespace)
    _name(name)

    async def work(client: VmsnapClient) -> int:
        workflow_id = await client.trigger_schedule(ns, name)
        info = console(err=output is not Output.table)
        if workflow_id is None:
            info.print(f"schedule {ns}/{name}: a run is in progress, the trigger was skipped "
                       "(overlap policy skip)")
            return EXIT_FAILED
        info.print(f"schedule {ns}/{name} triggered: run {workflow_id}")
        if not wait:
            if output is not Output.table:
                emit_data({"workflow_id": workflow_id}, output)
            return 0
        try:
            result = await client.scheduled_run_result(workflow_id)
        except ScheduledRunFailed as failure:
            if failure.result is not None:
                _show_run(failure.result, output)
            typer.echo(f"error: scheduled run {workflow_id} failed: {failure.message}",
                       err=True)
            return EXIT_FAILED
        _show_run(result, output)
        return 0

    run(ctx, work)


def _show_run(result: ScheduledSnapshotResult, output: Output) -> None:
    if output is not Output.table:
        emit_data(result, output)
        return
    print_run(console(), result)


def print_run(out: Console, result: ScheduledSnapshotResult) -> None:
    took = ""
    if result.finished_at:
        seconds = (result.finished_at - result.started_at).total_seconds()
        took = f" in {format_go_duration(round(seconds, 1))}"
    out.print(f"schedule {result.namespace}/{result.schedule} ({result.target}){took}:")
    for outcome in result.vms:
        ready = ", ready" if outcome.ready_to_use else ""
        out.print(f"  {outcome.vm}: {outcome.snapshot} {outcome.phase}{ready}"
                  + (f" ({outcome.error})" if outcome.error else ""))
        if outcome.pruned:
            out.print(f"    pruned: {', '.join(outcome.pruned)}")
        for problem in outcome.prune_errors:
            out.print(f"    could not prune {problem}")
    if not result.vms:
        out.print("  no VM matched")
