"""The orphan sweeper's activity: gather the facts, classify, remove the orphans.

Listing, classifying and removing happen in one activity so that the facts a
removal rests on are seconds old, not minutes; just before each removal the
object is read again (same uid, not being deleted) and its workflows asked
again, so an operation that started meanwhile keeps its objects. Every
removal is logged with its reason; already gone is not an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import application_error
from activities.registration import implements
from cluster.apis import VIRTUAL_MACHINES, VOLUME_SNAPSHOTS, CustomResource
from cluster.client import Cluster
from cluster.errors import ClusterError, translated_errors
from cluster.record_kinds import (
    RUN_ID_ANNOTATION,
    VIRTUAL_MACHINE_CLONES,
    VIRTUAL_MACHINE_RESTORES,
    VIRTUAL_MACHINE_SNAPSHOT_CONTENTS,
    VIRTUAL_MACHINE_SNAPSHOTS,
    WORKFLOW_ID_ANNOTATION,
)
from cluster.snapshots import parse_time
from contracts.admission import NAMESPACE_NOT_SERVED
from contracts.sweep import SWEEP_ORPHANED_OBJECTS, Removal, SweepOrphansResult, SweepRequest
from rules.namespace_scope import NamespaceScope
from rules.naming import SNAPSHOT_LABEL
from rules.orphans import (
    CLONE_LABEL,
    RESTORE_LABEL,
    LabelledObject,
    RecordFacts,
    Verdict,
    WorkflowState,
    plan_sweep,
    record_label,
    workflow_ids_to_ask,
)
from rules.volumes import claim_name

log = logging.getLogger("vmsnap.sweeper")
_RESOURCES: dict[str, CustomResource] = {
    "VolumeSnapshot": VOLUME_SNAPSHOTS,
    "VirtualMachineSnapshotContent": VIRTUAL_MACHINE_SNAPSHOT_CONTENTS,
}


class WorkflowStates:
    """`state(workflow_id)`: running / closed / not_found / unknown, asked of Temporal from an
    activity thread through the worker's event loop (the latest run of that ID)."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop,
                 timeout_seconds: float = 10.0) -> None:
        self._client = client
        self._loop = loop
        self._timeout = timeout_seconds

    def state(self, workflow_id: str) -> WorkflowState:
        future = asyncio.run_coroutine_threadsafe(self._ask(workflow_id), self._loop)
        try:
            return future.result(self._timeout)
        except Exception as err:  # cannot tell: the classifier keeps the object
            log.warning("cannot ask Temporal about workflow %s: %s", workflow_id, err)
            return "unknown"

    async def _ask(self, workflow_id: str) -> WorkflowState:
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "not_found"
            raise
        return "running" if description.status == WorkflowExecutionStatus.RUNNING else "closed"

    def states(self, workflow_ids: Iterable[str]) -> dict[str, WorkflowState]:
        return {i: self.state(i) for i in workflow_ids}


# ---- facts from the cluster -----------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def labelled_object(kind: str, obj: Mapping[str, Any]) -> LabelledObject:
    """A listed object as the classifier sees it."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    return LabelledObject(
        kind=kind,  # type: ignore[arg-type]
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""), created=parse_time(meta.get("creationTimestamp")),
        labels=dict(meta.get("labels") or {}),
        owner_uids=[str(r.get("uid")) for r in meta.get("ownerReferences") or []
                    if r.get("kind") == VIRTUAL_MACHINE_SNAPSHOTS.kind],
        deleting=bool(meta.get("deletionTimestamp")),
        volume_snapshots=[str(b.get("volumeSnapshotName")) for b in spec.get("volumeBackups") or []
                          if b.get("volumeSnapshotName")],
        workflow_id=(meta.get("annotations") or {}).get(WORKFLOW_ID_ANNOTATION) or None
        if kind == "PersistentVolumeClaim" else None,
    )


def record_facts(operation: str, obj: Mapping[str, Any]) -> RecordFacts:
    """A record (snapshot, restore or clone) as the classifier sees it: what it claims."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name = str(meta.get("name") or "")
    annotations = meta.get("annotations") or {}
    if operation == "snapshot":
        claims = [*(status.get("volumeSnapshots") or []),
                  status.get("virtualMachineSnapshotContentName")]
        target = None
    elif operation == "restore":
        claims = [r.get("persistentVolumeClaim") for r in status.get("restores") or []]
        target = (spec.get("target") or {}).get("name")
    else:
        claims = list(status.get("restoredPvcs") or [])
        target = (spec.get("target") or {}).get("name")
    return RecordFacts(
        operation=operation,  # type: ignore[arg-type]
        namespace=str(meta.get("namespace") or ""), name=name,
        label=record_label(operation, name, meta.get("labels") or {}),  # type: ignore[arg-type]
        uid=str(meta.get("uid") or ""), phase=status.get("phase"),
        claims=[str(c) for c in claims if c],
        workflow_id=annotations.get(WORKFLOW_ID_ANNOTATION) if annotations.get(
            RUN_ID_ANNOTATION) else None,
        target=target)


class ClusterFacts:
    """Lists what the sweeper looks at, in some namespaces or all (None)."""

    def __init__(self, cluster: Cluster, namespaces: list[str] | None) -> None:
        self.cluster = cluster
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]

    def _custom(self, resource: CustomResource, selector: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for ns in self.scopes:
            items += self.cluster.list_custom(resource, ns, selector).get("items") or []
        return items

    def _pvcs(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        core = self.cluster.core
        for ns in self.scopes:
            with translated_errors(f"list PersistentVolumeClaim {ns or ''} {selector}"):
                if ns is None:
                    answer = self.cluster.call_json(
                        core.list_persistent_volume_claim_for_all_namespaces,
                        label_selector=selector)
                else:
                    answer = self.cluster.call_json(
                        core.list_namespaced_persistent_volume_claim, ns,
                        label_selector=selector)
            items += (answer or {}).get("items") or []
        return items

    def objects(self) -> list[LabelledObject]:
        found = [labelled_object("VolumeSnapshot", o)
                 for o in self._custom(VOLUME_SNAPSHOTS, SNAPSHOT_LABEL)]
        found += [labelled_object("VirtualMachineSnapshotContent", o)
                  for o in self._custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, SNAPSHOT_LABEL)]
        pvcs = {(_meta(o).get("namespace"), _meta(o).get("name")): o
                for label in (RESTORE_LABEL, CLONE_LABEL) for o in self._pvcs(label)}
        users = self._claim_users({str(ns) for ns, _ in pvcs})
        for (ns, name), obj in pvcs.items():
            pvc = labelled_object("PersistentVolumeClaim", obj)
            pvc.used_by_vms = sorted(users.get((str(ns), str(name)), []))
            found.append(pvc)
        return found

    def _claim_users(self, namespaces: set[str]) -> dict[tuple[str, str], list[str]]:
        """(namespace, claim) -> the VMs whose spec names that claim."""
        users: dict[tuple[str, str], list[str]] = {}
        for ns in sorted(namespaces):
            for vm in self.cluster.list_custom(VIRTUAL_MACHINES, ns).get("items") or []:
                template = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
                for volume in template.get("volumes") or []:
                    claim = claim_name(volume)
                    if claim:
                        users.setdefault((ns, claim), []).append(str(_meta(vm).get("name")))
        return users

    def records(self) -> list[RecordFacts]:
        kinds = (("snapshot", VIRTUAL_MACHINE_SNAPSHOTS), ("restore", VIRTUAL_MACHINE_RESTORES),
                 ("clone", VIRTUAL_MACHINE_CLONES))
        return [record_facts(op, obj) for op, resource in kinds for obj in self._custom(resource)]


# ---- the activity ---------------------------------------------------------------------------


class SweeperActivities:
    def __init__(self, cluster: Cluster, states: WorkflowStates | None,
                 scope: NamespaceScope | None = None) -> None:
        self.cluster = cluster
        self.workflow_states = states
        self.scope = scope or NamespaceScope()

    def all(self) -> list[Callable[..., object]]:
        return [self.sweep_orphaned_objects]

    def _states(self, ids: Iterable[str]) -> dict[str, WorkflowState]:
        if self.workflow_states is None:  # no Temporal client: never guess
            return dict.fromkeys(ids, "unknown")
        return self.workflow_states.states(ids)

    @implements(SWEEP_ORPHANED_OBJECTS)
    def sweep_orphaned_objects(self, request: SweepRequest) -> SweepOrphansResult:
        """List, classify (ages in the workflow's time), and remove orphans in order."""
        sweep = request.input
        facts = ClusterFacts(self.cluster, self._namespaces(sweep.namespaces,
                                                            sweep.all_namespaces))
        try:
            objects = facts.objects()
            records = facts.records()
        except ClusterError as err:
            raise application_error(err) from err
        states = self._states(workflow_ids_to_ask(objects, records))
        verdicts = plan_sweep(objects, records, states, request.now, sweep.grace)
        by_ref = {(o.kind, o.namespace, o.name): o for o in objects}
        result = SweepOrphansResult(scope=sweep.scope, dry_run=sweep.dry_run,
                                    grace_seconds=sweep.grace, swept_at=request.now)
        for verdict in verdicts:
            activity.heartbeat(verdict.name)
            if verdict.action == "too_young":
                result.too_young.append(verdict)
            elif verdict.action == "keep":
                result.kept.append(verdict)
            elif sweep.dry_run:
                log.info("dry run: would remove %s %s/%s: %s", verdict.kind,
                         verdict.namespace, verdict.name, verdict.reason)
                result.removed.append(_removal(verdict, removed=False))
            else:
                self._remove(verdict, by_ref[(verdict.kind, verdict.namespace, verdict.name)],
                             result)
        log.info("orphan sweep of %s: %s", sweep.scope, result.summary())
        return result

    def _namespaces(self, named: list[str], everywhere: bool) -> list[str] | None:
        """Where to look: the named namespaces the worker serves; "all" is every namespace
        when it serves all, else the ones it serves (None: list cluster-wide)."""
        if everywhere:
            return None if self.scope.everything else self.scope.listed()
        refused = self.scope.refused(named)
        if refused:  # admission refuses these first; never list outside the scope
            raise ApplicationError(f"namespace {refused[0]!r} is not served by this worker",
                                   type=NAMESPACE_NOT_SERVED, non_retryable=True)
        return named

    def _remove(self, verdict: Verdict, obj: LabelledObject, result: SweepOrphansResult) -> None:
        """Re-check (same object, no workflow started meanwhile), then delete."""
        live = [i for i, s in self._states(verdict.workflow_ids).items() if s != "closed"
                and s != "not_found"]
        if live:
            result.kept.append(verdict.model_copy(update={
                "action": "keep", "reason": f"workflow {live[0]} is running again (or cannot "
                                            "be asked) since the sweep looked"}))
            return
        try:
            current = self._read(obj)
            if current is None:
                result.removed.append(_removal(verdict, removed=False))
                return
            if str(_meta(current).get("uid") or "") != obj.uid:
                result.kept.append(verdict.model_copy(update={
                    "action": "keep", "reason": "replaced by a new object of the same name "
                                                "since the sweep looked"}))
                return
            removed = self._delete(obj)
        except ClusterError as err:
            result.errors.append(f"{obj.ref}: {err.message}")
            return
        log.info("removed orphan %s: %s", obj.ref, verdict.reason)
        result.removed.append(_removal(verdict, removed=removed))

    def _read(self, obj: LabelledObject) -> dict[str, Any] | None:
        if obj.kind == "PersistentVolumeClaim":
            return self.cluster.get_pvc(obj.namespace, obj.name)
        return self.cluster.get_custom_or_none(_RESOURCES[obj.kind], obj.namespace, obj.name)

    def _delete(self, obj: LabelledObject) -> bool:
        if obj.kind == "PersistentVolumeClaim":
            return self.cluster.delete_pvc(obj.namespace, obj.name)
        return self.cluster.delete_custom(_RESOURCES[obj.kind], obj.namespace, obj.name)


def _removal(verdict: Verdict, removed: bool) -> Removal:
    return Removal(kind=verdict.kind, namespace=verdict.namespace, name=verdict.name,
                   reason=verdict.reason, removed=removed)
