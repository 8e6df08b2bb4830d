"""The `record_vm_event` activity: a Kubernetes Event on the VM for an operation's outcome.

Snapshot, restore and clone report success and failure on the VM, as KubeVirt
does for its own snapshots, so `kubectl describe vm` tells the story. The
input model and the reasons are in `contracts.reporting`, and the Event's name
comes from the workflow id and the reason, so a retry never doubles an Event.

An Event is a courtesy: a VM that is gone has nothing to attach it to (the
activity then returns None), and a workflow should not fail because an Event
could not be written (call it with a short retry policy and ignore its failure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.registration import implements
from contracts.reporting import RECORD_VM_EVENT, VmEventInput

if TYPE_CHECKING:
    from cluster.client import Cluster

SNAPSHOT_RECORD_API_VERSION = "vmsnap.io/v1alpha1"
SNAPSHOT_RECORD_KIND = "VirtualMachineSnapshot"

class EventActivities:
    """`record_vm_event`, bound to one cluster adapter."""

    def __init__(self, cluster: Cluster) -> None:
        from cluster.events import EventOperations

        self.events = EventOperations(
            cluster.api_client,
            request_timeout_seconds=cluster.request_timeout_seconds,
            connect_timeout_seconds=cluster.connect_timeout_seconds,
        )
        self.cluster = cluster

    def all(self) -> list[Callable[..., Any]]:
        return [self.record_vm_event]

    @implements(RECORD_VM_EVENT)
    def record_vm_event(self, input: VmEventInput) -> str | None:
        """Create the Event; its name, or None when the VM no longer exists."""
        from activities.errors import application_error, cluster_errors
        from cluster.errors import ClusterError, NotFound
        from cluster.events import Related, vm_event_body

        info = activity.info()
        operation = info.workflow_id or info.activity_id
        if input.vm_uid:
            vm = {"metadata": {"name": input.vm, "namespace": input.namespace,
                               "uid": input.vm_uid}}
        else:
            try:
                vm = self.cluster.get_vm(input.namespace, input.vm)
            except NotFound:
                activity.logger.info("no Event: VM %s/%s is gone", input.namespace, input.vm)
                return None
            except ClusterError as err:
                raise application_error(err) from err
        related = None if input.snapshot is None else Related(
            SNAPSHOT_RECORD_API_VERSION, SNAPSHOT_RECORD_KIND, input.snapshot)
        try:
            body = vm_event_body(vm, operation=operation, reason=input.reason,
                                 message=input.message, type=input.type, action=input.action,
                                 related=related)
        except ValueError as err:
            raise ApplicationError(str(err), type="InvalidEvent", non_retryable=True) from err
        with cluster_errors():
            self.events.create_event(body)
        return str(body["metadata"]["name"])
