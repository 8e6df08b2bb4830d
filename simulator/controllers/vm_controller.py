"""The VirtualMachine controller and the VM start/stop/restart subresources.

Run strategies as virt-controller applies them: Always (create the VMI,
recreate it when it ends), RerunOnFailure (create it, recreate after a
failure), Once (create it once), Manual (only on start/stop requests), Halted
(delete it); legacy `spec.running: true|false` is Always|Halted, and neither
field means Halted. The VMI is named like the VM, with the template's labels,
annotations and spec (plus KubeVirt's defaults: firmware UUID, the pod
network), an owner reference to the VM (controller) and KubeVirt's finalizers.

The subresources follow virt-api (`StartVMRequestHandler` and friends): stop
sets `runStrategy: Halted` (or `running: false`) for Always, RerunOnFailure and
Once; start sets Always (or `running: true`) for Halted; Manual goes through
`status.stateChangeRequests`; the same 409s and messages ("VM is not running",
"VM is already running", "Always does not support manual start requests").
Real virt-api answers these with 202 Accepted and no body.

DataVolumes (`handleDataVolumes`, `CreateDataVolumeManifest`): each of
`spec.dataVolumeTemplates` becomes a DataVolume of the template's name,
controlled by the VM, labelled `kubevirt.io/created-by: <vm uid>` and annotated
`cdi.kubevirt.io/allowClaimAdoption: "true"` (a clone source's namespace
defaults to the VM's), with the Events `SuccessfulDataVolumeCreate` /
`FailedDataVolumeCreate`; CDI (`datavolumes.py`) makes the claims. While one
of them is neither Succeeded nor WaitForFirstConsumer (nor PendingPopulation),
a VM that is not Halted is left as it is: no VMI is started (and none
stopped), as vm.go returns before its run strategy is applied; a Failed one
records `FailedDataVolumeImport`.

Instance types and preferences are synced first (`instancetypes.py`): one
that cannot be found (a ControllerRevision gone included) is the `Failure`
condition and the VM does not start.

Each start stores the VM's spec in a ControllerRevision
`revision-start-vm-<vm uid>-<generation>` (older ones of the VM are deleted),
named in the VMI's `status.virtualMachineRevisionName`. While the VMI runs, a
template that differs from that spec in a field that cannot be updated live
(with the default `vmRolloutStrategy: LiveUpdate`, everything but CPU sockets,
guest memory, node selector, affinity and tolerations; with `Stage`,
everything) sets condition `RestartRequired` ("a non-live-updatable field was
changed in the template spec", vm.go's `syncRestartRequired`); the VMI keeps
the spec it started with. The next start clears it.

Status: `created`, `ready`, `printableStatus`, `runStrategy`, conditions
(Ready, every VMI condition but Ready as vm.go syncs them, Failure,
RestartRequired), `instancetypeRef` / `preferenceRef`,
`volumeSnapshotStatuses` (what KubeVirt's snapshot controller reports), and
the generations.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from simulator.controllers import kubevirt_errors as errors
from simulator.controllers.backend_storage import kubevirt_configuration
from simulator.controllers.datavolumes import ALLOW_CLAIM_ADOPTION, CDI, dv_phase
from simulator.controllers.instancetypes import APPS, InstanceTypes, SyncError
from simulator.controllers.runtime import (
    CORE,
    KUBEVIRT,
    SNAPSHOT,
    STORAGE,
    Index,
    Runtime,
    rfc3339_seconds,
)
from simulator.controllers.storage import StorageView
from simulator.controllers.virt_handler import VMI_FINALIZERS
from simulator.controllers.vm_status import (
    RunStrategyError,
    claim_of,
    has_condition,
    instance_volumes,
    is_final,
    merge_conditions,
    phase_of,
    printable_status,
    run_strategy,
    uses_legacy_running,
    volume_readiness,
    volume_snapshot_statuses,
)
from simulator.errors import ApiError
from simulator.store import WatchEvent

QUEUE = "vm-controller"
# CalculateLegacyUUID's namespace (pkg/virt-controller/watch/vm/firmware.go).
FIRMWARE_UUID_NAMESPACE = uuid.UUID("6a1a24a1-4061-4607-8bf4-a3963d0c5895")
EVERY_VM = "vm-controller/all"
# The VM generation a VMI was made from; status.observedGeneration reads it back.
VM_GENERATION = "kubevirt.io/vm-generation"
CREATED_BY = "kubevirt.io/created-by"
RESTART_REQUIRED = "a non-live-updatable field was changed in the template spec"
_VM = "virtualmachine"
# DataVolume phases in which a VM may start (handleDataVolumes).
_STARTABLE = ("Succeeded", "WaitForFirstConsumer", "PendingPopulation")

Key = tuple[str, str]


class VmController:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = StorageView(runtime)
        self.instancetypes = InstanceTypes(runtime)
        # VMs by the (namespace, name) of the PVCs their template uses.
        self._by_claim = Index()
        runtime.register(QUEUE, self.reconcile)
        runtime.register(EVERY_VM, self._requeue_all)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        metadata = obj["metadata"]
        namespace = metadata.get("namespace", "")
        if key == (KUBEVIRT, "virtualmachines"):
            vm = (namespace, metadata["name"])
            template = ((obj.get("spec") or {}).get("template") or {}).get("spec")
            claims = [claim_of(v) for v in instance_volumes(template)]
            self._by_claim.update(
                vm, [(namespace, c) for c in claims if c] if event.type != "DELETED" else []
            )
            self.rt.enqueue(QUEUE, vm)
        elif key == (KUBEVIRT, "virtualmachineinstances"):
            self.rt.enqueue(QUEUE, (namespace, metadata["name"]))
        elif key in ((CORE, "persistentvolumeclaims"), (CDI, "datavolumes")):
            for referrer in self._by_claim.referrers((namespace, metadata["name"])):
                self.rt.enqueue(QUEUE, referrer)
            for ref in metadata.get("ownerReferences") or []:
                if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                    self.rt.enqueue(QUEUE, (namespace, str(ref.get("name"))))
        elif key == (APPS, "controllerrevisions"):
            for ref in metadata.get("ownerReferences") or []:
                if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                    self.rt.enqueue(QUEUE, (namespace, str(ref.get("name"))))
        elif key in ((STORAGE, "storageclasses"), (SNAPSHOT, "volumesnapshotclasses")) or (
            key[0] == "instancetype.kubevirt.io" or key == (KUBEVIRT, "kubevirts")
        ):
            self.rt.enqueue(EVERY_VM, None)

    def _requeue_all(self, _: None) -> None:
        """A class changed: every VM's volumeSnapshotStatuses may change."""
        for vm in self.rt.list_view(KUBEVIRT, "virtualmachines"):
            self.rt.enqueue(QUEUE, (vm["metadata"].get("namespace", ""), vm["metadata"]["name"]))

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        # The stored VM and VMI themselves: read here, written only as new dicts.
        vm = self.rt.view(KUBEVIRT, "virtualmachines", namespace, name)
        if vm is None:
            return
        vmi = self._vmi(vm)
        try:
            strategy = run_strategy(vm)
        except RunStrategyError as exc:
            self._write_status(vm, vmi, None, failure=("FailedCreate", str(exc)))
            return
        if vm["metadata"].get("deletionTimestamp"):
            if vmi is not None and not vmi["metadata"].get("deletionTimestamp"):
                self._delete_vmi(vmi)
            self._write_status(vm, vmi, strategy)
            return
        try:
            refs = self.instancetypes.sync(vm)
        except SyncError as exc:
            if exc.reason == "FailedCreate":
                self.rt.record(vm, "Warning", "FailedCreate", exc.message,
                               "virtualmachine-controller")
            self._write_status(vm, vmi, strategy, failure=(exc.reason, exc.message))
            return
        if refs:
            vm = self.rt.write_status(
                KUBEVIRT, "virtualmachines",
                {**vm, "status": {**(vm.get("status") or {}), **refs}}, shared=True,
            )
        vm, vmi = self._act(vm, vmi, strategy)
        self._write_status(vm, vmi, strategy)

    def _act(
        self, vm: dict[str, Any], vmi: dict[str, Any] | None, strategy: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Move towards the desired state; returns the VM and VMI as they now are."""
        if not self._data_volumes_ready(vm) and strategy != "Halted":
            return vm, vmi  # "Waiting on DataVolumes to be ready."
        requests = list((vm.get("status") or {}).get("stateChangeRequests") or [])
        if requests:
            request = requests[0]
            if request.get("action") == "Stop":
                if vmi is not None and request.get("uid") in (None, vmi["metadata"]["uid"]):
                    if not vmi["metadata"].get("deletionTimestamp"):
                        self._delete_vmi(vmi)
                    return vm, self._vmi(vm)  # the request is done when the VMI is gone
                return self._pop_request(vm), vmi
            if request.get("action") == "Start":
                if vmi is None:
                    paused = (request.get("data") or {}).get("paused") == "true"
                    return self._pop_request(vm), self._create_vmi(vm, paused=paused)
                if is_final(vmi):
                    self._delete_vmi(vmi)
                    return vm, self._vmi(vm)
                return self._pop_request(vm), vmi
            return self._pop_request(vm), vmi
        alive = vmi is not None and not vmi["metadata"].get("deletionTimestamp")
        if strategy == "Halted":
            if alive and vmi is not None:
                self._delete_vmi(vmi)
        elif strategy == "Always":
            if vmi is None:
                vmi = self._create_vmi(vm)
            elif alive and is_final(vmi):
                self._delete_vmi(vmi)
        elif strategy in ("RerunOnFailure", "Once"):
            if vmi is None and not (strategy == "Once" and (vm.get("status") or {}).get("created")):
                vmi = self._create_vmi(vm)
            elif (
                alive
                and vmi is not None
                and strategy == "RerunOnFailure"
                and phase_of(vmi) == "Failed"
            ):
                self._delete_vmi(vmi)
        return vm, self._vmi(vm) if vmi is not None else None

    # ---- DataVolumes ---------------------------------------------------------------

    def _data_volumes_ready(self, vm: dict[str, Any]) -> bool:
        """handleDataVolumes: create the DataVolumes of the templates that have none; True
        when every one may be used by a starting VMI."""
        templates = (vm.get("spec") or {}).get("dataVolumeTemplates") or []
        if not templates or self.rt.kind(CDI, "datavolumes") is None:
            return True
        namespace = vm["metadata"].get("namespace", "")
        ready = True
        for template in templates:
            name = str(((template or {}).get("metadata") or {}).get("name") or "")
            if not name:
                continue
            dv = self.rt.view(CDI, "datavolumes", namespace, name)
            if dv is None:
                ready = False
                try:
                    self.rt.create(CDI, "datavolumes", data_volume_manifest(vm, template))
                except ApiError as exc:
                    if exc.code == 409 and self.view.pvc_view(namespace, name) is not None:
                        continue
                    self.rt.record(vm, "Warning", "FailedDataVolumeCreate",
                                   f"Error creating DataVolume {name}: {exc.message}",
                                   "virtualmachine-controller")
                    return False
                self.rt.record(vm, "Normal", "SuccessfulDataVolumeCreate",
                               f"Created DataVolume {name}", "virtualmachine-controller")
                continue
            phase = dv_phase(dv)
            if phase in _STARTABLE:
                continue
            if phase == "Failed":
                self.rt.record(vm, "Warning", "FailedDataVolumeImport",
                               f"DataVolume {name} failed to import disk image",
                               "virtualmachine-controller")
            ready = False
        return ready

    # ---- VMI -----------------------------------------------------------------------

    def _vmi(self, vm: dict[str, Any]) -> dict[str, Any] | None:
        """The VM's VMI: same name, controlled by this VM (a foreign one is left alone);
        the stored object itself, to read only."""
        metadata = vm["metadata"]
        vmi = self.rt.view(
            KUBEVIRT, "virtualmachineinstances", metadata.get("namespace"), metadata["name"]
        )
        if vmi is None:
            return None
        refs = vmi["metadata"].get("ownerReferences") or []
        if any(r.get("uid") == metadata["uid"] and r.get("controller") for r in refs):
            return vmi
        return None

    def _create_vmi(self, vm: dict[str, Any], *, paused: bool = False) -> dict[str, Any]:
        metadata = vm["metadata"]
        template = copy.deepcopy((vm.get("spec") or {}).get("template") or {})
        template_meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        domain = spec.setdefault("domain", {})
        domain.setdefault("firmware", {}).setdefault("uuid", legacy_uuid(metadata["name"]))
        devices = domain.setdefault("devices", {})
        if (
            not devices.get("interfaces")
            and not spec.get("networks")
            and devices.get("autoattachPodInterface") is not False
        ):
            devices["interfaces"] = [{"name": "default", "masquerade": {}}]
            spec["networks"] = [{"name": "default", "pod": {}}]
        if paused:
            spec["startStrategy"] = "Paused"
        revision = self._store_vm_revision(vm)
        vmi: dict[str, Any] = {
            "apiVersion": f"{KUBEVIRT}/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata.get("namespace"),
                "labels": dict(template_meta.get("labels") or {}),
                "annotations": {
                    **(template_meta.get("annotations") or {}),
                    "kubevirt.io/latest-observed-api-version": "v1",
                    "kubevirt.io/storage-observed-api-version": "v1",
                    VM_GENERATION: str(metadata.get("generation", 1)),
                },
                "ownerReferences": [
                    {
                        "apiVersion": f"{KUBEVIRT}/v1",
                        "kind": "VirtualMachine",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
                "finalizers": list(VMI_FINALIZERS),
            },
            "spec": spec,
            "status": {"virtualMachineRevisionName": revision},
        }
        self.instancetypes.apply(vm, vmi)
        created = self.rt.create(KUBEVIRT, "virtualmachineinstances", vmi)
        self._clear_restart_required(vm)
        self.rt.record(
            vm,
            "Normal",
            "SuccessfulCreate",
            f"Started the virtual machine by creating the new virtual machine instance "
            f"{metadata['name']}",
            "virtualmachine-controller",
        )
        return created

    def _store_vm_revision(self, vm: dict[str, Any]) -> str:
        """createVMRevision: the spec the VMI starts from, as `revision-start-vm-<uid>-<gen>`
        (with the instance type revisions the status records); older ones go."""
        metadata = vm["metadata"]
        namespace = metadata.get("namespace")
        generation = int(metadata.get("generation", 1))
        prefix = f"revision-start-vm-{metadata['uid']}"
        name = f"{prefix}-{generation}"
        exists = False
        for found in self.rt.list_view(APPS, "controllerrevisions", namespace):
            found_name = found["metadata"]["name"]
            if not found_name.startswith(prefix + "-"):
                continue
            if found.get("revision") == generation:
                exists = True
                continue
            self.rt.delete(APPS, "controllerrevisions", namespace, found_name)
        if exists:
            return name
        spec = copy.deepcopy(vm.get("spec") or {})
        status = vm.get("status") or {}
        for field, ref in (("instancetype", "instancetypeRef"), ("preference", "preferenceRef")):
            recorded = ((status.get(ref) or {}).get("controllerRevisionRef") or {}).get("name")
            if isinstance(spec.get(field), dict) and recorded:
                spec[field]["revisionName"] = recorded
        revision = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "ownerReferences": [{
                    "apiVersion": f"{KUBEVIRT}/v1",
                    "kind": "VirtualMachine",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }],
            },
            "data": {"spec": spec},
            "revision": generation,
        }
        try:
            self.rt.create(APPS, "controllerrevisions", revision)
        except ApiError as exc:
            if exc.code != 409:
                raise
        return name

    def _restart_required(self, vm: dict[str, Any], vmi: dict[str, Any] | None) -> bool | None:
        """syncRestartRequired against the spec the running VMI started from; None without
        a VMI (or its revision) to compare with."""
        if vmi is None or is_final(vmi) or vmi["metadata"].get("deletionTimestamp"):
            return None
        name = (vmi.get("status") or {}).get("virtualMachineRevisionName")
        revision = self.rt.view(APPS, "controllerrevisions", vm["metadata"].get("namespace"),
                                str(name or ""))
        if revision is None:
            return None
        started = (((revision.get("data") or {}).get("spec") or {}).get("template") or {}).get(
            "spec"
        ) or {}
        current = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        if started == current:
            return False  # the common case, without copies
        live = str(kubevirt_configuration(self.rt).get("vmRolloutStrategy") or "LiveUpdate")
        return restart_required(started, current, vmi, live)

    def _clear_restart_required(self, vm: dict[str, Any]) -> None:
        """cleanupRestartRequired: a start leaves nothing to restart for."""
        fresh = self.rt.view(KUBEVIRT, "virtualmachines", vm["metadata"].get("namespace"),
                             vm["metadata"]["name"])
        if fresh is None:
            return
        status = fresh.get("status") or {}
        conditions = status.get("conditions") or []
        kept = [c for c in conditions if c.get("type") != "RestartRequired"]
        if len(kept) != len(conditions):
            self.rt.write_status(KUBEVIRT, "virtualmachines",
                                 {**fresh, "status": {**status, "conditions": kept}},
                                 shared=True, owned_status=True)

    def _delete_vmi(self, vmi: dict[str, Any]) -> None:
        metadata = vmi["metadata"]
        self.rt.delete(
            KUBEVIRT, "virtualmachineinstances", metadata.get("namespace"), metadata["name"]
        )

    def _pop_request(self, vm: dict[str, Any]) -> dict[str, Any]:
        status = dict(vm.get("status") or {})
        requests = list(status.get("stateChangeRequests") or [])[1:]
        if requests:
            status["stateChangeRequests"] = requests
        else:
            status.pop("stateChangeRequests", None)
        return self.rt.write_status(KUBEVIRT, "virtualmachines", {**vm, "status": status})

    # ---- status --------------------------------------------------------------------

    def _write_status(
        self,
        vm: dict[str, Any],
        vmi: dict[str, Any] | None,
        strategy: str | None,
        *,
        failure: tuple[str, str] | None = None,
    ) -> None:
        fresh = self.rt.view(
            KUBEVIRT, "virtualmachines", vm["metadata"].get("namespace"), vm["metadata"]["name"]
        )
        if fresh is None:
            return
        vm = fresh
        namespace = vm["metadata"].get("namespace", "")
        previous = vm.get("status") or {}
        status = dict(previous)
        now = rfc3339_seconds()
        wanted = [self._ready_condition(vmi)]
        if vmi is not None:
            wanted.extend(
                dict(c)
                for c in (vmi.get("status") or {}).get("conditions") or []
                if c.get("type") != "Ready"
            )
        if failure:
            reason, message = failure
            wanted.append(
                {"type": "Failure", "status": "True", "reason": reason, "message": message}
            )
        restart = self._restart_required(vm, vmi)
        if restart is None:  # no VMI to compare with: the condition stays until a start
            restart = any(c.get("type") == "RestartRequired"
                          for c in previous.get("conditions") or [])
        if restart:
            wanted.append({"type": "RestartRequired", "status": "True",
                           "message": RESTART_REQUIRED})
        status["conditions"] = merge_conditions(previous.get("conditions"), wanted, now)
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec")
        readiness = volume_readiness(
            (vmi or {}).get("spec") or template_spec,
            lambda claim: self.view.pvc_view(namespace, claim),
        )
        wants_running = strategy in ("Always", "RerunOnFailure") or any(
            r.get("action") == "Start" for r in previous.get("stateChangeRequests") or []
        )
        if strategy is not None:
            status["printableStatus"] = printable_status(
                vm, vmi, strategy, readiness, wants_running,
                data_volume=lambda name: self.rt.view(CDI, "datavolumes", namespace, name),
            )
            status["runStrategy"] = strategy
        status["created"] = vmi is not None
        status["ready"] = bool(
            vmi is not None
            and phase_of(vmi) == "Running"
            and has_condition(vmi, "Ready", "True")
            and not vmi["metadata"].get("deletionTimestamp")
        )
        if not status["created"]:
            status.pop("created")
        if not status["ready"]:
            status.pop("ready")
        generation = vm["metadata"].get("generation", 1)
        status["desiredGeneration"] = generation
        observed = ((vmi or {}).get("metadata", {}).get("annotations") or {}).get(VM_GENERATION)
        if observed is not None and observed.isdigit():
            status["observedGeneration"] = int(observed)
        else:
            status.pop("observedGeneration", None)
        status["volumeSnapshotStatuses"] = volume_snapshot_statuses(
            vm,
            lambda claim: self.view.pvc_view(namespace, claim),
            self.view.storage_class_view,
            self.rt.list_view(SNAPSHOT, "volumesnapshotclasses"),
        )
        if status == previous:
            return
        self.rt.write_status(KUBEVIRT, "virtualmachines", {**vm, "status": status}, shared=True,
                             owned_status=True)

    @staticmethod
    def _ready_condition(vmi: dict[str, Any] | None) -> dict[str, Any]:
        if vmi is None:
            return {
                "type": "Ready",
                "status": "False",
                "reason": "VMINotExists",
                "message": "VMI does not exist",
            }
        for cond in (vmi.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                found = {
                    k: v for k, v in cond.items() if k in ("type", "status", "reason", "message")
                }
                return found
        return {
            "type": "Ready",
            "status": "False",
            "reason": "PodNotExists",
            "message": "virt-launcher pod has not yet been scheduled",
        }

    # ---- subresources --------------------------------------------------------------

    def start(self, namespace: str, name: str, body: Any) -> None:
        vm = self._vm(namespace, name)
        vmi = self._vmi(vm)
        if vmi is not None and not is_final(vmi) and phase_of(vmi) not in ("", "Unknown"):
            raise errors.conflict(_VM, name, "VM is already running")
        options = body if isinstance(body, dict) else {}
        if options.get("dryRun"):
            return
        paused = bool(options.get("paused"))
        strategy = self._strategy(vm)
        if strategy == "Halted":
            if paused:
                self._request(vm, {"action": "Start", "data": {"paused": "true"}})
            self._set_running(vm, True)
        elif strategy in ("RerunOnFailure", "Manual"):
            if strategy == "RerunOnFailure" and phase_of(vmi) == "Failed":
                raise errors.conflict(
                    _VM, name, "RerunOnFailure does not support starting VM from failed state"
                )
            start: dict[str, Any] = {"action": "Start"}
            if paused:
                start["data"] = {"paused": "true"}
            if vmi is not None and is_final(vmi):
                self._request(vm, {"action": "Stop", "uid": vmi["metadata"]["uid"]}, start)
            else:
                self._request(vm, start)
        else:
            raise errors.conflict(_VM, name, f"{strategy} does not support manual start requests")

    def stop(self, namespace: str, name: str, body: Any) -> None:
        vm = self._vm(namespace, name)
        vmi = self._vmi(vm)
        options = body if isinstance(body, dict) else {}
        strategy = self._strategy(vm)
        running = vmi is not None and not is_final(vmi)
        if strategy == "Halted":
            if not running or vmi is None:
                raise errors.conflict(_VM, name, "VM is not running")
            grace = options.get("gracePeriod")
            current = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
            if grace is None or (current is not None and grace >= current):
                raise errors.conflict(
                    _VM,
                    name,
                    "Halted only supports manual stop requests with a shorter graceperiod",
                )
            if not options.get("dryRun"):
                self._request(vm, {"action": "Stop", "uid": vmi["metadata"]["uid"]}, replace=True)
        elif strategy == "Manual":
            if not running or vmi is None:
                raise errors.conflict(_VM, name, "VM is not running")
            if not options.get("dryRun"):
                self._request(vm, {"action": "Stop", "uid": vmi["metadata"]["uid"]}, replace=True)
        elif not options.get("dryRun"):
            self._set_running(vm, False)

    def restart(self, namespace: str, name: str, body: Any) -> None:
        vm = self._vm(namespace, name)
        strategy = self._strategy(vm)
        if strategy in ("Halted", "Once"):
            raise errors.conflict(
                _VM, name, f"RunStategy {strategy} does not support manual restart requests"
            )
        vmi = self.rt.find(KUBEVIRT, "virtualmachineinstances", namespace, name)
        if vmi is None:
            raise errors.conflict(_VM, name, "VM is not running: Halted")
        options = body if isinstance(body, dict) else {}
        grace = options.get("gracePeriodSeconds")
        if grace is not None and grace != 0:
            raise errors.bad_request(
                "For force restart, only gracePeriod=0 is supported for now"
                if grace > 0
                else "gracePeriod has to be greater or equal to 0"
            )
        if options.get("dryRun"):
            return
        self._request(vm, {"action": "Stop", "uid": vmi["metadata"]["uid"]}, {"action": "Start"})

    def _vm(self, namespace: str, name: str) -> dict[str, Any]:
        vm = self.rt.find(KUBEVIRT, "virtualmachines", namespace, name)
        if vm is None:
            raise errors.not_found(_VM, name)
        return vm

    @staticmethod
    def _strategy(vm: dict[str, Any]) -> str:
        try:
            return run_strategy(vm)
        except RunStrategyError as exc:
            raise errors.internal(str(exc)) from None

    def _set_running(self, vm: dict[str, Any], running: bool) -> None:
        vm = self._vm(vm["metadata"].get("namespace", ""), vm["metadata"]["name"])
        spec = vm.setdefault("spec", {})
        if uses_legacy_running(vm):
            spec["running"] = running
        else:
            spec["runStrategy"] = "Always" if running else "Halted"
        self.rt.write(KUBEVIRT, "virtualmachines", vm, shared=True)

    def _request(self, vm: dict[str, Any], *changes: dict[str, Any], replace: bool = False) -> None:
        """Append state change requests; a pending one makes start/restart fail, as virt-api's
        getChangeRequestJson does (a stop replaces what is pending)."""
        vm = self._vm(vm["metadata"].get("namespace", ""), vm["metadata"]["name"])
        status = dict(vm.get("status") or {})
        if status.get("stateChangeRequests") and not replace:
            raise errors.internal("unable to complete request: stop/start already underway")
        status["stateChangeRequests"] = list(changes)
        vm["status"] = status
        self.rt.write_status(KUBEVIRT, "virtualmachines", vm, shared=True)


def data_volume_manifest(vm: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """CreateDataVolumeManifest / GenerateDataVolumeFromTemplate: the template's metadata
    and spec, `allowClaimAdoption`, `kubevirt.io/created-by`, the VM as controller."""
    vm_meta = vm["metadata"]
    metadata = copy.deepcopy(template.get("metadata") or {})
    metadata["namespace"] = vm_meta.get("namespace")
    metadata["labels"] = {**(metadata.get("labels") or {}), CREATED_BY: str(vm_meta["uid"])}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), ALLOW_CLAIM_ADOPTION: "true"}
    metadata["ownerReferences"] = [
        {
            "apiVersion": f"{KUBEVIRT}/v1",
            "kind": "VirtualMachine",
            "name": vm_meta["name"],
            "uid": vm_meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = copy.deepcopy(template.get("spec") or {})
    source = spec.get("source")
    if isinstance(source, dict):
        for kind in ("pvc", "snapshot"):
            if isinstance(source.get(kind), dict) and not source[kind].get("namespace"):
                source[kind]["namespace"] = vm_meta.get("namespace")
    priority = (((vm.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "priorityClassName"
    )
    if priority and not spec.get("priorityClassName"):
        spec["priorityClassName"] = priority
    return {
        "apiVersion": f"{CDI}/v1beta1",
        "kind": "DataVolume",
        "metadata": metadata,
        "spec": spec,
    }


def restart_required(
    started: dict[str, Any], current: dict[str, Any], vmi: dict[str, Any], rollout: str
) -> bool:
    """Whether the template spec `current` differs from the one the VMI `started` from in a
    field that cannot be updated live (syncRestartRequired)."""
    return _comparable(started, current, vmi, rollout) != _comparable(
        current, current, vmi, rollout
    )


def _comparable(
    spec: dict[str, Any], current: dict[str, Any], vmi: dict[str, Any], rollout: str
) -> dict[str, Any]:
    """A template spec with what may change without a restart taken from `current`: with
    LiveUpdate, CPU sockets, guest memory, node selector, affinity and tolerations; and the
    firmware UUID when the VMI runs with the current one."""
    spec = copy.deepcopy(spec)
    domain = spec.setdefault("domain", {})
    current_domain = current.get("domain") or {}
    if rollout == "LiveUpdate":
        if isinstance(domain.get("cpu"), dict) and isinstance(current_domain.get("cpu"), dict):
            sockets = current_domain["cpu"].get("sockets")
            if sockets is None:
                domain["cpu"].pop("sockets", None)
            else:
                domain["cpu"]["sockets"] = sockets
        guest = (current_domain.get("memory") or {}).get("guest")
        if guest is not None:
            domain.setdefault("memory", {})["guest"] = guest
        for field in ("nodeSelector", "affinity", "tolerations"):
            if field in current:
                spec[field] = copy.deepcopy(current[field])
            else:
                spec.pop(field, None)
    vmi_uuid = (((vmi.get("spec") or {}).get("domain") or {}).get("firmware") or {}).get("uuid")
    current_uuid = (current_domain.get("firmware") or {}).get("uuid")
    if vmi_uuid and vmi_uuid == current_uuid:
        domain.setdefault("firmware", {})["uuid"] = current_uuid
    return spec


def legacy_uuid(name: str) -> str:
    """CalculateLegacyUUID: the firmware UUID of a VM whose template names none."""
    return str(uuid.uuid5(FIRMWARE_UUID_NAMESPACE, name))
