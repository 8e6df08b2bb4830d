"""Which cluster a run belongs to: the id that keeps two clusters apart on one Temporal
namespace.

Several clusters' workers may share a Temporal namespace. Without a name for the
cluster, their workflow IDs collide (`snapshot/{namespace}/{name}` is the same VM name
in both), their workers poll one task queue and run each other's activities against
the wrong API server, and a lock or a mark cannot say whose it is. So every workflow
ID, the task queue, the VM lock, the labels and the sweeper's ownership marks carry
the cluster id.

The id is the operator's (`VMSNAP_CLUSTER_ID`), or derived from the uid of the
`kube-system` namespace, which every cluster has from its creation to its end and no
other cluster shares (the same convention as other cluster tools): its first
`DERIVED_LENGTH` hex digits. An operator names clusters when several share a Temporal
namespace, so that people read `prod-east` rather than a hex prefix; nothing else
changes. Pure: safe in workflow code.
"""

from __future__ import annotations

import re

ENV = "VMSNAP_CLUSTER_ID"
MAX_LENGTH = 40  # it goes into workflow IDs, task queues and label values
DERIVED_LENGTH = 12  # hex digits of kube-system's uid: 48 bits, no collision in practice
_CLUSTER_ID = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_TASK_QUEUE_PREFIX = "vmsnap-"


class InvalidClusterId(ValueError):
    pass


def check_cluster_id(value: str) -> str:
    """`value` if it can name a cluster, else InvalidClusterId saying what it must be."""
    if len(value) > MAX_LENGTH or not _CLUSTER_ID.fullmatch(value):
        raise InvalidClusterId(
            f"cluster id {value!r} is not valid: lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {MAX_LENGTH} characters")
    return value


def derived_cluster_id(kube_system_uid: str) -> str:
    """The id of a cluster whose operator names none: from its kube-system uid."""
    digits = kube_system_uid.replace("-", "").lower()
    if len(digits) < DERIVED_LENGTH or not re.fullmatch(r"[0-9a-f]+", digits):
        raise InvalidClusterId(
            f"the kube-system namespace's uid {kube_system_uid!r} is not a UUID; set "
            f"{ENV} to name the cluster")
    return digits[:DERIVED_LENGTH]


def task_queue_for(cluster: str) -> str:
    """`vmsnap-{cluster}`: the task queue of a cluster's workers, unless configured."""
    return f"{_TASK_QUEUE_PREFIX}{cluster}"
