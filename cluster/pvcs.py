"""PersistentVolumeClaims: read for eligibility and backups, create from a VolumeSnapshot.

Restore and clone make new PVCs from VolumeSnapshots under deterministic
names; creating one that a previous attempt already made (same source) is
success, so each step can be retried.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import quote

from kubernetes.utils.quantity import parse_quantity

from cluster.apis import KubeApis, core_path, delete_options, place_in_namespace, replaced
from cluster.creation_marks import marked
from cluster.errors import AlreadyExists, Conflict, NotFound, translated_errors
from cluster.informer import WatchedCollection
from cluster.waiting import ListWatch, Objects
from rules.creation_marks import GIVEN_TO_VM_ANNOTATION
from rules.models import PvcState

SNAPSHOT_API_GROUP = "snapshot.storage.k8s.io"
STATE_LABEL = "persistent-state-for"  # KubeVirt's, on a VM's TPM/EFI state claim
STATE_MOVED_BY = "vmsnap.io/state-moved-by"  # the restore that took that label off
_COPIED_SPEC_FIELDS = ("accessModes", "resources", "storageClassName", "volumeMode")


def _looks_usable(pvc: Mapping[str, Any]) -> bool:
    """Bound and not terminating: what a snapshot needs (anything else is confirmed)."""
    return (((pvc.get("status") or {}).get("phase") == "Bound")
            and not (pvc.get("metadata") or {}).get("deletionTimestamp"))


def pvc_state(obj: Mapping[str, Any]) -> PvcState:
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
    return PvcState(
        name=str(metadata.get("name") or ""),
        phase=status.get("phase"),
        storage_class=spec.get("storageClassName"),
        requested=_storage(spec.get("resources", {}).get("requests")),
        capacity=_storage(status.get("capacity")),
        volume_name=spec.get("volumeName") or None,
        data_source=source.get("name") if source.get("kind") == "VolumeSnapshot" else None,
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def _storage(resources: Mapping[str, Any] | None) -> str | None:
    value = (resources or {}).get("storage")
    return None if value is None else str(value)


def larger_quantity(first: str | None, second: str | None) -> str | None:
    """The larger of two storage quantities (`1Gi`, `1073741824`), as written."""
    if first is None or second is None:
        return first if second is None else second
    try:
        return first if parse_quantity(first) >= parse_quantity(second) else second
    except ValueError as exc:
        raise ValueError(f"bad storage quantity: {exc}") from exc


def pvc_from_snapshot(
    name: str,
    backed_up_pvc: Mapping[str, Any],
    snapshot_name: str,
    restore_size: str | None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A new PVC restored from a VolumeSnapshot, as KubeVirt makes it.

    Copies accessModes, resources, storageClassName and volumeMode from the
    backed-up PVC; dataSource and dataSourceRef name the VolumeSnapshot; the
    storage request is the larger of the old request and the restoreSize.
    """
    if not name or not snapshot_name:
        raise ValueError("a restored PVC needs a name and a VolumeSnapshot name")
    old_spec = backed_up_pvc.get("spec") or {}
    spec: dict[str, Any] = {
        field: copy.deepcopy(old_spec[field]) for field in _COPIED_SPEC_FIELDS if field in old_spec
    }
    requests = spec.setdefault("resources", {}).setdefault("requests", {})
    storage = larger_quantity(_storage(requests), restore_size)
    if storage is None:
        raise ValueError(
            f"cannot size PVC {name}: the backed-up PVC has no storage request and the "
            f"VolumeSnapshot {snapshot_name} no restoreSize"
        )
    requests["storage"] = storage
    source = {"apiGroup": SNAPSHOT_API_GROUP, "kind": "VolumeSnapshot", "name": snapshot_name}
    spec["dataSource"] = dict(source)
    spec["dataSourceRef"] = dict(source)
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
            "spec": spec}


class PvcOperations(KubeApis):
    """Typed operations on PersistentVolumeClaims (and the StorageClasses behind them)."""

    def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The PVC as stored, or None when it does not exist."""
        try:
            with translated_errors(f"get PersistentVolumeClaim {namespace}/{name}"):
                return dict(self.request_json(
                    "GET", core_path("persistentvolumeclaims", namespace, name)))
        except NotFound:
            return None

    def pvc_cache(self, namespace: str) -> WatchedCollection | None:
        """The namespace's watch-fed PVC cache when this client keeps one and it follows the
        server now (see `cluster.informer`); None: read from the server."""
        return None

    def get_pvcs(self, namespace: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """The named PVCs that exist, by name.

        From the namespace's cache when there is one (no request): a cached PVC that is
        Bound and not terminating is used as seen (a snapshot of it is what it was made
        for); one missing or looking unusable is asked of the server, whose answer
        counts (the cache may lag a PVC that just bound). Without a cache, in one
        request: a GET for one name, else one LIST of the namespace (a snapshot reads
        all of a VM's PVCs at several steps, and N GETs made up a third of its requests).
        """
        wanted = list(dict.fromkeys(names))
        cache = self.pvc_cache(namespace) if wanted else None
        if cache is not None:
            found: dict[str, dict[str, Any]] = {}
            for name in wanted:
                pvc = cache.get(name)
                if pvc is None or not _looks_usable(pvc):
                    pvc = self.get_pvc(namespace, name)
                if pvc is not None:
                    found[name] = pvc
            return found
        if len(wanted) <= 1:
            return {n: pvc for n in wanted if (pvc := self.get_pvc(namespace, n)) is not None}
        with translated_errors(f"list PersistentVolumeClaims in {namespace}"):
            listed = self.request_json("GET", core_path("persistentvolumeclaims", namespace))
        by_name = {str((item.get("metadata") or {}).get("name")): dict(item)
                   for item in (listed or {}).get("items") or []}
        return {n: by_name[n] for n in wanted if n in by_name}

    def create_pvc(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a PVC; if one of that name exists with the same data source (a retried
        step), return it; with another source, Conflict."""
        body = copy.deepcopy(body)
        body.setdefault("apiVersion", "v1")
        body.setdefault("kind", "PersistentVolumeClaim")
        metadata = body.setdefault("metadata", {})
        place_in_namespace(metadata, namespace, "PVC")
        name = str(metadata.get("name") or "")
        if not name:
            raise ValueError("a PVC body needs metadata.name")
        body = marked(body, lambda: self.cluster_id)
        try:
            with translated_errors(f"create PersistentVolumeClaim {namespace}/{name}"):
                return dict(self.request_json(
                    "POST", core_path("persistentvolumeclaims", namespace), body=body))
        except AlreadyExists:
            existing = self.get_pvc(namespace, name)
            if existing is None:
                raise  # deleted in between: let the caller retry
        wanted = _source_of(body)
        found = _source_of(existing)
        if wanted != found:
            raise Conflict(
                f"PersistentVolumeClaim {namespace}/{name} already exists with data source "
                f"{found or 'none'}, not {wanted or 'none'}",
                status=409, reason="AlreadyExists",
            )
        if (existing.get("metadata") or {}).get("deletionTimestamp"):
            raise Conflict(
                f"PersistentVolumeClaim {namespace}/{name} is being deleted; "
                "create it again once gone",
                status=409, reason="Terminating",
            )
        return existing

    def own_pvc(self, namespace: str, name: str, owner: Mapping[str, Any]) -> bool:
        """Give an unowned PVC its owner (the VM a restore wrote): a JSON patch that tests
        the PVC has no owner yet, so a PVC someone else owns meanwhile is left alone.
        False when it has an owner already (this one on a retry, or another)."""
        pvc = self.get_pvc(namespace, name)
        if pvc is None:
            raise NotFound(f"PersistentVolumeClaim {namespace}/{name} not found",
                           status=404, reason="NotFound")
        if (pvc.get("metadata") or {}).get("ownerReferences"):
            return False
        operations = [
            {"op": "test", "path": "/metadata/resourceVersion",
             "value": pvc["metadata"]["resourceVersion"]},
            {"op": "add", "path": "/metadata/ownerReferences", "value": [dict(owner)]},
        ]
        with translated_errors(f"own PersistentVolumeClaim {namespace}/{name}"):
            self.request_json("PATCH", core_path("persistentvolumeclaims", namespace, name),
                              body=operations, content_type="application/json-patch+json")
        return True

    def give_to_vm(self, namespace: str, names: Collection[str], vm: str) -> None:
        """Note on each PVC that a VM's spec is pointed at it (`GIVEN_TO_VM_ANNOTATION`),
        before the VM is written: such a PVC is a VM's disk, never an orphan."""
        for name in sorted(set(names)):
            with translated_errors(f"annotate PersistentVolumeClaim {namespace}/{name}"):
                self.request_json(
                    "PATCH", core_path("persistentvolumeclaims", namespace, name),
                    body={"metadata": {"annotations": {GIVEN_TO_VM_ANNOTATION: vm}}},
                    content_type="application/merge-patch+json")

    def state_claims(self, namespace: str, vm: str) -> list[dict[str, Any]]:
        """The claims labelled as the VM's persistent TPM/EFI state (KubeVirt's backend
        storage, label `persistent-state-for: <vm>`)."""
        listed = self.request_json("GET", core_path("persistentvolumeclaims", namespace),
                                   query={"labelSelector": f"{STATE_LABEL}={vm}"})
        return [dict(item) for item in (listed or {}).get("items") or []]

    def move_state_label(self, namespace: str, name: str, vm: str | None, restore: str) -> None:
        """Take the state label off a claim (`vm` None), marking it with the restore that
        did so, or put it back (`vm`) and drop the mark: a restore moves a VM's state to
        the claim it restored, and its undo moves it back."""
        labels: dict[str, str | None] = (
            {STATE_LABEL: None, STATE_MOVED_BY: restore} if vm is None
            else {STATE_LABEL: vm, STATE_MOVED_BY: None})
        with translated_errors(f"relabel PersistentVolumeClaim {namespace}/{name}"):
            self.request_json("PATCH", core_path("persistentvolumeclaims", namespace, name),
                              body={"metadata": {"labels": labels}},
                              content_type="application/merge-patch+json")

    def claims_moved_by(self, namespace: str, restore: str) -> list[str]:
        """The claims whose state label a restore took off."""
        listed = self.request_json("GET", core_path("persistentvolumeclaims", namespace),
                                   query={"labelSelector": f"{STATE_MOVED_BY}={restore}"})
        return [str(i["metadata"]["name"]) for i in (listed or {}).get("items") or []]

    def delete_pvc(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete; False when already gone. With `uid`, only the PVC of that uid (else
        `Replaced`: one made again under the name meanwhile is left alone)."""
        try:
            with translated_errors(f"delete PersistentVolumeClaim {namespace}/{name}"):
                self.request_json("DELETE", core_path("persistentvolumeclaims", namespace, name),
                                  body=delete_options(uid))
        except NotFound:
            return False
        except Conflict as err:
            raise replaced(err, uid) from err
        return True

    def get_storage_class(self, name: str) -> dict[str, Any] | None:
        try:
            with translated_errors(f"get StorageClass {name}"):
                return dict(self.request_json(
                    "GET", f"/apis/storage.k8s.io/v1/storageclasses/{quote(name, safe='')}"))
        except NotFound:
            return None

    def watch_pvcs(
        self,
        namespace: str,
        names: list[str],
        timeout_seconds: float,
        on_change: Callable[[list[PvcState]], None] | None = None,
        progress_interval_seconds: float = 5.0,
        pending_is_ready: Collection[str] = (),
    ) -> list[PvcState]:
        """Return once every named PVC is Bound (watch; see `waiting.ListWatch`).

        `pending_is_ready`: PVCs whose class binds only for a consumer, when nothing will
        consume them yet: Pending is as far as they go, and counts as ready.
        """
        ordered = list(dict.fromkeys(names))
        waiting_is_fine = set(pending_is_ready)

        def ready(name: str, obj: Mapping[str, Any]) -> bool:
            state = pvc_state(obj)
            return state.bound or (name in waiting_is_fine and state.phase == "Pending"
                                   and not state.deleting)

        def pending(objects: Objects) -> list[str]:
            return [
                f"{n} (phase {pvc_state(o).phase or 'unknown'})"
                for n, o in objects.items() if not ready(n, o)
            ]

        def states(objects: Objects) -> list[PvcState]:
            return [pvc_state(objects[n]) for n in ordered if n in objects]

        watcher = ListWatch(
            self.list_call(core_path("persistentvolumeclaims", namespace)),
            ordered,
            pending,
            kind="PersistentVolumeClaim",
            what=f"PersistentVolumeClaims in {namespace} to be Bound",
            connect_timeout_seconds=self.connect_timeout_seconds,
            request_timeout_seconds=self.request_timeout_seconds,
            progress_interval_seconds=progress_interval_seconds,
            list_json=lambda query: self.request_json(
                "GET", core_path("persistentvolumeclaims", namespace), query=query),
        )
        report = None if on_change is None else (lambda objects: on_change(states(objects)))
        return states(watcher.run(timeout_seconds, report))


def _source_of(pvc: Mapping[str, Any]) -> str | None:
    """`Kind/name` of the PVC's data source, None when it has none."""
    spec = pvc.get("spec") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource")
    if not source:
        return None
    return f"{source.get('kind') or ''}/{source.get('name') or ''}"
