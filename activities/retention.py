"""Reads for the scheduled snapshots: which VMs a selector matches, which snapshots a
schedule made for a VM. Read-only and idempotent; deletion goes through the
`DeleteVirtualMachineSnapshot` workflow, never from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.errors import cluster_errors
from activities.registration import implements
from cluster.apis import VIRTUAL_MACHINES
from cluster.client import Cluster
from cluster.record_kinds import VIRTUAL_MACHINE_SNAPSHOTS
from cluster.snapshots import parse_time
from contracts.schedule import (
    LIST_SCHEDULED_SNAPSHOTS,
    LIST_VMS,
    SCHEDULE_LABEL,
    ListVmsInput,
    ScheduledSnapshotsQuery,
)
from rules import naming
from rules.retention import ScheduledSnapshotRecord


def scheduled_record_from(obj: Mapping[str, Any]) -> ScheduledSnapshotRecord:
    """A record as retention sees it; a record without a creation time counts as new."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return ScheduledSnapshotRecord(
        name=str(metadata.get("name") or ""),
        vm=str(((obj.get("spec") or {}).get("source") or {}).get("name") or ""),
        created=parse_time(metadata.get("creationTimestamp")) or datetime.now(UTC),
        phase=status.get("phase"),
        ready_to_use=bool(status.get("readyToUse")),
        error=((status.get("error") or {}).get("message")) or None,
        deleting=bool(metadata.get("deletionTimestamp")),
    )


class RetentionActivities:
    """Activities of ScheduledVirtualMachineSnapshots, on the worker's shared cluster adapter."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def all(self) -> list[Callable[..., object]]:
        return [self.list_vms, self.list_scheduled_snapshots]

    @implements(LIST_VMS)
    def list_vms(self, input: ListVmsInput) -> list[str]:
        """Names of the VMs in the namespace that match the label selector, sorted."""
        with cluster_errors():
            listed = self.cluster.list_custom(VIRTUAL_MACHINES, input.namespace, input.selector)
        names = sorted(str((vm.get("metadata") or {}).get("name") or "")
                       for vm in listed.get("items") or [])
        activity.logger.info("selector %r in %s matches %d VM(s)", input.selector,
                             input.namespace, len(names))
        return [n for n in names if n]

    @implements(LIST_SCHEDULED_SNAPSHOTS)
    def list_scheduled_snapshots(
        self, input: ScheduledSnapshotsQuery
    ) -> list[ScheduledSnapshotRecord]:
        """The snapshot records of `vm` labelled with the schedule."""
        selector = f"{SCHEDULE_LABEL}={naming.label_value(input.schedule)}"
        with cluster_errors():
            listed = self.cluster.list_custom(VIRTUAL_MACHINE_SNAPSHOTS, input.namespace, selector)
        records = [scheduled_record_from(obj) for obj in listed.get("items") or []]
        return [r for r in records if r.vm == input.vm]
