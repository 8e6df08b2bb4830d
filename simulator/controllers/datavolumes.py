"""CDI: DataVolumes make their PVCs and report CDI's phases while the data arrives.

Followed from kubevirt/containerized-data-importer v1.66.0,
`pkg/controller/datavolume/` (controller-base.go, import-controller.go,
snapshot-clone-controller.go, pvc-clone-controller.go, conditions.go) and
`pkg/controller/common/util.go`. The simulator serves no CSIDriver,
StorageProfile or CDIConfig objects and runs no pods, so:

- The claim: named like the DataVolume, in its namespace, controlled by it
  (`ownerReferences`, controller); labels `app: containerized-data-importer`,
  `app.kubernetes.io/component: storage`, `app.kubernetes.io/managed-by:
  cdi-controller` (and `alerts.k8s.io/KubePersistentVolumeFillingUp: disabled`
  for Filesystem), the DataVolume's own labels and annotations, and CDI's
  annotations (`storage.contentType`, `storage.pod.restarts`,
  `storage.preallocation.requested`, `createdForDataVolume: <dv uid>`, the
  import source and endpoint). `spec.pvc` is copied as it is; `spec.storage`
  gets ReadWriteOnce/Filesystem when it names neither (what a StorageProfile
  of a known provisioner says) and, for Filesystem, the request grows by CDI's
  default filesystem overhead (0.06, aligned to 1MiB: `GetRequiredSpace`).
  A class that does not exist: `ErrClaimNotValid`, no claim.
- Import (`http`, `registry`, `s3`, `gcs`, `blank`, `imageio`, `vddk`): the
  claim binds as any claim; then `ImportScheduled`, `ImportInProgress`
  (`status.progress` "N.NN%") and `Succeeded` ("100.0%"), taking
  `sim.vmsnap.io/import-latency` from the bind. The PVC carries what CDI's
  import controller writes there (`storage.pod.phase`, `storage.import.importPodName`,
  the running condition).
- `snapshot` (a VolumeSnapshot; its namespace defaults to the DataVolume's):
  no claim until the snapshot has a status and a class (`CloneWithoutSource`,
  `CloneValidationFailed` Events as CDI's); then the claim restores it
  (`dataSource`), `CloneScheduled` while it waits for the snapshot, then
  `CloneFromSnapshotSourceInProgress`, `Succeeded` once Bound. A request left
  out is the snapshot's `restoreSize`.
- `pvc`: when a VolumeSnapshotClass serves the source's driver and the target
  class has the same provisioner, a smart clone: a temporary VolumeSnapshot
  `tmp-snapshot-<dv uid>` of the source (`SnapshotForSmartCloneInProgress`),
  then the claim restored from it (`CloneFromSnapshotSourceInProgress`), the
  snapshot deleted at `Succeeded`. Otherwise host-assisted (`cloneType: copy`):
  `CloneScheduled`, `CloneInProgress` with progress, `Succeeded`, taking
  `import-latency` from the bind.
- WaitForFirstConsumer: a claim of such a class that waits for its consumer
  leaves the DataVolume `WaitForFirstConsumer` (HonorWaitForFirstConsumer);
  KubeVirt schedules a temporary launcher pod for it, which binds it.
- Adoption: a PVC of the DataVolume's name that it does not control is adopted
  (controller owner reference added, `Succeeded` once Bound, no import) when it
  carries `cdi.kubevirt.io/storage.populatedFor: <dv name>`, or when the
  DataVolume carries `cdi.kubevirt.io/allowClaimAdoption: "true"` (KubeVirt
  sets it on every DataVolume it makes from a template) and the PVC was not
  made for this DataVolume (`createdForDataVolume`); the
  DataVolumeClaimAdoption feature gate is off, as by default. Otherwise the
  Warning `ErrResourceExists` ("Resource "x" already exists and is not managed
  by DataVolume") and nothing is done.
- Conditions Bound, Ready, Running and the Events CDI records (phase Events,
  and the Bound condition's reason on each change); `status.claimName`,
  `status.progress`, `status.restartCount` (left out while 0, as CDI's JSON
  does).
- Not followed: volume populators (CDI uses them only where a CSIDriver object
  names the class's provisioner), `sourceRef` (DataSources are not served),
  `upload`, checkpoints, cross-namespace clones, failed transfers.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from simulator import annotations as ann
from simulator.controllers.runtime import (
    CORE,
    SNAPSHOT,
    STORAGE,
    Index,
    Runtime,
    rfc3339_seconds,
)
from simulator.controllers.storage import (
    StorageView,
    is_bound,
    is_deleting,
    requested_storage,
    to_bytes,
)
from simulator.errors import ApiError
from simulator.store import WatchEvent

CDI = "cdi.kubevirt.io"
CDI_VERSION = "v1beta1"
QUEUE = "cdi"
EVERY_DV = "cdi/all"
COMPONENT = "datavolume-import-controller"
CLONE_COMPONENT = "datavolume-pvc-clone-controller"
SNAPSHOT_CLONE_COMPONENT = "datavolume-snapshot-clone-controller"

ALLOW_CLAIM_ADOPTION = CDI + "/allowClaimAdoption"
POPULATED_FOR = CDI + "/storage.populatedFor"
PRE_POPULATED = CDI + "/storage.prePopulated"
CREATED_FOR = CDI + "/createdForDataVolume"
POD_PHASE = CDI + "/storage.pod.phase"
POD_READY = CDI + "/storage.pod.ready"
POD_RESTARTS = CDI + "/storage.pod.restarts"
IMPORT_POD = CDI + "/storage.import.importPodName"
RUNNING = CDI + "/storage.condition.running"
CLONE_TYPE = CDI + "/cloneType"
CLONE_REQUEST = "k8s.io/CloneRequest"
VIRT_DEFAULT_CLASS = "storageclass.kubevirt.io/is-default-virt-class"

IMPORT_SOURCES = ("http", "s3", "gcs", "registry", "blank", "imageio", "vddk")
FILESYSTEM_OVERHEAD = 0.06  # common.DefaultGlobalOverhead
_ALIGN = 1024 * 1024  # util.DefaultAlignBlockSize
_PVC_FIELDS = (
    "accessModes",
    "resources",
    "storageClassName",
    "volumeMode",
    "selector",
    "volumeName",
    "dataSource",
    "dataSourceRef",
)
# The share of the transfer spent scheduling the importer pod; progress is reported in
# the same steps after it (CDI polls the pod's metrics every 2s).
_STEP = 0.2
_TOLERANCE = 0.001

Key = tuple[str, str]


# ---- the claim -------------------------------------------------------------------------


def required_space(size: int, overhead: float = FILESYSTEM_OVERHEAD) -> int:
    """util.GetRequiredSpace: aligned to 1MiB, then the filesystem overhead added."""
    aligned = math.ceil(size / _ALIGN) * _ALIGN
    return math.ceil(aligned * (1 + overhead))


def source_of(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, settings) of a DataVolume's source: `snapshot`, `pvc`, an import source, or
    ("", {}) for what the simulator does not run (sourceRef, upload, none)."""
    source = spec.get("source")
    if not isinstance(source, dict):
        return "", {}
    for kind in ("pvc", "snapshot", *IMPORT_SOURCES):
        if isinstance(source.get(kind), dict):
            return kind, source[kind]
    return "", {}


def pvc_for_template(
    owner: dict[str, Any],
    template: dict[str, Any],
    *,
    filesystem_overhead: float = 0.0,
) -> dict[str, Any]:
    """The PVC CDI creates for the DataVolume `owner` whose metadata and spec are
    `template`'s (the DataVolume itself, or the VM template it was made from).

    `spec.pvc` is copied; `spec.storage` gets ReadWriteOnce and Filesystem when it names
    neither, and a Filesystem request grows by `filesystem_overhead` (CDIConfig's, 0.06
    by default; the controller passes it). A `snapshot` source in the owner's namespace
    becomes the claim's `dataSource`."""
    metadata = template.get("metadata") or {}
    spec = template.get("spec") or {}
    if isinstance(spec.get("pvc"), dict):
        claim = {k: copy.deepcopy(v) for k, v in spec["pvc"].items() if k in _PVC_FIELDS}
    else:
        storage = spec.get("storage") or {}
        claim = {k: copy.deepcopy(v) for k, v in storage.items() if k in _PVC_FIELDS}
        if not claim.get("accessModes") and not claim.get("volumeMode"):
            claim["accessModes"] = ["ReadWriteOnce"]
            claim["volumeMode"] = "Filesystem"
        elif not claim.get("accessModes"):
            claim["accessModes"] = ["ReadWriteOnce"]
        elif not claim.get("volumeMode"):
            claim["volumeMode"] = "Filesystem"
        requested = ((claim.get("resources") or {}).get("requests") or {}).get("storage")
        if requested is not None and filesystem_overhead and claim["volumeMode"] == "Filesystem":
            size = to_bytes(requested)
            if size is not None:
                claim["resources"]["requests"]["storage"] = str(
                    required_space(size, filesystem_overhead)
                )
    owner_meta = owner["metadata"]
    namespace = owner_meta.get("namespace")
    kind, settings = source_of(spec)
    if (
        kind == "snapshot"
        and settings.get("name")
        and settings.get("namespace", namespace) == namespace
    ):
        claim["dataSource"] = {
            "apiGroup": SNAPSHOT,
            "kind": "VolumeSnapshot",
            "name": settings["name"],
        }
    labels = {"app": "containerized-data-importer"}
    if claim.get("volumeMode", "Filesystem") == "Filesystem":
        labels["alerts.k8s.io/KubePersistentVolumeFillingUp"] = "disabled"
    labels.update(metadata.get("labels") or {})
    labels["app.kubernetes.io/component"] = "storage"
    labels["app.kubernetes.io/managed-by"] = "cdi-controller"
    annotations = {
        **(metadata.get("annotations") or {}),
        POD_RESTARTS: "0",
        CDI + "/storage.contentType": str(spec.get("contentType") or "kubevirt"),
        CDI + "/storage.preallocation.requested": "true" if spec.get("preallocation") else "false",
        CREATED_FOR: str(owner_meta.get("uid", "")),
    }
    annotations.pop(POPULATED_FOR, None)  # a delayed annotation: added once Succeeded
    if kind in ("http", "registry"):
        annotations[CDI + "/storage.import.source"] = kind
        url = settings.get("url")
        if url:
            annotations[CDI + "/storage.import.endpoint"] = str(url)
    elif kind in IMPORT_SOURCES:
        annotations[CDI + "/storage.import.source"] = "none" if kind == "blank" else kind
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": metadata.get("name") or owner_meta.get("name"),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [controller_ref(owner)],
        },
        "spec": claim,
    }


def controller_ref(owner: dict[str, Any]) -> dict[str, Any]:
    """metav1.NewControllerRef of a DataVolume."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion") or f"{CDI}/{CDI_VERSION}",
        "kind": owner.get("kind") or "DataVolume",
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def claim_adoptable(pvc: dict[str, Any], dv: dict[str, Any]) -> bool:
    """pvcRequiresWork's reverse: `populatedFor`, or AllowClaimAdoption."""
    pvc_notes = (pvc.get("metadata") or {}).get("annotations") or {}
    dv_meta = dv.get("metadata") or {}
    if pvc_notes.get(POPULATED_FOR) == dv_meta.get("name"):
        return True
    if pvc_notes.get(CREATED_FOR) == dv_meta.get("uid"):
        return False
    allow = (dv_meta.get("annotations") or {}).get(ALLOW_CLAIM_ADOPTION)
    if allow is None:
        return False  # the DataVolumeClaimAdoption feature gate, off by default
    return allow.strip().lower() in ("1", "t", "true")  # strconv.ParseBool


def dv_phase(dv: dict[str, Any] | None) -> str:
    return str(((dv or {}).get("status") or {}).get("phase") or "")


# ---- the controller --------------------------------------------------------------------


class DataVolumes:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        # DataVolumes by the (namespace, name) of the snapshot or PVC they clone from.
        self._sources = Index()
        # Transfers under way: DataVolume key -> (uid, started at) once its claim is bound.
        self._transfers: dict[Key, tuple[str, float]] = {}
        runtime.register(QUEUE, self.reconcile)
        runtime.register(EVERY_DV, self._requeue_all)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        metadata = obj["metadata"]
        namespace = metadata.get("namespace", "")
        if key == (CDI, "datavolumes"):
            dv = (namespace, metadata["name"])
            sources: list[tuple[str, str]] = []
            if event.type != "DELETED":
                kind, settings = source_of(obj.get("spec") or {})
                if kind in ("pvc", "snapshot") and settings.get("name"):
                    sources.append((settings.get("namespace") or namespace, settings["name"]))
                    if kind == "pvc":
                        sources.append((sources[0][0], _temp_snapshot(obj)))
            self._sources.update(dv, sources)
            self.rt.enqueue(QUEUE, dv)
        elif key == (CORE, "persistentvolumeclaims"):
            owner = controller_of(obj)
            if owner is not None and owner.get("kind") == "DataVolume":
                self.rt.enqueue(QUEUE, (namespace, str(owner.get("name"))))
            self.rt.enqueue(QUEUE, (namespace, metadata["name"]))
            for referrer in self._sources.referrers((namespace, metadata["name"])):
                self.rt.enqueue(QUEUE, referrer)
        elif key == (SNAPSHOT, "volumesnapshots"):
            for referrer in self._sources.referrers((namespace, metadata["name"])):
                self.rt.enqueue(QUEUE, referrer)
        elif key == (STORAGE, "storageclasses"):
            self.rt.enqueue(EVERY_DV, None)

    def _requeue_all(self, _: None) -> None:
        for dv in self.rt.list_view(CDI, "datavolumes"):
            if dv_phase(dv) != "Succeeded":
                meta = dv["metadata"]
                self.rt.enqueue(QUEUE, (meta.get("namespace", ""), meta["name"]))

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        dv = self.rt.view(CDI, "datavolumes", namespace, name)
        if dv is None:
            self._transfers.pop(key, None)
            return
        if is_deleting(dv):
            return
        kind, settings = source_of(dv.get("spec") or {})
        pvc = self.rt.view(CORE, "persistentvolumeclaims", namespace, name)
        status = _Status()
        if pvc is not None:
            owner = controller_of(pvc)
            ours = owner is not None and owner.get("uid") == dv["metadata"]["uid"]
            if not ours:
                if not self._take_over(dv, pvc):
                    status.owned = False
                    self._write(dv, pvc, status)
                    return
                pvc = self.rt.view(CORE, "persistentvolumeclaims", namespace, name)
                status.adopted = True
            elif claim_adoptable(pvc, dv):
                status.adopted = True  # pvcRequiresWork: populated for it, or adopted
            if kind == "pvc":
                source = ((pvc or {}).get("spec") or {}).get("dataSource") or {}
                status.smart = source.get("name") == _temp_snapshot(dv)
        elif kind in IMPORT_SOURCES:
            pvc = self._create_claim(dv, status)
        elif kind == "snapshot":
            pvc = self._clone_from_snapshot(dv, settings, status)
        elif kind == "pvc":
            pvc = self._clone_from_pvc(dv, settings, status)
        self._progress(key, dv, kind, pvc, status)
        self._write(dv, pvc, status)

    # ---- taking over an existing claim ---------------------------------------------

    def _take_over(self, dv: dict[str, Any], pvc: dict[str, Any]) -> bool:
        """validatePVC: adopt the claim, or say why not; True when it is now the DV's."""
        name = pvc["metadata"]["name"]
        if is_deleting(pvc):
            self._event(dv, "Warning", "ErrResourceMarkedForDeletion",
                        f'Resource "{name}" marked for deletion')
            return False
        if not claim_adoptable(pvc, dv):
            self._event(dv, "Warning", "ErrResourceExists",
                        f'Resource "{name}" already exists and is not managed by DataVolume')
            return False
        if controller_of(pvc) is not None:
            return False  # controllerutil.SetControllerReference refuses a second controller
        refs = [*(pvc["metadata"].get("ownerReferences") or []), controller_ref(dv)]
        self.rt.write(CORE, "persistentvolumeclaims",
                      {**pvc, "metadata": {**pvc["metadata"], "ownerReferences": refs}})
        return True

    # ---- making the claim ----------------------------------------------------------

    def _create_claim(
        self, dv: dict[str, Any], status: _Status, *, detected_size: Any = None,
        source_snapshot: str | None = None, clone_request: str | None = None,
    ) -> dict[str, Any] | None:
        spec = dv.get("spec") or {}
        claim = pvc_for_template(dv, dv, filesystem_overhead=FILESYSTEM_OVERHEAD)
        requests = claim["spec"].setdefault("resources", {}).setdefault("requests", {})
        if not requests.get("storage") and detected_size is not None:
            requests["storage"] = str(detected_size)  # detectCloneSize: the source's size
        if not isinstance(spec.get("pvc"), dict):
            # renderPvcSpec for spec.storage: the class named, else the default one.
            storage = spec.get("storage") or {}
            storage_class = self._storage_class(storage.get("storageClassName"))
            if storage_class is None and not storage.get("accessModes"):
                message = "PVC spec is missing accessMode and no storageClass to choose profile"
                self._event(dv, "Warning", "ErrClaimNotValid", message)
                status.no_claim("ErrClaimNotValid", message)
                return None
            if storage_class is not None:
                claim["spec"]["storageClassName"] = storage_class["metadata"]["name"]
        if source_snapshot is not None:
            claim["spec"]["dataSource"] = {
                "apiGroup": SNAPSHOT, "kind": "VolumeSnapshot", "name": source_snapshot
            }
        if clone_request is not None:
            claim["metadata"]["annotations"][CLONE_REQUEST] = clone_request
            claim["metadata"]["annotations"][CLONE_TYPE] = "copy"
        try:
            created = self.rt.create(CORE, "persistentvolumeclaims", claim)
        except ApiError as exc:
            if exc.code == 409:
                return self.rt.view(CORE, "persistentvolumeclaims",
                                    dv["metadata"].get("namespace"), dv["metadata"]["name"])
            self._event(dv, "Warning", "ErrClaimNotValid", exc.message)
            status.no_claim("ErrClaimNotValid", exc.message)
            return None
        return created

    def _storage_class(self, name: str | None) -> dict[str, Any] | None:
        """getStorageClassByName for KubeVirt content: the named class, else the default
        virtualization class (`storageclass.kubevirt.io/is-default-virt-class`), else the
        cluster's default class."""
        if name:
            return self.view.storage_class_view(name)
        classes = self.rt.list_view(STORAGE, "storageclasses")
        for storage_class in classes:
            if ((storage_class["metadata"].get("annotations") or {}).get(VIRT_DEFAULT_CLASS)
                    == "true"):
                return storage_class
        return self.view.default_storage_class()

    def _clone_from_snapshot(
        self, dv: dict[str, Any], settings: dict[str, Any], status: _Status
    ) -> dict[str, Any] | None:
        namespace = settings.get("namespace") or dv["metadata"].get("namespace", "")
        name = str(settings.get("name") or "")
        snapshot = self.view.snapshot_view(namespace, name)
        if snapshot is None:
            self._refuse(dv, status, "CloneWithoutSource",
                         f"The source snapshot {name} doesn't exist")
            return None
        problem = _snapshot_problem(snapshot)
        if problem:
            self._refuse(dv, status, "CloneValidationFailed",
                         f"The clone doesn't meet the validation requirements: {problem}")
            return None
        restore_size = (snapshot.get("status") or {}).get("restoreSize")
        if restore_size is None and not _requested(dv):
            return None  # detectCloneSize reads the restoreSize the snapshot has yet to report
        return self._create_claim(dv, status, detected_size=restore_size)

    def _clone_from_pvc(
        self, dv: dict[str, Any], settings: dict[str, Any], status: _Status
    ) -> dict[str, Any] | None:
        dv_meta = dv["metadata"]
        namespace = settings.get("namespace") or dv_meta.get("namespace", "")
        name = str(settings.get("name") or "")
        source = self.view.pvc_view(namespace, name)
        if source is None:
            self._refuse(dv, status, "CloneWithoutSource", f"The source pvc {name} doesn't exist")
            return None
        capacity = ((source.get("status") or {}).get("capacity") or {}).get("storage")
        size = capacity or requested_storage(source)
        if namespace != dv_meta.get("namespace") or not is_bound(source):
            status.smart = False
        else:
            status.smart = self._smart_clone_possible(dv, source)
        if not status.smart:
            return self._create_claim(dv, status, detected_size=size,
                                      clone_request=f"{namespace}/{name}")
        temp = _temp_snapshot(dv)
        snapshot = self.view.snapshot_view(namespace, temp)
        if snapshot is None:
            self._take_snapshot(dv, namespace, name, temp)
            status.phase = "SnapshotForSmartCloneInProgress"
            return None
        if not (snapshot.get("status") or {}).get("readyToUse"):
            status.phase = "SnapshotForSmartCloneInProgress"
            return None
        return self._create_claim(dv, status, detected_size=size, source_snapshot=temp)

    def _smart_clone_possible(self, dv: dict[str, Any], source: dict[str, Any]) -> bool:
        """The snapshot strategy: a VolumeSnapshotClass for the source's driver, and the
        target class provisioned by the same driver (else host-assisted)."""
        driver = self.view.driver_of(source)
        if not any(c.get("driver") == driver
                   for c in self.rt.list_view(SNAPSHOT, "volumesnapshotclasses")):
            return False
        spec = dv.get("spec") or {}
        claim_spec = spec.get("pvc") if isinstance(spec.get("pvc"), dict) else spec.get("storage")
        target = self._storage_class((claim_spec or {}).get("storageClassName"))
        return target is not None and target.get("provisioner") == driver

    def _take_snapshot(self, dv: dict[str, Any], namespace: str, claim: str, name: str) -> None:
        snapshot = {
            "apiVersion": f"{SNAPSHOT}/v1",
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app": "containerized-data-importer",
                    "app.kubernetes.io/component": "storage",
                    "app.kubernetes.io/managed-by": "cdi-controller",
                    CDI + "/OwnedByUID": str(dv["metadata"]["uid"]),
                },
            },
            "spec": {"source": {"persistentVolumeClaimName": claim}},
        }
        try:
            self.rt.create(SNAPSHOT, "volumesnapshots", snapshot)
        except ApiError as exc:
            if exc.code != 409:
                raise

    @staticmethod
    def _refuse(dv: dict[str, Any], status: _Status, reason: str, message: str) -> None:
        """A clone that cannot start (syncDataVolumeStatusPhaseWithEvent with the phase it
        has): the Bound condition says why, and its change is the Event."""
        status.no_claim(reason, message)

    # ---- transfer progress ---------------------------------------------------------

    def _progress(
        self,
        key: Key,
        dv: dict[str, Any],
        kind: str,
        pvc: dict[str, Any] | None,
        status: _Status,
    ) -> None:
        """The worker pod of an import or host-assisted clone, from the bind on: its phase
        goes on the claim (`storage.pod.phase`), from which the DataVolume's is read."""
        if pvc is None or status.adopted or not status.owned:
            return
        if _notes(pvc).get(POD_PHASE) == "Succeeded":
            status.transfer = 1.0
            self._transfers.pop(key, None)
            return
        if not is_bound(pvc) or not (kind in IMPORT_SOURCES or (kind == "pvc"
                                                               and not status.smart)):
            self._transfers.pop(key, None)
            return
        uid = dv["metadata"]["uid"]
        started = self._transfers.get(key)
        now = self.rt.now()
        if started is None or started[0] != uid:
            started = (uid, now)
            self._transfers[key] = started
        latency = self._latency(dv)
        elapsed = now - started[1]
        step = latency * _STEP
        if elapsed + _TOLERANCE >= latency:
            status.transfer = 1.0
            self._transfers.pop(key, None)
            self._finish_transfer(pvc)
            return
        if elapsed + _TOLERANCE < step:
            status.transfer = None  # the pod is scheduled, not yet running
            self.rt.enqueue_after(QUEUE, key, step - elapsed, settles=True)
            self._mark_pod(pvc, "Pending")
            return
        done = int((elapsed + _TOLERANCE - step) / step)
        status.transfer = done * step / (latency - step)
        self.rt.enqueue_after(QUEUE, key, max(step * (done + 2) - elapsed, 0.0), settles=True)
        self._mark_pod(pvc, "Running")

    def _latency(self, dv: dict[str, Any]) -> float:
        try:
            return ann.first_latency(ann.IMPORT_LATENCY, dv)
        except ann.AnnotationError as exc:
            self.rt.record(dv, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator")
            return ann.default_latency(ann.IMPORT_LATENCY)

    def _mark_pod(self, pvc: dict[str, Any], phase: str) -> None:
        """What CDI's import controller writes on the claim about its worker pod."""
        notes = dict(pvc["metadata"].get("annotations") or {})
        wanted = {
            POD_PHASE: phase,
            POD_READY: "true" if phase == "Running" else "false",
            IMPORT_POD: f"importer-{pvc['metadata']['name']}",
        }
        if CLONE_REQUEST in notes:
            wanted.pop(IMPORT_POD)
        if phase == "Running":
            wanted.update({RUNNING: "true", RUNNING + ".message": "",
                           RUNNING + ".reason": "Pod is running"})
        if all(notes.get(k) == v for k, v in wanted.items()):
            return
        notes.update(wanted)
        self.rt.write(CORE, "persistentvolumeclaims",
                      {**pvc, "metadata": {**pvc["metadata"], "annotations": notes}})

    def _finish_transfer(self, pvc: dict[str, Any]) -> None:
        notes = dict(pvc["metadata"].get("annotations") or {})
        clone = CLONE_REQUEST in notes
        wanted = {
            POD_PHASE: "Succeeded",
            POD_READY: "false",
            RUNNING: "false",
            RUNNING + ".message": "Clone Complete" if clone else "Import Complete",
            RUNNING + ".reason": "Completed",
        }
        if not clone:
            wanted[IMPORT_POD] = f"importer-{pvc['metadata']['name']}"
        if all(notes.get(k) == v for k, v in wanted.items()):
            return
        notes.update(wanted)
        self.rt.write(CORE, "persistentvolumeclaims",
                      {**pvc, "metadata": {**pvc["metadata"], "annotations": notes}})

    # ---- status --------------------------------------------------------------------

    def _write(self, dv: dict[str, Any], pvc: dict[str, Any] | None, status: _Status) -> None:
        namespace, name = dv["metadata"].get("namespace", ""), dv["metadata"]["name"]
        fresh = self.rt.view(CDI, "datavolumes", namespace, name)
        if fresh is None:
            return
        dv = fresh
        if pvc is not None:
            pvc = self.rt.view(CORE, "persistentvolumeclaims", namespace, name)
        kind, settings = source_of(dv.get("spec") or {})
        previous = dv.get("status") or {}
        new = dict(previous)
        current = str(previous.get("phase") or "")
        if pvc is None and not current and not status.phase and not status.reason:
            current = "Pending"  # shouldSetDataVolumePending
        phase, event = self._phase(dv, kind, settings, pvc, status, current)
        if phase:
            new["phase"] = phase
        else:
            new.pop("phase", None)
        if pvc is not None and not is_deleting(pvc):
            new["claimName"] = pvc["metadata"]["name"]
            try:
                restarts = int(_notes(pvc).get(POD_RESTARTS, ""))
            except ValueError:
                restarts = -1
            if restarts > 0:
                new["restartCount"] = restarts
            elif restarts == 0:
                new.pop("restartCount", None)  # int32 `json:"restartCount,omitempty"`
            if status.transfer is not None and status.transfer >= 1.0 and phase == "Succeeded":
                new["progress"] = "100.0%"
            elif status.transfer is not None and phase in ("ImportInProgress", "CloneInProgress"):
                new["progress"] = f"{status.transfer * 100:.2f}%"
            elif not new.get("progress"):
                new["progress"] = "N/A"
        new["conditions"] = _conditions(previous.get("conditions"), phase, pvc, status)
        if new == previous:
            return
        written = self.rt.write_status(CDI, "datavolumes", {**dv, "status": new},
                                       shared=True, owned_status=True)
        if event is not None and phase != current:
            self._event(written, *event)
        before = _find(previous.get("conditions"), "Bound")
        after = _find(new["conditions"], "Bound")
        if after is not None and after.get("reason") and (
            before is None
            or any(before.get(k) != after.get(k) for k in ("status", "reason", "message"))
        ):
            self._event(written, "Normal", str(after["reason"]), str(after.get("message", "")))
        if status.adopted and pvc is not None and is_bound(pvc):
            self._mark_pre_populated(written, pvc)
        if phase == "Succeeded" and kind == "pvc" and status.smart:
            self.rt.delete(SNAPSHOT, "volumesnapshots",
                           settings.get("namespace") or namespace, _temp_snapshot(dv))

    def _phase(
        self,
        dv: dict[str, Any],
        kind: str,
        settings: dict[str, Any],
        pvc: dict[str, Any] | None,
        status: _Status,
        current: str,
    ) -> tuple[str, tuple[str, str, str] | None]:
        """(phase, Event) as updateStatus and the source's updateStatusPhase work them out."""
        name = dv["metadata"]["name"]
        namespace = dv["metadata"].get("namespace", "")
        source_ns = settings.get("namespace") or namespace
        source = str(settings.get("name") or "")

        def clone(phase: str) -> tuple[str, tuple[str, str, str] | None]:
            return phase, _clone_event(phase, kind, source_ns, source, namespace, name)

        if status.phase is not None:
            return clone(status.phase)
        if pvc is None or is_deleting(pvc) or not status.owned:
            return current, None
        pvc_phase = (pvc.get("status") or {}).get("phase")
        if pvc_phase == "Lost":
            return "Failed", ("Warning", "ErrClaimLost", f"PVC {name} lost")
        if status.adopted:
            return "Succeeded", None  # no work: Pending or Bound, it is done
        if pvc_phase != "Bound":
            if self._waits_for_consumer(pvc):
                return "WaitForFirstConsumer", None
            if kind == "snapshot" or (kind == "pvc" and status.smart):
                snapshot = self.view.snapshot_view(
                    source_ns, source if kind == "snapshot" else _temp_snapshot(dv)
                )
                if ((snapshot or {}).get("status") or {}).get("readyToUse"):
                    return clone("CloneFromSnapshotSourceInProgress")
                return clone("CloneScheduled")
            return "Pending", None
        if kind == "snapshot" or (kind == "pvc" and status.smart):
            return clone("Succeeded")
        if kind in IMPORT_SOURCES:
            if status.transfer is None:
                return "ImportScheduled", ("Normal", "ImportScheduled",
                                           f"Import into {name} scheduled")
            if status.transfer >= 1.0:
                return "Succeeded", ("Normal", "ImportSucceeded",
                                     f"Successfully imported into PVC {name}")
            return "ImportInProgress", ("Normal", "ImportInProgress",
                                        f"Import into {name} in progress")
        if kind == "pvc":
            if status.transfer is None:
                return clone("CloneScheduled")
            if status.transfer >= 1.0:
                return clone("Succeeded")
            return clone("CloneInProgress")
        return current or "PVCBound", None

    def _waits_for_consumer(self, pvc: dict[str, Any]) -> bool:
        """shouldBeMarkedWaitForFirstConsumer: a Pending claim of a WaitForFirstConsumer
        class (HonorWaitForFirstConsumer is on), until it is bound."""
        name = (pvc.get("spec") or {}).get("storageClassName")
        storage_class = self.view.storage_class_view(name)
        return (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"

    def _mark_pre_populated(self, dv: dict[str, Any], pvc: dict[str, Any]) -> None:
        """handlePrePopulation: a bound claim populated for the DV marks it prePopulated."""
        notes = (pvc["metadata"].get("annotations") or {})
        if notes.get(POPULATED_FOR) != dv["metadata"]["name"]:
            return
        dv_notes = dict(dv["metadata"].get("annotations") or {})
        if dv_notes.get(PRE_POPULATED) == pvc["metadata"]["name"]:
            return
        dv_notes[PRE_POPULATED] = pvc["metadata"]["name"]
        self.rt.write(CDI, "datavolumes",
                      {**dv, "metadata": {**dv["metadata"], "annotations": dv_notes}})

    def _event(self, dv: dict[str, Any], type_: str, reason: str, message: str) -> None:
        kind, _ = source_of(dv.get("spec") or {})
        component = {"pvc": CLONE_COMPONENT, "snapshot": SNAPSHOT_CLONE_COMPONENT}.get(
            kind, COMPONENT
        )
        self.rt.record(dv, type_, reason, message, component)


class _Status:
    """What one reconcile found out, for the status write."""

    def __init__(self) -> None:
        self.adopted = False  # the claim needs no work: populated for the DV, or adopted
        self.owned = True  # False: a claim the DV may not take (ErrResourceExists)
        self.smart = False  # a PVC clone by way of a temporary snapshot
        self.phase: str | None = None  # a phase decided before the claim exists
        self.transfer: float | None = None  # the worker pod's share done; None: not running
        self.reason = ""  # why there is no claim (the Bound condition's reason)
        self.message = ""

    def no_claim(self, reason: str, message: str) -> None:
        self.reason, self.message = reason, message


def _notes(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _temp_snapshot(dv: dict[str, Any]) -> str:
    return f"tmp-snapshot-{dv['metadata']['uid']}"


def _requested(dv: dict[str, Any]) -> bool:
    spec = dv.get("spec") or {}
    claim = spec.get("pvc") if isinstance(spec.get("pvc"), dict) else spec.get("storage")
    return bool((((claim or {}).get("resources") or {}).get("requests") or {}).get("storage"))


def _snapshot_problem(snapshot: dict[str, Any]) -> str:
    """cc.IsSnapshotValidForClone."""
    status = snapshot.get("status")
    if not status:
        return "no status on source snapshot yet"
    error = status.get("error")
    if error:
        return f"snapshot in error state with msg: {error.get('message') or 'no details'}"
    if not (snapshot.get("spec") or {}).get("volumeSnapshotClassName"):
        meta = snapshot["metadata"]
        # CDI's own words, name before namespace.
        return (f"snapshot {meta['name']}/{meta.get('namespace', '')} does not have volume "
                "snap class populated, can't clone")
    return ""


def _clone_event(
    phase: str, kind: str, source_ns: str, source: str, namespace: str, name: str
) -> tuple[str, str, str] | None:
    """setEventForPhase of clone-controller-base.go."""
    source_type = "snapshot" if kind == "snapshot" else "pvc"
    events = {
        "CloneScheduled": ("CloneScheduled",
                           f"Cloning from {source_ns}/{source} into {namespace}/{name} scheduled"),
        "SnapshotForSmartCloneInProgress": (
            "SnapshotForSmartCloneInProgress",
            f"Creating snapshot for smart-clone is in progress (for pvc {source_ns}/{source})",
        ),
        "CloneFromSnapshotSourceInProgress": (
            "CloneFromSnapshotSourceInProgress",
            f"Creating PVC from snapshot source is in progress (for {source_type} "
            f"{source_ns}/{source})",
        ),
        "CloneInProgress": ("CloneInProgress",
                            f"Cloning from {source_ns}/{source} into {namespace}/{name} "
                            "in progress"),
        "Succeeded": ("CloneSucceeded",
                      f"Successfully cloned from {source_ns}/{source} into {namespace}/{name}"),
    }
    found = events.get(phase)
    return ("Normal", *found) if found else None


def _find(conditions: Any, kind: str) -> dict[str, Any] | None:
    for cond in conditions or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def _conditions(
    previous: Any, phase: str, pvc: dict[str, Any] | None, status: _Status
) -> list[dict[str, Any]]:
    """updateConditions: Bound, Ready, Running, each keeping its times while it holds."""
    now = rfc3339_seconds()
    wanted: list[tuple[str, str, str, str]] = []  # (type, status, message, reason)
    ready_reason = ""
    if pvc is not None:
        name = pvc["metadata"]["name"]
        pvc_phase = (pvc.get("status") or {}).get("phase")
        if pvc_phase == "Bound":
            wanted.append(("Bound", "True", f"PVC {name} Bound", "Bound"))
        elif pvc_phase == "Pending":
            wanted.append(("Bound", "False", f"PVC {name} Pending", "Pending"))
        elif pvc_phase == "Lost":
            wanted.append(("Bound", "False", "Claim Lost", "ClaimLost"))
        else:
            wanted.append(("Bound", "False", "", ""))
    else:
        wanted.append(("Bound", "False", status.message or "No PVC found",
                       status.reason or "NotFound"))
    ready = "True" if phase == "Succeeded" else "Unknown" if phase == "Unknown" else "False"
    notes = ((pvc or {}).get("metadata") or {}).get("annotations") or {}
    running = str(notes.get(RUNNING, "")).lower()
    if running == "true":
        ready_reason = "TransferRunning"
        run = ("Running", "True", notes.get(RUNNING + ".message", ""),
               notes.get(RUNNING + ".reason", ""))
    elif running == "false" or not running:
        run = ("Running", "False", notes.get(RUNNING + ".message", ""),
               notes.get(RUNNING + ".reason", ""))
    else:
        run = ("Running", "Unknown", notes.get(RUNNING + ".message", ""),
               notes.get(RUNNING + ".reason", ""))
    wanted.append(("Ready", ready, "", ready_reason if ready != "True" else ""))
    wanted.append(run)
    before = {c.get("type"): c for c in previous or [] if isinstance(c, dict)}
    merged = []
    for kind, cond_status, message, reason in wanted:
        old = before.get(kind) or {}
        cond: dict[str, Any] = {"type": kind, "status": cond_status}
        if message:
            cond["message"] = message
        if reason:
            cond["reason"] = reason
        if old.get("status") != cond_status:
            cond["lastTransitionTime"] = now
            cond["lastHeartbeatTime"] = now
        else:
            cond["lastTransitionTime"] = old.get("lastTransitionTime") or now
            changed = old.get("message", "") != message or old.get("reason", "") != reason
            cond["lastHeartbeatTime"] = now if changed else (old.get("lastHeartbeatTime") or now)
        merged.append(cond)
    return merged
