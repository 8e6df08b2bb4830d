"""`vmsnap`: snapshots of KubeVirt VMs from the command line, in kubectl's habits.

    vmsnap snapshot create web-1 -n demo --wait
    vmsnap snapshot list -n demo
    vmsnap snapshot plan web-1 -n demo
    vmsnap schedule create nightly --vm web-1 --cron "0 2 * * *" --keep 7 -n demo
    vmsnap restore web-1-snap -n demo --running-vm-policy stop --wait
    vmsnap clone --from-snapshot web-1-snap web-2 -n demo --wait
    vmsnap console --allow-actions
    vmsnap worker
    vmsnap version

Verbs live in `starter/cli_*.py` (one module per noun).
Connection: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / a temporal.toml profile
(see starter/connection.py) and KUBECONFIG, or the options before the verb.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Annotated, Any

import typer
from rich.table import Table
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from starter import cli_clone, cli_console, cli_restore, cli_schedule, cli_snapshot, cli_sweep
from starter.cli_common import (
    AllNamespacesOption,
    GlobalOptions,
    ListOutput,
    ListOutputOption,
    NamespaceOption,
    Output,
    OutputOption,
    age,
    check_name,
    check_selector,
    emit_data,
    resolve_namespace,
    run,
    show,
    table,
)
from starter.sdk import RunInfo, VmsnapClient


class OneLineErrors(TyperGroup):
    """Usage errors as one line (`error: ... (see 'vmsnap snapshot create --help')`)
    instead of click's usage block; exit code 2 as click's."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as error:
            error.show()  # the help text, as `--help` would print it
            code = error.exit_code
        except ClickException as error:
            hint = ""
            if isinstance(error, UsageError) and error.ctx is not None:
                hint = f" (see '{error.ctx.command_path} --help')"
            typer.echo(f"error: {error.format_message()}{hint}", err=True)
            code = error.exit_code
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = 1
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


class VmsnapApp(typer.Typer):
    """The console-script entry point (`vmsnap` calls `app()`).

    It leaves with `os._exit` once output is flushed: the Temporal client's core
    threads can outlive the event loop and abort the interpreter's finalization
    ("Fatal Python error: PyGILState_Release", exit 134 after a successful command;
    temporalio/sdk-python#300). Tests drive the command through CliRunner, which
    does not use `__call__`, so they are not affected.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            super().__call__(*args, **kwargs)
            code = 0
        except SystemExit as leaving:
            code = _exit_code(leaving.code)
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# add_completion: typer's --install-completion and --show-completion (bash, zsh, fish,
# PowerShell), answered through the _VMSNAP_COMPLETE variable the scripts set.
app = VmsnapApp(
    name="vmsnap", cls=OneLineErrors, no_args_is_help=True, add_completion=True,
    pretty_exceptions_enable=False,
    help="Durable snapshots of KubeVirt VMs, run as Temporal workflows.")
app.add_typer(cli_snapshot.app, name="snapshot")
app.add_typer(cli_schedule.app, name="schedule")
app.command("restore")(cli_restore.restore)
app.command("clone")(cli_clone.clone)
app.command("sweep")(cli_sweep.sweep)
app.command("console")(cli_console.console)


@app.callback()
def main(
    ctx: typer.Context,
    kubeconfig: Annotated[str | None, typer.Option(
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context")] = None,
    address: Annotated[str | None, typer.Option(
        help="Temporal frontend HOST:PORT (default: $TEMPORAL_ADDRESS, profile, "
        "localhost:7233)")] = None,
    temporal_namespace: Annotated[str | None, typer.Option(
        help="Temporal namespace (default: $TEMPORAL_NAMESPACE, profile, default)")] = None,
    profile: Annotated[str | None, typer.Option(
        help="temporal.toml profile (default: $TEMPORAL_PROFILE)")] = None,
    task_queue: Annotated[str | None, typer.Option(
        help="task queue of the vmsnap worker (default: $VMSNAP_TASK_QUEUE, else "
        "vmsnap-{cluster id})")] = None,
) -> None:
    """Durable snapshots of KubeVirt VMs, run as Temporal workflows."""
    ctx.obj = GlobalOptions(kubeconfig=kubeconfig, context=context, address=address,
                            temporal_namespace=temporal_namespace, profile=profile,
                            task_queue=task_queue)


@app.command("worker", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def worker_command(ctx: typer.Context) -> None:
    """Run the vmsnap worker (same as `python worker.py`; takes --task-queue, --log-level)."""
    import worker

    options = ctx.find_root().obj
    argv = list(ctx.args)
    if isinstance(options, GlobalOptions) and options.task_queue and \
            "--task-queue" not in argv:
        argv += ["--task-queue", options.task_queue]
    raise typer.Exit(worker.main(argv))


@app.command("runs")
def runs(
    ctx: typer.Context,
    vm: Annotated[str | None, typer.Option(help="only runs for this VM")] = None,
    selector: Annotated[str | None, typer.Option(
        "--selector", "-l", help="only runs for the VMs this label selector matches now "
        "(needs a kubeconfig)", show_default=False)] = None,
    operation: Annotated[str | None, typer.Option(
        help="snapshot | delete | restore | clone | schedule")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 20,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    output: ListOutputOption = ListOutput.table,
) -> None:
    """List workflow runs from Temporal visibility (what the UI filters on VmName etc.)."""
    ns = None if all_namespaces else resolve_namespace(ctx, namespace)
    if vm is not None:
        check_name(vm, "vm")
    selector = check_selector(selector)

    async def work(client: VmsnapClient) -> int:
        found = await client.list_runs(ns, vm=vm, operation=operation, limit=limit,
                                       selector=selector)
        if not output.is_table:
            emit_data(found, output)
            return 0
        if not found:
            typer.echo("No runs found.", err=True)
            return 0
        show(runs_table(found, wide=output is ListOutput.wide))
        return 0

    run(ctx, work)


RUNS_COLUMNS = ["WORKFLOW ID", "TYPE", "STATUS", "VM", "PHASE", "STARTED"]
RUNS_WIDE_COLUMNS = ["OPERATION", "CLOSED", "RUN ID"]  # -o wide


def runs_table(found: list[RunInfo], *, wide: bool = False) -> Table:
    """`vmsnap runs`: one row per run, newest first; more columns with -o wide."""
    result = table([*RUNS_COLUMNS, *(RUNS_WIDE_COLUMNS if wide else [])])
    now = datetime.now(UTC)
    for info in found:
        row = [info.workflow_id, info.workflow_type, info.status.lower(),
               f"{info.vm_namespace or '?'}/{info.vm}" if info.vm else "-",
               info.snapshot_phase or "-", _ago(info.start_time, now)]
        if wide:
            row += [info.operation or "-", _ago(info.close_time, now), info.run_id]
        result.add_row(*row)
    return result


def _ago(when: datetime | None, now: datetime) -> str:
    return f"{age((now - when).total_seconds())} ago" if when else "-"


@app.command("cluster")
def cluster_command(ctx: typer.Context, output: OutputOption = Output.table) -> None:
    """Print the cluster id (VMSNAP_CLUSTER_ID, else derived from the kube-system
    namespace) and the task queue its workers poll: what Temporal CLI users need."""

    async def work(client: VmsnapClient) -> int:
        identity = {"cluster_id": await client.cluster_id(), "task_queue": client.task_queue}
        if output is not Output.table:
            emit_data(identity, output)
        else:
            typer.echo(f"cluster id  {identity['cluster_id']}")
            typer.echo(f"task queue  {identity['task_queue']}")
        return 0

    run(ctx, work)


@app.command("version")
def version(output: OutputOption = Output.table) -> None:
    """Print vmsnap's version, the Temporal Python SDK's and Python's."""
    versions = installed_versions()
    if output is not Output.table:
        emit_data(versions, output)
        return
    for name, number in versions.items():
        typer.echo(f"{name} {number}")


def installed_versions() -> dict[str, str]:
    """What a bug report needs: this package, the Temporal SDK it runs on, the Python."""
    return {"vmsnap": _distribution_version("vmsnap"),
            "temporalio": _distribution_version("temporalio"),
            "python": platform.python_version()}


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def run_command() -> None:
    """The `vmsnap` command: the app, then an exit that skips the interpreter's teardown.

    A command that used a Temporal client leaves the SDK core's threads alive, and one
    of them can touch Python while the interpreter finalizes: the process then aborts
    ("Fatal Python error: PyGILState_Release", temporalio/sdk-python#300) after doing
    its work, and a script sees a failure. Once the command is done and its output
    flushed, nothing is left to tear down that matters.
    """
    try:
        app(prog_name="vmsnap")  # whatever the entry script is called: completion keys on it
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run_command()
