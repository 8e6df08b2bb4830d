"""`vmsnap`: snapshots of KubeVirt VMs from the command line, in kubectl's habits.

    vmsnap snapshot create web-1 -n demo --wait
    vmsnap snapshot list -n demo
    vmsnap snapshot plan web-1 -n demo
    vmsnap schedule create nightly --vm web-1 --cron "0 2 * * *" --keep 7 -n demo
    vmsnap restore web-1-snap -n demo --running-vm-policy stop --wait
    vmsnap clone --from-snapshot web-1-snap web-2 -n demo --wait
    vmsnap worker

Verbs live in `starter/cli_*.py` (one module per noun).
Connection: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / a temporal.toml profile
(see starter/connection.py) and KUBECONFIG, or the options before the verb.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from starter import cli_clone, cli_restore, cli_schedule, cli_snapshot, cli_sweep
from starter.cli_common import (
    AllNamespacesOption,
    GlobalOptions,
    NamespaceOption,
    Output,
    OutputOption,
    age,
    check_name,
    emit_data,
    resolve_namespace,
    run,
    show,
    table,
)
from starter.sdk import VmsnapClient


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


app = VmsnapApp(
    name="vmsnap", cls=OneLineErrors, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="Durable snapshots of KubeVirt VMs, run as Temporal workflows.")
app.add_typer(cli_snapshot.app, name="snapshot")
app.add_typer(cli_schedule.app, name="schedule")
app.command("restore")(cli_restore.restore)
app.command("clone")(cli_clone.clone)
app.command("sweep")(cli_sweep.sweep)


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
        help="task queue of the vmsnap worker (default: $VMSNAP_TASK_QUEUE, vmsnap)")] = None,
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
    operation: Annotated[str | None, typer.Option(
        help="snapshot | delete | restore | clone | schedule")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 20,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    output: OutputOption = Output.table,
) -> None:
    """List workflow runs from Temporal visibility (what the UI filters on VmName etc.)."""
    ns = None if all_namespaces else resolve_namespace(ctx, namespace)
    if vm is not None:
        check_name(vm, "vm")

    async def work(client: VmsnapClient) -> int:
        found = await client.list_runs(ns, vm=vm, operation=operation, limit=limit)
        if output is not Output.table:
            emit_data(found, output)
            return 0
        if not found:
            typer.echo("No runs found.", err=True)
            return 0
        now = datetime.now(UTC)
        result = table(["WORKFLOW ID", "TYPE", "STATUS", "VM", "PHASE", "STARTED"])
        for info in found:
            result.add_row(info.workflow_id, info.workflow_type, info.status.lower(),
                           f"{info.vm_namespace or '?'}/{info.vm}" if info.vm else "-",
                           info.snapshot_phase or "-",
                           f"{age((now - info.start_time).total_seconds())} ago")
        show(result)
        return 0

    run(ctx, work)


def run_command() -> None:
    """The `vmsnap` command: the app, then an exit that skips the interpreter's teardown.

    A command that used a Temporal client leaves the SDK core's threads alive, and one
    of them can touch Python while the interpreter finalizes: the process then aborts
    ("Fatal Python error: PyGILState_Release", temporalio/sdk-python#300) after doing
    its work, and a script sees a failure. Once the command is done and its output
    flushed, nothing is left to tear down that matters.
    """
    try:
        app()
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
