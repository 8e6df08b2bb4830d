"""The project's own kinds (`vmsnap.io/v1alpha1`) and the conventions all their records share.

The CRDs are in `deploy/crds/`; their shapes follow KubeVirt's `snapshot.kubevirt.io/v1beta1`
kinds (same field names and phases). The kinds, the annotations vmsnap writes, Kubernetes'
time format, owner references and the status patch are defined once, here, so the record
modules (`snapshot_record`, `snapshot_content`, `snapshot_users`, `restore_record`,
`clone_record`) and the activities that list records by kind agree on them.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cluster.apis import CustomResource, KubeApis

GROUP = "vmsnap.io"
VERSION = "v1alpha1"
VIRTUAL_MACHINE_SNAPSHOTS = CustomResource(
    GROUP, VERSION, "vmsnapsnapshots", "VirtualMachineSnapshot"
)
VIRTUAL_MACHINE_SNAPSHOT_CONTENTS = CustomResource(
    GROUP, VERSION, "vmsnapcontents", "VirtualMachineSnapshotContent"
)
VIRTUAL_MACHINE_RESTORES = CustomResource(
    GROUP, VERSION, "vmsnaprestores", "VirtualMachineRestore"
)
VIRTUAL_MACHINE_CLONES = CustomResource(
    GROUP, VERSION, "vmsnapclones", "VirtualMachineClone"
)

# The workflow run that made an object: on snapshot records and on the PVCs a restore or
# clone makes, so a retry of that run recognises its own and the orphan sweeper knows whom
# to ask.
WORKFLOW_ID_ANNOTATION = "vmsnap.io/workflow-id"
RUN_ID_ANNOTATION = "vmsnap.io/run-id"
# The restores and clones reading a snapshot record (see `cluster.snapshot_users`).
USERS_ANNOTATION = "vmsnap.io/in-use-by"


def k8s_time(value: datetime) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes metav1.Time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_reference(resource: CustomResource, name: str, uid: str) -> dict[str, Any]:
    """An owner reference that makes the garbage collector delete the dependent with it."""
    return {"apiVersion": resource.api_version, "kind": resource.kind, "name": name,
            "uid": uid, "controller": True, "blockOwnerDeletion": True}


def patch_status(
    apis: KubeApis, resource: CustomResource, namespace: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch `status` through the status subresource (a null member clears a field)."""
    return apis.patch_custom(resource, namespace, name, {"status": status}, subresource="status")
