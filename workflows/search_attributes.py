"""The custom search attributes vmsnap's workflows carry, so the Temporal UI can filter them.

`VmName = "web-1"` lists every operation on that VM; `SnapshotPhase` follows the
record's phase; `VmsnapCluster` names the cluster the run works in, set at its start
(clusters sharing a Temporal namespace list only their own runs). They must be
registered on the namespace before a workflow upserts them (an unknown attribute fails
the workflow task): the worker registers any that are missing at start-up when the
server allows it (`starter.search_attributes`). Pure: safe in workflow code.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

VM_NAME = SearchAttributeKey.for_keyword("VmName")
VM_NAMESPACE = SearchAttributeKey.for_keyword("VmNamespace")
SNAPSHOT_PHASE = SearchAttributeKey.for_keyword("SnapshotPhase")
OPERATION = SearchAttributeKey.for_keyword("VmsnapOperation")
CLUSTER = SearchAttributeKey.for_keyword("VmsnapCluster")  # rules.cluster_identity

ALL = (VM_NAME, VM_NAMESPACE, SNAPSHOT_PHASE, OPERATION, CLUSTER)
