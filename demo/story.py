"""The demo's story: what a user does with vmsnap, step by step, through Temporal.

Each step starts a workflow with plain JSON input on the `vmsnap` task queue,
exactly as `temporal workflow start --type ... --input '{...}'` would, and
prints the result a user cares about.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter

from workflows.naming import snapshot_workflow_id

NAMESPACE = "demo"
TASK_QUEUE = "vmsnap"


def _cause(error: BaseException) -> str:
    """The innermost message of a workflow failure: what actually went wrong."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error)


def show_snapshot(console: Console, result: dict[str, Any]) -> None:
    phase = result["phase"]
    colour = {"Succeeded": "green", "Failed": "red"}.get(phase, "yellow")
    ready = "ready" if result.get("ready_to_use") else "not ready"
    console.print(f"  phase [{colour}]{phase}[/] ({ready})")
    console.print(f"  indications: {', '.join(result.get('indications') or []) or '(none)'}")
    window = result.get("freeze_window_ms")
    console.print(
        "  guest frozen for "
        + (f"[bold]{window} ms[/]" if window is not None else "0 ms (not frozen)")
    )
    table = Table("volume", "disk", "outcome", box=None, padding=(0, 2))
    for volume in result.get("included_volumes") or []:
        table.add_row(
            volume["volume_name"],
            volume["pvc_name"],
            f"[green]included[/] → VolumeSnapshot {volume['volume_snapshot']}",
        )
    for volume in result.get("excluded_volumes") or []:
        table.add_row(
            volume["volume_name"],
            volume.get("pvc_name") or "-",
            f"[dim]excluded: {volume['reason']}[/]",
        )
    console.print(table)
    if result.get("error"):
        console.print(f"  [red]error: {result['error']}[/]")


async def snapshot(console: Console, client: Client, vm: str, note: str) -> bool:
    name = f"{vm}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    payload = {"namespace": NAMESPACE, "vm": vm, "name": name, "failure_deadline": "5m"}
    console.print(f"[bold]Snapshot {NAMESPACE}/{vm}[/] ({note})")
    console.print(
        f"  temporal workflow start --type SnapshotVirtualMachine "
        f"--task-queue {TASK_QUEUE} --input '{_json(payload)}'"
    )
    try:
        with console.status(f"  snapshotting {vm}"):
            result = await client.execute_workflow(
                "SnapshotVirtualMachine",
                payload,
                id=snapshot_workflow_id(NAMESPACE, name),
                task_queue=TASK_QUEUE,
                result_type=dict,
            )
    except WorkflowFailureError as failure:
        console.print(f"  [red]failed: {_cause(failure)}[/]")
        return False
    show_snapshot(console, result)
    console.print()
    return bool(result["phase"] == "Succeeded")


def _json(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload, separators=(",", ":"))


async def run_story(console: Console, address: str, kubeconfig: Path, ui_url: str) -> bool:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    ok = await snapshot(console, client, "web-1", "running, guest agent connected: frozen")
    ok = await snapshot(console, client, "db-1", "running without guest agent") and ok
    console.print(f"See every run in the Temporal UI: {ui_url}/namespaces/default/workflows")
    console.print(
        f"And the records: kubectl --kubeconfig {kubeconfig} "
        f"get virtualmachinesnapshots,volumesnapshots -n {NAMESPACE}"
    )
    return ok
