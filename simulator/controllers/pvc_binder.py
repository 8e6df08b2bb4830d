"""PVC binding: what the PV controller and a CSI external-provisioner do for a claim.

- A claim with no `storageClassName` gets the default StorageClass (the
  admission plugin's and PV controller's job); `""` asks for static binding,
  which never happens here (no PersistentVolumes): it stays Pending.
- A claim of a missing class stays Pending with a ProvisioningFailed Event.
- `volumeBindingMode: WaitForFirstConsumer` waits for a consumer: the VM
  controller marks the claim with `volume.kubernetes.io/selected-node` when it
  schedules a VMI that uses it, as the scheduler does.
- A claim whose `dataSourceRef`/`dataSource` is a VolumeSnapshot binds only once
  the snapshot is `readyToUse`; a missing, deleting or unready snapshot, a size
  below the snapshot's `restoreSize`, or a snapshot from another driver leave
  it Pending with a ProvisioningFailed Event (the external-provisioner's words).
- Binding takes `sim.vmsnap.io/bind-latency`: from the PVC, else (for a claim
  restored from a snapshot) the snapshot's VolumeSnapshotClass, else the
  StorageClass, else 50ms. It counts from the moment the claim can bind.

Bound: `spec.volumeName: pvc-<uid>`, the provisioner annotations, and
`status.phase: Bound` with `accessModes` and `capacity` (the request).
"""

from __future__ import annotations

from typing import Any

from simulator import annotations as ann
from simulator.controllers.runtime import CORE, SNAPSHOT, STORAGE, Index, Runtime, annotations_dict
from simulator.controllers.storage import (
    NO_PROVISIONER,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    STORAGE_PROVISIONER_BETA,
    StorageView,
    is_deleting,
    requested_storage,
    to_bytes,
)
from simulator.store import WatchEvent

QUEUE = "pvc-binder"
UNBOUND = "pvc-binder/unbound"
COMPONENT = "persistentvolume-controller"
_TOLERANCE = 0.001

Key = tuple[str, str]


def snapshot_source(pvc: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the VolumeSnapshot a claim is restored from, if any."""
    spec = pvc.get("spec") or {}
    for field in ("dataSourceRef", "dataSource"):
        source = spec.get(field)
        if (
            isinstance(source, dict)
            and source.get("kind") == "VolumeSnapshot"
            and source.get("apiGroup") == SNAPSHOT
            and source.get("name")
        ):
            namespace = source.get("namespace") or pvc["metadata"].get("namespace", "")
            return namespace, str(source["name"])
    return None


class PvcBinder:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        self._due: dict[Key, float] = {}
        self._last_problem: dict[Key, str] = {}
        # Claims waiting to be restored, by the (namespace, name) of their VolumeSnapshot.
        self._restores = Index()
        runtime.register(QUEUE, self.reconcile)
        runtime.register(UNBOUND, self._requeue_unbound)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        metadata = obj["metadata"]
        if key == (CORE, "persistentvolumeclaims"):
            claim = (metadata.get("namespace", ""), metadata["name"])
            source = snapshot_source(obj)
            waiting = event.type != "DELETED" and (obj.get("status") or {}).get("phase") != "Bound"
            self._restores.update(claim, [source] if source and waiting else [])
            self.rt.enqueue(QUEUE, claim)
        elif key == (STORAGE, "storageclasses"):
            self.rt.enqueue(UNBOUND, None)
        elif key == (SNAPSHOT, "volumesnapshots"):
            for referrer in self._restores.referrers(
                (metadata.get("namespace", ""), metadata["name"])
            ):
                self.rt.enqueue(QUEUE, referrer)

    def _requeue_unbound(self, _: None) -> None:
        """A StorageClass changed: every claim still waiting may now bind."""
        for pvc in self.rt.list_view(CORE, "persistentvolumeclaims"):
            if (pvc.get("status") or {}).get("phase") != "Bound":
                self.rt.enqueue(
                    QUEUE, (pvc["metadata"].get("namespace", ""), pvc["metadata"]["name"])
                )

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        pvc = self.view.pvc(namespace, name)
        if pvc is None or is_deleting(pvc):
            self._forget(key)
            return
        status = pvc.get("status") or {}
        phase = status.get("phase")
        if phase in ("Bound", "Lost"):
            self._forget(key)
            return
        if phase != "Pending":
            # The API server defaults a new claim's phase to Pending.
            pvc["status"] = {**status, "phase": "Pending"}
            self.rt.write_status(CORE, "persistentvolumeclaims", pvc, shared=True)
            return
        spec = pvc.get("spec") or {}
        if spec.get("storageClassName") is None:
            default = self.view.default_storage_class()
            if default is None:
                self._problem(
                    key,
                    pvc,
                    "Normal",
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
                return
            pvc.setdefault("spec", {})["storageClassName"] = default["metadata"]["name"]
            self.rt.write(CORE, "persistentvolumeclaims", pvc, shared=True)
            return
        class_name = spec["storageClassName"]
        if class_name == "":
            self._problem(
                key,
                pvc,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
            return
        storage_class = self.view.storage_class(class_name)
        if storage_class is None:
            self._problem(
                key,
                pvc,
                "Warning",
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{class_name}" not found',
            )
            return
        provisioner = str(storage_class.get("provisioner") or "")
        waits_for_consumer = storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"
        if waits_for_consumer and not (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE):
            self._problem(
                key,
                pvc,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
            return
        if provisioner == NO_PROVISIONER:
            self._problem(
                key,
                pvc,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim",
            )
            return
        source = snapshot_source(pvc)
        latency_sources: list[dict[str, Any] | None] = [pvc, storage_class]
        if source is not None:
            problem, snapshot_class = self._snapshot_problem(pvc, source, provisioner)
            if problem:
                self._problem(
                    key,
                    pvc,
                    "Warning",
                    "ProvisioningFailed",
                    f'failed to provision volume with StorageClass "{class_name}": {problem}',
                )
                return
            latency_sources = [pvc, snapshot_class, storage_class]
        capacity = requested_storage(pvc)
        if capacity is None:
            self._problem(
                key,
                pvc,
                "Warning",
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{class_name}": '
                "the claim requests no storage",
            )
            return
        due = self._due.get(key)
        if due is None:
            delay = self._latency(pvc, latency_sources)
            self._due[key] = self.rt.now() + delay
            self.rt.enqueue_after(QUEUE, key, delay, settles=True)
            return
        if self.rt.now() + _TOLERANCE < due:
            return
        self._bind(pvc, provisioner, capacity)
        self._forget(key)

    def _snapshot_problem(
        self, pvc: dict[str, Any], source: tuple[str, str], provisioner: str
    ) -> tuple[str | None, dict[str, Any] | None]:
        namespace, name = source
        prefix = f"error getting handle for DataSource Type VolumeSnapshot by Name {name}: "
        snapshot = self.view.snapshot(namespace, name)
        if snapshot is None:
            return (
                prefix + f"error getting snapshot {name} from api server: "
                f'volumesnapshots.snapshot.storage.k8s.io "{name}" not found',
                None,
            )
        if is_deleting(snapshot):
            return prefix + f"snapshot {name} is currently being deleted", None
        status = snapshot.get("status") or {}
        if status.get("readyToUse") is not True:
            return prefix + f"snapshot {name} is not Ready", None
        content = self.view.content(status.get("boundVolumeSnapshotContentName"))
        driver = str(((content or {}).get("spec") or {}).get("driver") or "")
        if driver and driver != provisioner:
            return (
                prefix + f"driver name {driver} defined in snapshot content "
                f"{content['metadata']['name'] if content else ''} is not the same as the "
                f"driver name {provisioner} of the storage class",
                None,
            )
        try:
            restore = to_bytes(status.get("restoreSize"))
            requested = to_bytes(requested_storage(pvc))
        except ValueError as exc:
            return prefix + f"bad size: {exc}", None
        if restore is not None and requested is not None and requested < restore:
            return (
                f"requested volume size {requested} is less than the size {restore} for the "
                f"source snapshot {name}",
                None,
            )
        snapshot_class = self.view.snapshot_class(
            (snapshot.get("spec") or {}).get("volumeSnapshotClassName")
        )
        return None, snapshot_class

    def _latency(self, pvc: dict[str, Any], sources: list[dict[str, Any] | None]) -> float:
        try:
            return ann.first_latency(ann.BIND_LATENCY, *sources)
        except ann.AnnotationError as exc:
            self.rt.record(pvc, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator")
            return ann.default_latency(ann.BIND_LATENCY)

    def _bind(self, pvc: dict[str, Any], provisioner: str, capacity: str) -> None:
        volume = f"pvc-{pvc['metadata']['uid']}"
        pvc["spec"]["volumeName"] = volume
        notes = annotations_dict(pvc)
        notes["pv.kubernetes.io/bind-completed"] = "yes"
        notes["pv.kubernetes.io/bound-by-controller"] = "yes"
        notes[STORAGE_PROVISIONER] = provisioner
        notes[STORAGE_PROVISIONER_BETA] = provisioner
        pvc = self.rt.write(CORE, "persistentvolumeclaims", pvc)
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": list(pvc["spec"].get("accessModes") or []),
            "capacity": {"storage": capacity},
        }
        pvc = self.rt.write_status(CORE, "persistentvolumeclaims", pvc)
        self.rt.record(
            pvc,
            "Normal",
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {volume}",
            f"{provisioner}_sim",
        )

    def _problem(
        self, key: Key, pvc: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Record why the claim waits, once per distinct reason; the latency restarts later."""
        self._due.pop(key, None)
        if self._last_problem.get(key) == message:
            return
        self._last_problem[key] = message
        self.rt.record(pvc, type_, reason, message, COMPONENT)

    def _forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._last_problem.pop(key, None)
