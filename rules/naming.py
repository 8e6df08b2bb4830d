"""Deterministic names: the same snapshot always gets the same workflow ID and objects.

Every retry, replay and repeated start derives the same names from the
operation's identity (namespace + snapshot name), so "AlreadyExists" means
"already done" and a second start joins the first. Pure functions, safe in
workflow code and in clients.

Rules (a contract: the CLI, the README and the records rely on them):
- every ID names the cluster first (`rules.cluster_identity`): two clusters whose
  workers share a Temporal namespace never join or block each other's runs.
- workflow ID of a snapshot: `snapshot/{cluster}/{namespace}/{name}`; of its deletion:
  `delete-snapshot/{cluster}/{namespace}/{name}`; of a restore or clone into a VM:
  `restore/{cluster}/{namespace}/{target}`, `clone/{cluster}/{namespace}/{target}` (one
  at a time per target). Each operation's contract module (`contracts/`) offers its own.
  An empty cluster gives the IDs runs had before clusters were named (`snapshot/
  {namespace}/{name}`): a workflow replaying such a run derives its children's IDs so.
- a snapshot started without a name is called `{vm}-{YYYYMMDD-HHMMSS}`, the
  UTC workflow time at its start.
- VolumeSnapshot of a volume: `{snapshot}-{volume}`; content: `{snapshot}-content`.
- VolumeGroupSnapshot of the disks of one CSI driver: `{snapshot}-{driver suffix}`; the
  label that its selector matches on the PVCs it cuts: `vmsnap.io/cut-{16 hex of
  sha256(namespace/group)}`, with the group's name as value.
- any name or label value that would be too long is cut and ends with a hash
  of the whole, so it stays unique and deterministic.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

SNAPSHOT_LABEL = "vmsnap.io/snapshot"  # on the records and VolumeSnapshots of a snapshot
VM_LABEL = "vmsnap.io/vm"  # on the same objects: the VM they came from
RESTORE_LABEL = "vmsnap.io/restore"  # on the PVCs a restore makes: the restore's name
CLONE_LABEL = "vmsnap.io/clone"  # on the VM and PVCs a clone makes: the clone's name
CLUSTER_LABEL = "vmsnap.io/cluster"  # on every object vmsnap makes: the cluster's id
# On a schedule's snapshots: the schedule's name, which hands them to its retention.
SCHEDULE_LABEL = "schedule.vmsnap.io/name"
CUT_LABEL_PREFIX = "vmsnap.io/cut-"  # on a group's PVCs, for the time of its cut
MAX_NAME = 253  # a DNS-1123 subdomain: object names
MAX_LABEL = 63  # a DNS-1123 label and a label value


def snapshot_workflow_id(cluster: str, namespace: str, name: str) -> str:
    """`snapshot/{cluster}/{namespace}/{name}`: starting the same snapshot twice joins the first."""
    return _workflow_id("snapshot", cluster, namespace, name)


def delete_snapshot_workflow_id(cluster: str, namespace: str, name: str) -> str:
    """`delete-snapshot/{cluster}/{namespace}/{name}`: one deletion of a snapshot at a time."""
    return _workflow_id("delete-snapshot", cluster, namespace, name)


def restore_workflow_id(cluster: str, namespace: str, target: str) -> str:
    """`restore/{cluster}/{namespace}/{target}`: one restore per VM at a time."""
    return _workflow_id("restore", cluster, namespace, target)


def clone_workflow_id(cluster: str, namespace: str, target: str) -> str:
    """`clone/{cluster}/{namespace}/{target}`: one clone into a VM at a time."""
    return _workflow_id("clone", cluster, namespace, target)


def _workflow_id(operation: str, cluster: str, namespace: str, name: str) -> str:
    return "/".join([operation, *([cluster] if cluster else []), namespace, name])


def generated_snapshot_name(vm: str, at: datetime) -> str:
    """The name of a snapshot started without one: the VM and the start time (UTC)."""
    return bounded(f"{vm}-{at:%Y%m%d-%H%M%S}", MAX_NAME)


def volume_snapshot_name(snapshot: str, volume: str) -> str:
    return bounded(f"{snapshot}-{volume}", MAX_NAME)


def group_snapshot_name(snapshot: str, driver: str) -> str:
    """The VolumeGroupSnapshot of `snapshot` for the disks of `driver`: the driver's first
    DNS label (`hostpath` of `hostpath.csi.k8s.io`) and 6 hex of its hash, so two drivers
    that share a first label never share a group; bounded to a label's 63 characters, the
    group's name being a label value of its selector too."""
    head = "".join(c if c.isalnum() else "-" for c in driver.split(".")[0].lower()).strip("-")
    digest = hashlib.sha256(driver.encode()).hexdigest()[:6]
    return bounded(f"{snapshot}-{head or 'csi'}-{digest}", MAX_LABEL)


def cut_label_key(namespace: str, group: str) -> str:
    """The label a group's selector matches on the PVCs it cuts: one key per group."""
    digest = hashlib.sha256(f"{namespace}/{group}".encode()).hexdigest()[:16]
    return f"{CUT_LABEL_PREFIX}{digest}"


def content_name(snapshot: str) -> str:
    return bounded(f"{snapshot}-content", MAX_NAME)


def snapshot_labels(snapshot: str, vm: str, user_labels: dict[str, str],
                    cluster: str = "") -> dict[str, str]:
    """Labels of every object a snapshot makes: the user's, plus which snapshot, VM and
    cluster (none on runs from before clusters were named)."""
    labels = {**user_labels, SNAPSHOT_LABEL: label_value(snapshot), VM_LABEL: label_value(vm)}
    if cluster:
        labels[CLUSTER_LABEL] = label_value(cluster)
    return labels


def snapshot_selector(snapshot: str) -> str:
    """Label selector of the VolumeSnapshots of a snapshot."""
    return f"{SNAPSHOT_LABEL}={label_value(snapshot)}"


def label_value(text: str) -> str:
    """`text` as a label value (at most 63 characters)."""
    return bounded(text, MAX_LABEL)


def bounded(text: str, limit: int) -> str:
    """`text` if it fits in `limit`, else its head, a dash and 10 hex digits of its hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    head = text[: limit - len(digest) - 1].rstrip("-.")
    return f"{head}-{digest}"
