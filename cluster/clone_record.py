"""The clone record: a `vmsnap.io` VirtualMachineClone, what a clone did, shown by kubectl.

The clone writes it as it goes: created on the first write (the same spec already there
is success: a retried step), its status merge-patched through the status subresource each
time, and left in place afterwards, Succeeded or Failed, for the user.

Knows nothing of Temporal; builds on the adapter's `KubeApis`.
"""

from __future__ import annotations

from typing import Any

from cluster.apis import KubeApis
from cluster.errors import AlreadyExists
from cluster.record_kinds import VIRTUAL_MACHINE_CLONES, patch_status


def clone_record_body(
    namespace: str, name: str, source_kind: str, source: str, target: str,
    labels: dict[str, str],
) -> dict[str, Any]:
    return {
        "apiVersion": VIRTUAL_MACHINE_CLONES.api_version,
        "kind": VIRTUAL_MACHINE_CLONES.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"source": {"kind": source_kind, "name": source},
                 "target": {"kind": "VirtualMachine", "name": target}},
    }


def write_clone_record(
    apis: KubeApis, body: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    """Create the record if needed (same spec: success), then merge-patch its status."""
    metadata = body["metadata"]
    try:
        apis.create_custom(VIRTUAL_MACHINE_CLONES, metadata["namespace"], body)
    except AlreadyExists:
        existing = apis.get_custom(VIRTUAL_MACHINE_CLONES, metadata["namespace"],
                                   metadata["name"])
        if existing.get("spec") != body["spec"]:
            raise
    return patch_status(apis, VIRTUAL_MACHINE_CLONES, metadata["namespace"], metadata["name"],
                        status)
