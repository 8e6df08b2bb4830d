"""The orphan sweeper's activity: gather the facts, classify, remove the orphans.

Listing, classifying and removing happen in one activity so that the facts a
removal rests on are seconds old, not minutes; just before each removal the
object is read again (same uid, same creation mark, not given to a VM, not being
deleted) and its workflows asked again, so an operation that started meanwhile
keeps its objects; and the delete itself carries the judged uid as a
precondition, so an object made again under the name in between is not the one
removed. A PVC is never removed while a Pod mounts it, a VM or VMI names it, a VM
owns it, or once a restore or clone gave it to a VM. Only what this cluster's
vmsnap made (`rules.creation_marks`) is removed, and only what was made after the
sweeper was installed (its schedule's creation) unless the sweep includes older
objects. Every removal is logged with its reason; already gone is not an error.

A VolumeGroupSnapshot is judged as a VolumeSnapshot is, and removed first (the group
snapshot controller deletes its members). Stale `vmsnap.io/cut-*` labels on PVCs
(`rules.cut_labels`) are removed after the objects, each by a JSON patch that tests the
PVC's uid and the label's value and removes that label only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import application_error
from activities.registration import implements
from cluster.apis import (
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
    VOLUME_GROUP_SNAPSHOTS,
    VOLUME_SNAPSHOTS,
    CustomResource,
    core_path,
)
from cluster.client import Cluster
from cluster.errors import ClusterError, Invalid, Replaced, translated_errors
from cluster.group_snapshots import member_of
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
from contracts.sweep import (
    SWEEP_ORPHANED_OBJECTS,
    Removal,
    SweepOrphansResult,
    SweepRequest,
    sweeper_schedule_id,
)
from rules.creation_marks import CREATED_BY_ANNOTATION, GIVEN_TO_VM_ANNOTATION
from rules.cut_labels import (
    CutLabel,
    CutLabelVerdict,
    cut_label_workflow_ids,
    cut_labels_of,
    plan_cut_labels,
)
from rules.namespace_scope import NamespaceScope
from rules.naming import SNAPSHOT_LABEL
from rules.orphans import (
    CLONE_LABEL,
    RESTORE_LABEL,
    LabelledObject,
    RecordFacts,
    SweepBounds,
    Verdict,
    WorkflowState,
    operation_of,
    plan_sweep,
    record_label,
    workflow_ids_to_ask,
)
from rules.volumes import claim_name

log = logging.getLogger("vmsnap.sweeper")
_RESOURCES: dict[str, CustomResource] = {
    "VolumeGroupSnapshot": VOLUME_GROUP_SNAPSHOTS,
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

    def installed_at(self, task_queue: str) -> datetime | None:
        """When the sweeper of the worker on `task_queue` was installed: the creation of its
        schedule (`vmsnap-sweeper-{task queue}`); None when there is none or Temporal
        cannot say (then every orphan counts as older: only reported)."""
        future = asyncio.run_coroutine_threadsafe(self._schedule_created(task_queue), self._loop)
        try:
            return future.result(self._timeout)
        except Exception as err:
            log.warning("cannot tell when the sweeper was installed (schedule %s): %s",
                        sweeper_schedule_id(task_queue), err)
            return None

    async def _schedule_created(self, task_queue: str) -> datetime | None:
        handle = self._client.get_schedule_handle(sweeper_schedule_id(task_queue))
        try:
            return (await handle.describe()).info.created_at
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise


# ---- facts from the cluster -----------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def labelled_object(kind: str, obj: Mapping[str, Any]) -> LabelledObject:
    """A listed object as the classifier sees it."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    annotations = meta.get("annotations") or {}
    owners = meta.get("ownerReferences") or []
    pvc = kind == "PersistentVolumeClaim"
    return LabelledObject(
        kind=kind,  # type: ignore[arg-type]
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""), created=parse_time(meta.get("creationTimestamp")),
        labels=dict(meta.get("labels") or {}),
        owner_uids=[str(r.get("uid")) for r in owners
                    if r.get("kind") == VIRTUAL_MACHINE_SNAPSHOTS.kind],
        owner_vms=[str(r.get("name")) for r in owners if r.get("kind") == VIRTUAL_MACHINES.kind]
        if pvc else [],
        given_to_vm=annotations.get(GIVEN_TO_VM_ANNOTATION) or None if pvc else None,
        deleting=bool(meta.get("deletionTimestamp")),
        volume_snapshots=[str(b.get("volumeSnapshotName")) for b in spec.get("volumeBackups") or []
                          if b.get("volumeSnapshotName")],
        workflow_id=annotations.get(WORKFLOW_ID_ANNOTATION) or None if pvc else None,
        created_by=annotations.get(CREATED_BY_ANNOTATION) or None,
        group=member_of(obj) if kind == "VolumeSnapshot" else None,
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
                  status.get("virtualMachineSnapshotContentName"),
                  *((g or {}).get("name") for g in status.get("volumeGroupSnapshots") or []
                    if isinstance(g, dict))]
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


@dataclass
class ClaimUsers:
    """Who names one claim: VMs, VMIs (their specs) and Pods (their volumes)."""

    vms: list[str] = field(default_factory=list)
    vmis: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)


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
        for ns in self.scopes:
            with translated_errors(f"list PersistentVolumeClaim {ns or ''} {selector}"):
                answer = self.cluster.request_json(
                    "GET", core_path("persistentvolumeclaims", ns),
                    query={"labelSelector": selector})
            items += (answer or {}).get("items") or []
        return items

    def groups(self) -> list[LabelledObject]:
        """Every VolumeGroupSnapshot in scope (none where the group snapshot API is not
        served): those labelled by a snapshot are judged, and any names a cut label."""
        return [labelled_object("VolumeGroupSnapshot", o) for ns in self.scopes
                for o in self.cluster.list_group_snapshots(ns)]

    def objects(self, groups: list[LabelledObject]) -> list[LabelledObject]:
        """The labelled objects; a member counts as one only while its group exists (a
        member left by a group gone is judged as any VolumeSnapshot)."""
        found = [g for g in groups if operation_of(g) is not None]
        existing = {(g.namespace, g.name) for g in groups}
        for snapshot in self._custom(VOLUME_SNAPSHOTS, SNAPSHOT_LABEL):
            judged = labelled_object("VolumeSnapshot", snapshot)
            if (judged.namespace, judged.group) not in existing:
                judged.group = None
            found.append(judged)
        found += [labelled_object("VirtualMachineSnapshotContent", o)
                  for o in self._custom(VIRTUAL_MACHINE_SNAPSHOT_CONTENTS, SNAPSHOT_LABEL)]
        pvcs = {(_meta(o).get("namespace"), _meta(o).get("name")): o
                for label in (RESTORE_LABEL, CLONE_LABEL) for o in self._pvcs(label)}
        users = self.claim_users({str(ns) for ns, _ in pvcs})
        for (ns, name), obj in pvcs.items():
            pvc = labelled_object("PersistentVolumeClaim", obj)
            used = users.get((str(ns), str(name))) or ClaimUsers()
            pvc.used_by_vms = sorted(used.vms)
            pvc.used_by_vmis = sorted(used.vmis)
            pvc.used_by_pods = sorted(used.pods)
            found.append(pvc)
        return found

    def claim_users(self, namespaces: set[str]) -> dict[tuple[str, str], ClaimUsers]:
        """(namespace, claim) -> the VMs and VMIs whose spec names that claim (a PVC or a
        DataVolume volume) and the Pods that mount it, in each namespace holding a PVC
        the sweeper looks at."""
        users: dict[tuple[str, str], ClaimUsers] = {}

        def add(ns: str, claim: str | None, kind: str, name: Any) -> None:
            if claim:
                getattr(users.setdefault((ns, claim), ClaimUsers()), kind).append(str(name))

        for ns in sorted(namespaces):
            for vm in self.cluster.list_custom(VIRTUAL_MACHINES, ns).get("items") or []:
                template = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
                for volume in template.get("volumes") or []:
                    add(ns, claim_name(volume), "vms", _meta(vm).get("name"))
            for vmi in self.cluster.list_custom(VIRTUAL_MACHINE_INSTANCES, ns).get("items") or []:
                for volume in (vmi.get("spec") or {}).get("volumes") or []:
                    add(ns, claim_name(volume), "vmis", _meta(vmi).get("name"))
            with translated_errors(f"list Pods {ns}"):
                pods = self.cluster.request_json("GET", core_path("pods", ns))
            for pod in (pods or {}).get("items") or []:
                for volume in (pod.get("spec") or {}).get("volumes") or []:
                    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                    add(ns, claim, "pods", _meta(pod).get("name"))
        return users

    def cut_labels(self) -> list[CutLabel]:
        """Every `vmsnap.io/cut-*` label on the PVCs in scope (no selector picks a key by
        its prefix: every PVC is listed)."""
        return [label for pvc in self._pvcs("") for label in cut_labels_of(
            str(_meta(pvc).get("namespace") or ""), str(_meta(pvc).get("name") or ""),
            str(_meta(pvc).get("uid") or ""), _meta(pvc).get("labels") or {})]

    def drivers(self) -> list[str]:
        """The CSI drivers a group can be named after: those of the VolumeGroupSnapshot
        classes and the StorageClasses' provisioners."""
        with translated_errors("list StorageClass"):
            classes = self.cluster.request_json("GET", "/apis/storage.k8s.io/v1/storageclasses")
        found = [c.get("provisioner") for c in (classes or {}).get("items") or []]
        found += [c.get("driver") for c in self.cluster.list_group_snapshot_classes()]
        return sorted({str(d) for d in found if d})

    def records(self) -> list[RecordFacts]:
        kinds = (("snapshot", VIRTUAL_MACHINE_SNAPSHOTS), ("restore", VIRTUAL_MACHINE_RESTORES),
                 ("clone", VIRTUAL_MACHINE_CLONES))
        return [record_facts(op, obj) for op, resource in kinds for obj in self._custom(resource)]


# ---- the activity ---------------------------------------------------------------------------


InstallTime = Callable[[str], datetime | None]


class SweeperActivities:
    """`installed_at(task queue)`: when the sweeper was installed (default: its schedule's
    creation, asked of Temporal; None: not known)."""

    def __init__(self, cluster: Cluster, states: WorkflowStates | None,
                 scope: NamespaceScope | None = None,
                 installed_at: InstallTime | None = None) -> None:
        self.cluster = cluster
        self.workflow_states = states
        self.scope = scope or NamespaceScope()
        self.installed_at = installed_at or (
            states.installed_at if states is not None else lambda _queue: None)

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
        cluster_id = self._cluster_id()
        try:
            groups = facts.groups()
            objects = facts.objects(groups)
            records = facts.records()
            labels = facts.cut_labels()
            drivers = facts.drivers() if labels else []
        except ClusterError as err:
            raise application_error(err) from err
        states = self._states([
            *workflow_ids_to_ask(objects, records),
            *cut_label_workflow_ids(labels, groups, records, drivers, cluster_id)])
        bounds = SweepBounds(cluster=cluster_id,
                             installed_at=self.installed_at(activity.info().task_queue),
                             include_older_than_install=sweep.include_older_than_install)
        verdicts = plan_sweep(objects, records, states, request.now, sweep.grace, bounds)
        by_ref = {(o.kind, o.namespace, o.name): o for o in objects}
        result = SweepOrphansResult(scope=sweep.scope, dry_run=sweep.dry_run,
                                    grace_seconds=sweep.grace, swept_at=request.now,
                                    installed_at=bounds.installed_at)
        for verdict in verdicts:
            activity.heartbeat(verdict.name)
            if verdict.action == "too_young":
                result.too_young.append(verdict)
            elif verdict.action == "report":
                log.info("older than the sweeper, reported only: %s %s/%s: %s", verdict.kind,
                         verdict.namespace, verdict.name, verdict.reason)
                result.reported.append(verdict)
            elif verdict.action == "keep":
                result.kept.append(verdict)
            elif sweep.dry_run:
                log.info("dry run: would remove %s %s/%s: %s", verdict.kind,
                         verdict.namespace, verdict.name, verdict.reason)
                result.removed.append(_removal(verdict, removed=False))
            else:
                self._remove(verdict, by_ref[(verdict.kind, verdict.namespace, verdict.name)],
                             result)
        for label in plan_cut_labels(labels, groups, records, drivers, states, cluster_id):
            activity.heartbeat(label.pvc)
            if label.action == "remove" and sweep.dry_run:
                log.info("dry run: would remove label %s from PVC %s/%s: %s", label.key,
                         label.namespace, label.pvc, label.reason)
            elif label.action == "remove":
                label = self._remove_label(label, labels, result)
            result.cut_labels.append(label)
        log.info("orphan sweep of %s: %s", sweep.scope, result.summary())
        return result

    def _remove_label(self, verdict: CutLabelVerdict, labels: list[CutLabel],
                      result: SweepOrphansResult) -> CutLabelVerdict:
        """Re-check (no workflow started meanwhile, same PVC, same value), then remove that
        label only, by a patch that tests the PVC's uid and the label's value."""
        label = next(x for x in labels if (x.namespace, x.pvc, x.key)
                     == (verdict.namespace, verdict.pvc, verdict.key))
        live = [i for i, s in self._states(verdict.workflow_ids).items()
                if s not in ("closed", "not_found")]
        if live:
            return _label_kept(verdict, f"workflow {live[0]} is running again (or cannot be "
                                        "asked) since the sweep looked")
        try:
            removed = self.cluster.remove_pvc_label(label.namespace, label.pvc, label.key,
                                                    uid=label.pvc_uid, value=label.value)
        except Invalid:
            return _label_kept(verdict, "the PVC was made again, or the label changed or went, "
                                        "since the sweep looked (the patch's tests failed)")
        except ClusterError as err:
            result.errors.append(f"{label.ref}: {err.message}")
            return _label_kept(verdict, f"could not remove it: {err.message}")
        if removed:
            log.info("removed stale %s: %s", label.ref, verdict.reason)
        return verdict.model_copy(update={"removed": removed})

    def _cluster_id(self) -> str:
        try:
            return self.cluster.cluster_id
        except ClusterError as err:
            raise application_error(err) from err

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
        """Re-check (same object, same mark, not given to a VM meanwhile, no workflow started
        meanwhile), then delete that object and no other (uid precondition)."""
        live = [i for i, s in self._states(verdict.workflow_ids).items() if s != "closed"
                and s != "not_found"]
        if live:
            result.kept.append(_kept(verdict, f"workflow {live[0]} is running again (or cannot "
                                              "be asked) since the sweep looked"))
            return
        try:
            current = self._read(obj)
            if current is None:
                result.removed.append(_removal(verdict, removed=False))
                return
            changed = _changed(obj, labelled_object(obj.kind, current))
            if changed:
                result.kept.append(_kept(verdict, f"{changed} since the sweep looked"))
                return
            removed = self._delete(obj)
        except Replaced:
            result.kept.append(_kept(verdict, "replaced by a new object of the same name "
                                              "since the sweep looked (uid precondition)"))
            return
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
        """Delete the object judged, by its uid: one made again under the name meanwhile is
        left alone (`Replaced`)."""
        if obj.kind == "PersistentVolumeClaim":
            return self.cluster.delete_pvc(obj.namespace, obj.name, uid=obj.uid)
        return self.cluster.delete_custom(_RESOURCES[obj.kind], obj.namespace, obj.name,
                                          uid=obj.uid)


def _changed(judged: LabelledObject, now: LabelledObject) -> str | None:
    """What changed on an object between its verdict and its removal that voids the
    verdict."""
    if now.uid != judged.uid:
        return "replaced by a new object of the same name"
    if now.deleting:
        return "being deleted by someone else"
    if now.created_by != judged.created_by:
        return "its creation mark changed"
    if now.owner_vms or now.given_to_vm:
        return "given to a VirtualMachine"
    return None


def _label_kept(verdict: CutLabelVerdict, reason: str) -> CutLabelVerdict:
    return verdict.model_copy(update={"action": "keep", "reason": reason})


def _kept(verdict: Verdict, reason: str) -> Verdict:
    return verdict.model_copy(update={"action": "keep", "reason": reason})


def _removal(verdict: Verdict, removed: bool) -> Removal:
    return Removal(kind=verdict.kind, namespace=verdict.namespace, name=verdict.name,
                   reason=verdict.reason, removed=removed)
