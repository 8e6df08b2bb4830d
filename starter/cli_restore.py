"""`vmsnap restore SNAPSHOT [--target NEW_VM] [--running-vm-policy fail|stop] [--wait] ...`.

One verb with a positional snapshot; no `restore list/get` sub-verbs, since
`vmsnap restore list` would be a restore of a snapshot called "list"
(`kubectl get vmsnaprestore -n NS` lists the records).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from contracts.restore import RestoreVirtualMachineInput, RestoreVirtualMachineResult
from starter.cli_clone import parse_macs
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
from starter.sdk import InvalidRequest, RestoreFailed, VmsnapClient
from starter.sdk_checks import check_restore_input

RESTORE_FLAGS = {"namespace": "--namespace", "snapshot": "", "target": "--target",
                 "running_vm_policy": "--running-vm-policy",
                 "target_readiness_policy": "--target-readiness-policy",
                 "volume_restore_policy": "--volume-restore-policy",
                 "volume_ownership_policy": "--volume-ownership-policy",
                 "missing_volumes": "--missing-volumes", "keep_identity": "--keep-identity",
                 "new_mac_addresses": "--new-mac", "new_smbios_serial": "--new-smbios-serial"}


def restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="the snapshot to restore", metavar="SNAPSHOT")],
    target: Annotated[str | None, typer.Option(
        help="a new VM to create (default: the snapshot's VM, in place)")] = None,
    running_vm_policy: Annotated[str | None, typer.Option(
        help="fail (refuse a running VM; the default) | stop (stop it, restore, start it "
        "again)")] = None,
    target_readiness_policy: Annotated[str | None, typer.Option(
        help="KubeVirt's: WaitGracePeriod | StopTarget | FailImmediate | WaitEventually")
    ] = None,
    volume_restore_policy: Annotated[str | None, typer.Option(
        help="RandomizeNames (new PVC names per restore; default) | PrefixTargetName")] = None,
    volume_ownership_policy: Annotated[str | None, typer.Option(
        help="VM (the VM owns the restored PVCs; default) | None")] = None,
    missing_volumes: Annotated[str | None, typer.Option(
        help="a disk the snapshot left out, for a new VM: refuse (default) | drop")] = None,
    new_mac: Annotated[list[str] | None, typer.Option(
        "--new-mac", help="a new VM: IFACE=MAC (repeatable; other MACs are cleared)")
    ] = None,
    new_smbios_serial: Annotated[str | None, typer.Option(
        help="a new VM: its SMBIOS serial (default: cleared)")] = None,
    keep_identity: Annotated[bool, typer.Option(
        "--keep-identity", help="a new VM keeps the source's MACs, serial and UUID")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="follow progress until it ends; non-zero exit on failure")] = False,
    check: Annotated[bool, typer.Option(
        help="check the snapshot and target first (needs a kubeconfig)")] = True,
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Restore a VM from a snapshot, in place or into a new VM (RestoreVirtualMachine)."""
    ns = resolve_namespace(ctx, namespace)
    check_name(snapshot, "snapshot")
    if target is not None:
        check_name(target, "--target")
    try:
        macs = parse_macs(new_mac)
    except ValueError as error:
        usage_error(str(error))
    chosen = {"running_vm_policy": running_vm_policy,
              "target_readiness_policy": target_readiness_policy,
              "volume_restore_policy": volume_restore_policy,
              "volume_ownership_policy": volume_ownership_policy,
              "missing_volumes": missing_volumes, "new_mac_addresses": macs or None,
              "new_smbios_serial": new_smbios_serial,
              "keep_identity": keep_identity or None}
    request = build(RestoreVirtualMachineInput, RESTORE_FLAGS, namespace=ns, snapshot=snapshot,
                    target=target, **{k: v for k, v in chosen.items() if v is not None})
    try:
        check_restore_input(request)
    except InvalidRequest as error:
        usage_error(str(error))

    async def work(client: VmsnapClient) -> int:
        handle = await client.start_restore(request, check=check)
        info = console(err=output is not Output.table)
        info.print(f"restore of {ns}/{handle.target} from snapshot {snapshot} started "
                   f"(workflow {handle.workflow_id}, task queue {client.task_queue})")
        if not wait:
            if output is not Output.table:
                emit_data({"namespace": ns, "snapshot": snapshot, "target": handle.target,
                           "workflow_id": handle.workflow_id, "run_id": handle.run_id},
                          output)
            return 0
        return await finish_operation(handle, info, "restore",
                                      f"restore of {ns}/{handle.target}", RestoreFailed,
                                      output, print_restore)

    run(ctx, work)


def print_restore(out: Console, result: RestoreVirtualMachineResult) -> None:
    out.print(f"restore {result.namespace}/{result.name}: {result.phase} "
              f"(VM {result.target} from snapshot {result.snapshot})")
    did = [what for what, done in (("created the VM", result.created_vm),
                                   ("stopped the VM", result.stopped_vm),
                                   ("started it again", result.restarted_vm)) if done]
    if did:
        out.print(f"  {', '.join(did)}")
    if result.kept_volumes:
        out.print(f"  kept the VM's current PVC (not in the snapshot): "
                  f"{', '.join(result.kept_volumes)}")
    if result.dropped_volumes:
        out.print(f"  left out (not in the snapshot): {', '.join(result.dropped_volumes)}")
    for volume in result.volumes:
        out.print(f"  {volume.volume_name}: PVC {volume.pvc_name} from VolumeSnapshot "
                  f"{volume.volume_snapshot} ({volume.phase or '-'})")
