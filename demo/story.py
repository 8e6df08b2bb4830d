"""The demo's story: what a user does with vmsnap, step by step, through Temporal.

The snapshots start workflows with plain JSON input on the `vmsnap` task queue,
exactly as `temporal workflow start --type ... --input '{...}'` would; the
clone, the restore and the rest go through the `vmsnap` CLI as a user types it.
It ends with the Temporal UI's list filtered on the VM (`VmName="web-1"`).
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from contracts.schedule import schedule_id
from rules.cluster_identity import task_queue_for
from rules.naming import snapshot_workflow_id
from workflows.search_attributes import OPERATION, VM_NAME, VM_NAMESPACE

NAMESPACE = "demo"
CLUSTER_ID = "demo"  # VMSNAP_CLUSTER_ID of the demo's worker and CLI: readable IDs
TASK_QUEUE = task_queue_for(CLUSTER_ID)


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


async def snapshot(console: Console, client: Client, vm: str, note: str) -> str | None:
    """Snapshot `vm`; the snapshot's name when it succeeded."""
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
                id=snapshot_workflow_id(CLUSTER_ID, NAMESPACE, name),
                task_queue=TASK_QUEUE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(VM_NAME, vm),
                        SearchAttributePair(VM_NAMESPACE, NAMESPACE),
                        SearchAttributePair(OPERATION, "snapshot"),
                    ]
                ),
                static_summary=f"snapshot {NAMESPACE}/{vm} -> {name}",
                result_type=dict,
            )
    except WorkflowFailureError as failure:
        console.print(f"  [red]failed: {_cause(failure)}[/]")
        return None
    show_snapshot(console, result)
    console.print()
    return name if result["phase"] == "Succeeded" else None


def _json(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload, separators=(",", ":"))


def vmsnap(console: Console, address: str, kubeconfig: Path, *args: str) -> bool:
    """Our own CLI, as a user types it; its output goes straight to the terminal."""
    console.print(f"[bold]$ vmsnap {shlex.join(args)}[/]")
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "KUBECONFIG": str(kubeconfig)}
    vmsnap_cli = Path(sys.executable).parent / "vmsnap"
    sys.stdout.flush()
    done = subprocess.run([str(vmsnap_cli), *args], env=env, check=False, timeout=300)
    console.print()
    return done.returncode == 0


async def _schedule_exists(client: Client, name: str) -> bool:
    """Whether the demo's schedule is already on the server (an earlier `make demo`)."""
    try:
        await client.get_schedule_handle(schedule_id(CLUSTER_ID, NAMESPACE, name)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def run_story(console: Console, address: str, kubeconfig: Path, ui_url: str) -> bool:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    web_snapshot = await snapshot(console, client, "web-1", "running, agent connected: frozen")
    ok = await snapshot(console, client, "db-1", "running without guest agent") is not None
    if web_snapshot is None:
        return False
    cli = functools.partial(vmsnap, console, address, kubeconfig)
    # a clone (new SMBIOS serial, firmware UUID and MACs cleared; stays Halted), then the
    # running web-1 restored in place (stopped, restored, started again)
    ok = cli("clone", "--from-snapshot", web_snapshot, "web-1-copy", "-n", NAMESPACE,
             "--new-smbios-serial", "web-1-copy-serial", "--wait") and ok
    ok = cli("restore", web_snapshot, "-n", NAMESPACE, "--running-vm-policy", "stop",
             "--wait") and ok
    ok = cli("snapshot", "plan", "legacy-1", "-n", NAMESPACE) and ok
    if await _schedule_exists(client, "nightly"):
        # The dev server keeps its database between demos, the simulator starts afresh:
        # last demo's schedule points at a cluster that is gone, so it is made anew.
        console.print("[dim]the schedule 'nightly' is left from an earlier demo: replacing it[/]")
        ok = cli("schedule", "delete", "nightly", "-n", NAMESPACE) and ok
    ok = (
        cli(
            "schedule",
            "create",
            "nightly",
            "-n",
            NAMESPACE,
            "--vm",
            "web-1",
            "--cron",
            "0 2 * * *",
            "--keep",
            "2",
        )
        and ok
    )
    for _ in range(3):  # three runs of a schedule that keeps two: the oldest is pruned
        ok = cli("schedule", "trigger", "nightly", "-n", NAMESPACE, "--wait") and ok
    ok = cli("snapshot", "list", "-n", NAMESPACE) and ok
    console.print(
        f"kubectl --kubeconfig {kubeconfig} get vms,vmsnapclones,"
        f"vmsnaprestores -n {NAMESPACE}"
    )
    query = urllib.parse.quote('VmName="web-1"')
    console.print(f"Every run for web-1 (snapshots, clone, restore, schedule) in the Temporal "
                  f"UI: {ui_url}/namespaces/default/workflows?query={query}")
    console.print(
        f"And the records: kubectl --kubeconfig {kubeconfig} "
        f"get vmsnapsnapshots,volumesnapshots -n {NAMESPACE}"
    )
    return ok
