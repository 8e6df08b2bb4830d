"""`vmsnap sweep [--dry-run] [--grace 1h] [--include-older-than-install] [-n NS | -A]`: remove
what vmsnap made and nobody owns.

Orphans made before the sweeper was installed are only reported unless
`--include-older-than-install` (contracts.sweep).

Starts the `SweepOrphans` workflow under its deterministic ID
(`sweep-orphans/{all | namespaces}`) and waits for it: a second sweep of the
same scope while one runs is refused by Temporal and reported as such.
"""

from __future__ import annotations

from typing import Annotated

import typer
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.sweep import WORKFLOW as SWEEP_WORKFLOW
from contracts.sweep import SweepOrphansInput, SweepOrphansResult, sweep_workflow_id
from starter.cli_common import (
    EXIT_FAILED,
    AllNamespacesOption,
    NamespaceOption,
    Output,
    OutputOption,
    age,
    check_duration,
    emit_data,
    fail,
    resolve_namespace,
    run,
    show,
    table,
    usage_error,
)
from starter.sdk import VmsnapClient

app = typer.Typer(help="Remove VolumeGroupSnapshots, VolumeSnapshots, contents and PVCs that "
                       "vmsnap made and that no record or running workflow owns, and stale "
                       "group cut labels on PVCs.")


@app.callback(invoke_without_command=True)
def sweep(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report, remove nothing")] = False,
    grace: Annotated[str, typer.Option(
        help="leave objects younger than this (an operation may be about to record them)")
    ] = "1h",
    include_older_than_install: Annotated[bool, typer.Option(
        "--include-older-than-install",
        help="remove orphans made before the sweeper was installed too (else only reported)")
    ] = False,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    output: OutputOption = Output.table,
) -> None:
    """Sweep orphans now and print what was removed (or would be, with --dry-run) and why."""
    check_duration(grace, "--grace")
    if all_namespaces and namespace:
        usage_error("give --namespace or --all-namespaces, not both")
    namespaces = [] if all_namespaces else [resolve_namespace(ctx, namespace)]

    async def work(client: VmsnapClient) -> int:
        request = SweepOrphansInput(namespaces=namespaces, all_namespaces=all_namespaces,
                                    grace=grace, dry_run=dry_run,  # type: ignore[arg-type]
                                    include_older_than_install=include_older_than_install)
        temporal = await client.temporal()
        workflow_id = sweep_workflow_id(await client.cluster_id(), namespaces, all_namespaces)
        try:
            handle = await temporal.start_workflow(
                SWEEP_WORKFLOW, request, id=workflow_id, task_queue=client.task_queue,
                result_type=SweepOrphansResult)
        except WorkflowAlreadyStartedError:
            fail(f"a sweep of {request.scope} is already running (workflow {workflow_id})")
        try:
            result: SweepOrphansResult = await handle.result()
        except WorkflowFailureError as error:
            fail(f"sweep {workflow_id} failed: {error.cause}")
        if output is not Output.table:
            emit_data(result, output)
        else:
            _print(result)
        return EXIT_FAILED if result.errors else 0

    run(ctx, work)


def _print(result: SweepOrphansResult) -> None:
    typer.echo(result.summary(), err=True)
    if result.removed:
        found = table(["KIND", "NAMESPACE", "NAME", "REMOVED", "REASON"])
        for r in result.removed:
            found.add_row(r.kind, r.namespace, r.name,
                          "dry run" if result.dry_run else ("yes" if r.removed else "gone"),
                          r.reason)
        show(found)
    stale = [label for label in result.cut_labels if label.action == "remove"]
    if stale:
        labels = table(["NAMESPACE", "PVC", "STALE CUT LABEL", "REMOVED", "REASON"])
        for label in stale:
            labels.add_row(label.namespace, label.pvc, f"{label.key}={label.value}",
                           "dry run" if result.dry_run else ("yes" if label.removed else "gone"),
                           label.reason)
        show(labels)
    for v in result.too_young:
        typer.echo(f"not yet: {v.kind} {v.namespace}/{v.name} "
                   f"({age(v.age_seconds)} old): {v.reason}", err=True)
    for v in result.reported:
        typer.echo(f"reported only: {v.kind} {v.namespace}/{v.name}: {v.reason}", err=True)
    for message in result.errors:
        typer.echo(f"error: {message}", err=True)
