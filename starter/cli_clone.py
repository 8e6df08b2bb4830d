"""`vmsnap clone (--from-vm VM | --from-snapshot S) TARGET [...] [--wait]`.

One verb with a positional target; no `clone list/get` sub-verbs, since
`vmsnap clone list` would be a clone called "list" (`kubectl get vmsnapclone -n
NS` lists the records).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from contracts.clone import CloneVirtualMachineInput, CloneVirtualMachineResult
from rules.clone_spec import check_mac
from starter.cli_common import (
    NamespaceOption,
    Output,
    OutputOption,
    build,
    check_name,
    console,
    emit_data,
    finish_operation,
    resolve_namespace,
    run,
    usage_error,
)
from starter.sdk import CloneFailed, InvalidRequest, VmsnapClient
from starter.sdk_checks import check_clone_input

CLONE_FLAGS = {"namespace": "--namespace", "source_vm": "--from-vm",
               "source_snapshot": "--from-snapshot", "target": "", "new_mac_addresses":
               "--new-mac", "new_smbios_serial": "--new-smbios-serial",
               "label_filters": "--label-filter", "annotation_filters": "--annotation-filter",
               "patches": "--patch", "run_strategy": "--run-strategy",
               "missing_volumes": "--missing-volumes"}
RUN_STRATEGIES = ("Always", "Halted", "Manual", "RerunOnFailure", "Once")


def parse_macs(values: list[str] | None) -> dict[str, str]:
    """`IFACE=MAC` pairs (repeatable `--new-mac`) as {interface: mac}; ValueError if bad."""
    macs: dict[str, str] = {}
    for value in values or []:
        interface, sep, mac = value.partition("=")
        if not sep or not interface or not mac:
            raise ValueError(f"--new-mac {value!r}: expected IFACE=MAC")
        if interface in macs:
            raise ValueError(f"--new-mac: interface {interface} given twice")
        macs[interface] = check_mac(interface, mac)
    return macs


def clone(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="the new VM", metavar="TARGET")],
    from_vm: Annotated[str | None, typer.Option(
        "--from-vm", help="clone this VM (through a temporary snapshot)")] = None,
    from_snapshot: Annotated[str | None, typer.Option(
        "--from-snapshot", help="clone from this snapshot")] = None,
    new_mac: Annotated[list[str] | None, typer.Option(
        "--new-mac", help="IFACE=MAC for the clone (repeatable; other MACs are cleared)")
    ] = None,
    new_smbios_serial: Annotated[str | None, typer.Option(
        help="SMBIOS serial of the clone (default: cleared)")] = None,
    label_filter: Annotated[list[str] | None, typer.Option(
        "--label-filter", help="labels to copy: key, prefix*, !negation (repeatable)")] = None,
    annotation_filter: Annotated[list[str] | None, typer.Option(
        "--annotation-filter", help="annotations to copy, as --label-filter")] = None,
    patch: Annotated[list[str] | None, typer.Option(
        "--patch", help="JSON patch (one op or a list) under /spec/, /metadata/labels/ or "
        "/metadata/annotations/ (repeatable)")] = None,
    run_strategy: Annotated[str, typer.Option(
        help="runStrategy of the clone: Halted | Always | Manual | RerunOnFailure | Once")
    ] = "Halted",
    missing_volumes: Annotated[str, typer.Option(
        help="a disk the snapshot left out: refuse (default; the clone would share the "
        "source's disk) | drop (clone without it)")] = "refuse",
    wait: Annotated[bool, typer.Option(
        "--wait", help="follow progress until it ends; non-zero exit on failure")] = False,
    check: Annotated[bool, typer.Option(
        help="check the source and target first (needs a kubeconfig)")] = True,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Clone a VM, or a snapshot of one, into a new VM (CloneVirtualMachine)."""
    ns = resolve_namespace(ctx, namespace)
    check_name(target, "target")
    if (from_vm is None) == (from_snapshot is None):
        usage_error("give exactly one of --from-vm and --from-snapshot")
    if run_strategy not in RUN_STRATEGIES:
        usage_error(f"--run-strategy {run_strategy!r}: use {', '.join(RUN_STRATEGIES)}")
    if missing_volumes not in ("refuse", "drop"):
        usage_error(f"--missing-volumes {missing_volumes!r}: use refuse or drop")
    try:
        macs = parse_macs(new_mac)
    except ValueError as error:
        usage_error(str(error))
    request = build(CloneVirtualMachineInput, CLONE_FLAGS, namespace=ns, source_vm=from_vm,
                    source_snapshot=from_snapshot, target=target, new_mac_addresses=macs,
                    new_smbios_serial=new_smbios_serial, label_filters=label_filter or [],
                    annotation_filters=annotation_filter or [], patches=patch or [],
                    run_strategy=run_strategy, missing_volumes=missing_volumes)
    try:
        check_clone_input(request)
    except InvalidRequest as error:
        usage_error(str(error))
    source = f"VM {from_vm}" if from_vm else f"snapshot {from_snapshot}"

    async def work(client: VmsnapClient) -> int:
        handle = await client.start_clone(request, check=check)
        info = console(err=output is not Output.table)
        info.print(f"clone of {source} to {ns}/{target} started "
                   f"(workflow {handle.workflow_id}, task queue {client.task_queue})")
        if not wait:
            if output is not Output.table:
                emit_data({"namespace": ns, "target": target, "source_vm": from_vm,
                           "source_snapshot": from_snapshot,
                           "workflow_id": handle.workflow_id, "run_id": handle.run_id},
                          output)
            return 0
        return await finish_operation(handle, info, "clone", f"clone to {ns}/{target}",
                                      CloneFailed, output, print_clone)

    run(ctx, work)


def print_clone(out: Console, result: CloneVirtualMachineResult) -> None:
    source = (f"VM {result.source_vm}" if result.source_vm
              else f"snapshot {result.source_snapshot}")
    out.print(f"clone {result.namespace}/{result.name}: {result.phase} "
              f"(VM {result.target} from {source})")
    if result.temporary_snapshot:
        gone = "deleted" if result.temporary_snapshot_deleted else "NOT deleted"
        if result.temporary_snapshot_kept_until_bound:
            gone = ("kept until the VM's first start binds "
                    + ", ".join(result.temporary_snapshot_kept_until_bound)
                    + ", then deleted")
        out.print(f"  temporary snapshot {result.snapshot}: {gone}")
    if result.dropped_volumes:
        out.print(f"  left out (not in the snapshot): {', '.join(result.dropped_volumes)}")
    for volume in result.volumes:
        out.print(f"  {volume.volume_name}: PVC {volume.pvc_name} from VolumeSnapshot "
                  f"{volume.volume_snapshot} ({volume.phase or '-'})")
