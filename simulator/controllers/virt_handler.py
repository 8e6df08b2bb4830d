"""A VMI's life on its node: Pending -> Scheduled -> Running, and shutdown on deletion.

What virt-controller, the scheduler and virt-handler do, compressed:

- Pending until every PVC the VMI uses exists and is Bound. A missing PVC sets
  condition `Synchronized=False` (reason `FailedPvcNotFound`); a claim of a
  `WaitForFirstConsumer` class is marked with `volume.kubernetes.io/selected-node`
  so that it binds, as the scheduler does for the launcher pod.
- DataVolumes (virt-controller's `areDataVolumesReady`, `VolumeReadyToAttachToNode`):
  a claim controlled by a DataVolume is usable once the DataVolume is Succeeded
  (or PendingPopulation); until then no launcher pod is made. One that is
  `WaitForFirstConsumer` gets the temporary pod KubeVirt schedules for it: its
  claims are marked with the selected node, so they bind and CDI can fill them.
  Condition `DataVolumesReady` (`AllDVsReady` / `NotAllDVsReady`) aggregates the
  DataVolumes' Ready conditions.
- Backend storage (persistent TPM or EFI): the VM's state claim is made, and
  waited for, before the launcher pod (`backend_storage.py`).
- Then `Scheduled` (node `sim-node-1`) after half the VM's
  `sim.vmsnap.io/start-latency`, `Running` after all of it: conditions Ready,
  LiveMigratable, AgentConnected (unless the guest agent is `absent`) and
  Paused (when the VM is annotated `sim.vmsnap.io/paused: "true"` or
  `startStrategy: Paused`), `interfaces`, `volumeStatus`, `guestOSInfo`.
- While Running, AgentConnected follows the VM's guest-agent annotation.
- Deleted (stop, or its VM gone): after `sim.vmsnap.io/stop-latency` the guest
  is off: a frozen guest counts as thawed by `stop`, the phase is Succeeded and
  the finalizers go, so the VMI disappears.
"""

from __future__ import annotations

import hashlib
from typing import Any

from simulator import annotations as ann
from simulator.controllers.backend_storage import PREFIX as BACKEND_LABEL
from simulator.controllers.backend_storage import (
    BackendStorage,
    BackendStorageError,
    volume_status,
)
from simulator.controllers.datavolumes import CDI, controller_of, dv_phase
from simulator.controllers.guest_agent import GuestAgents, set_paused
from simulator.controllers.runtime import (
    CORE,
    KUBEVIRT,
    STORAGE,
    Index,
    Runtime,
    annotations_dict,
    rfc3339_seconds,
)
from simulator.controllers.storage import SELECTED_NODE, StorageView
from simulator.controllers.vm_status import (
    FINAL_PHASES,
    claim_of,
    has_condition,
    instance_volumes,
    merge_conditions,
    phase_of,
    volume_readiness,
)
from simulator.store import WatchEvent

QUEUE = "virt-handler"
NODE = "sim-node-1"
VMI_FINALIZERS = ("kubevirt.io/virtualMachineControllerFinalize", "foregroundDeleteVirtualMachine")
LAUNCHER_IMAGE = "quay.io/kubevirt/virt-launcher:v1.6.0"
_TOLERANCE = 0.001

Key = tuple[str, str]


class VirtHandler:
    def __init__(self, runtime: Runtime, agents: GuestAgents) -> None:
        self.rt = runtime
        self.agents = agents
        self.view = StorageView(runtime)
        self.backend = BackendStorage(runtime)
        self._start: dict[Key, tuple[str, float, float]] = {}
        self._stop: dict[Key, tuple[str, float]] = {}
        # VMIs still waiting for their volumes, by the (namespace, name) of each claim.
        self._waiting = Index()
        runtime.register(QUEUE, self.reconcile)

    # ---- watch ---------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        key = event.resource.key
        obj = event.object
        metadata = obj["metadata"]
        namespace = metadata.get("namespace", "")
        if key == (KUBEVIRT, "virtualmachineinstances"):
            vmi = (namespace, metadata["name"])
            if event.type == "DELETED":
                self.agents.vmi_stopped(metadata["uid"])
            waiting = event.type != "DELETED" and phase_of(obj) in ("", "Pending", "Scheduling")
            claims = [claim_of(v) for v in instance_volumes(obj.get("spec"))] if waiting else []
            self._waiting.update(vmi, [(namespace, c) for c in claims if c])
            self.rt.enqueue(QUEUE, vmi)
        elif key == (KUBEVIRT, "virtualmachines"):
            self.rt.enqueue(QUEUE, (namespace, metadata["name"]))
        elif key in ((CORE, "persistentvolumeclaims"), (CDI, "datavolumes")):
            for referrer in self._waiting.referrers((namespace, metadata["name"])):
                self.rt.enqueue(QUEUE, referrer)
            backend_of = (metadata.get("labels") or {}).get(BACKEND_LABEL)
            if backend_of and key[1] == "persistentvolumeclaims":
                self.rt.enqueue(QUEUE, (namespace, backend_of))

    # ---- reconcile -----------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        # The stored VMI itself: read here, written only as new dicts (`_write_status`).
        vmi = self.rt.view(KUBEVIRT, "virtualmachineinstances", namespace, name)
        if vmi is None:
            self._start.pop(key, None)
            self._stop.pop(key, None)
            return
        if vmi["metadata"].get("deletionTimestamp"):
            self._shut_down(key, vmi)
            return
        phase = phase_of(vmi)
        if phase in FINAL_PHASES:
            return
        vm = self.agents.owner_vm(vmi)
        if phase == "":
            self._write_status(
                vmi,
                {
                    **(vmi.get("status") or {}),  # virtualMachineRevisionName, set at creation
                    "phase": "Pending",
                    "conditions": [
                        _ready(
                            False, "PodNotExists", "virt-launcher pod has not yet been scheduled"
                        )
                    ],
                    "phaseTransitionTimestamps": _transition([], "Pending"),
                    "guestOSInfo": {},
                    "qosClass": "Burstable",
                },
            )
        elif phase in ("Pending", "Scheduling"):
            self._schedule(key, vmi, vm)
        elif phase == "Scheduled":
            self._boot(key, vmi, vm)
        elif phase == "Running":
            self._refresh(vmi)

    def _schedule(self, key: Key, vmi: dict[str, Any], vm: dict[str, Any] | None) -> None:
        namespace = vmi["metadata"].get("namespace", "")
        readiness = volume_readiness(vmi.get("spec"), lambda claim: self.view.pvc(namespace, claim))
        status = dict(vmi.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Synchronized"]
        if readiness.missing:
            self._start.pop(key, None)
            claim = readiness.missing[0]
            status["conditions"] = merge_conditions(
                status.get("conditions"),
                [
                    *conditions,
                    {
                        "type": "Synchronized",
                        "status": "False",
                        "reason": "FailedPvcNotFound",
                        "message": f"PVC {namespace}/{claim} does not exist, "
                        "waiting for it to appear",
                    },
                ],
                rfc3339_seconds(),
            )
            self._write_status(vmi, status)
            return
        ready, wffc, data_volumes = self._data_volumes(vmi)
        if data_volumes:
            conditions = [c for c in conditions if c.get("type") != "DataVolumesReady"]
            conditions.append(_data_volumes_ready(data_volumes))
        if conditions != (status.get("conditions") or []):
            status["conditions"] = merge_conditions(
                status.get("conditions"), conditions, rfc3339_seconds()
            )
            if status["conditions"] != (vmi.get("status") or {}).get("conditions"):
                vmi = self._write_status(vmi, status)
        if not ready or wffc:
            # "Delaying pod creation while DataVolume populates"; for a DataVolume waiting
            # for its first consumer, the temporary pod's claims get a node and bind.
            self._start.pop(key, None)
            if ready:
                for claim in readiness.unbound:
                    self._select_node(namespace, claim)
            return
        try:
            backend = self.backend.ensure(vmi)
            if backend is not None and not self.backend.check_ready(backend):
                raise BackendStorageError("BackendStorageNotReady", "PVC pending")
        except BackendStorageError as exc:
            # "Delaying pod creation while backend storage populates."
            self._start.pop(key, None)
            self._sync_failure(vmi, exc.reason, exc.message)
            return
        unbound = list(readiness.unbound)
        if backend is not None and (backend.get("status") or {}).get("phase") != "Bound":
            unbound.append(backend["metadata"]["name"])  # the launcher pod mounts it too
        for claim in unbound:
            self._select_node(namespace, claim)
        if unbound:
            self._start.pop(key, None)
            return
        uid = vmi["metadata"]["uid"]
        plan = self._start.get(key)
        now = self.rt.now()
        if plan is None or plan[0] != uid:
            delay = self._latency(vm or vmi, ann.START_LATENCY)
            self._start[key] = (uid, now + delay / 2, now + delay)
            self.rt.enqueue_after(QUEUE, key, delay / 2, settles=True)
            return
        if now + _TOLERANCE < plan[1]:
            return
        metadata = vmi["metadata"]
        labels = metadata.get("labels") or {}
        if labels.get("kubevirt.io/nodeName") != NODE:
            labels = {**labels, "kubevirt.io/nodeName": NODE}
            vmi = self.rt.write(KUBEVIRT, "virtualmachineinstances",
                                {**vmi, "metadata": {**metadata, "labels": labels}})
        status = dict(vmi.get("status") or {})
        status.update(
            {
                "phase": "Scheduled",
                "nodeName": NODE,
                "conditions": merge_conditions(
                    status.get("conditions"),
                    [
                        _ready(False, "GuestNotRunning", "Guest VM is not reported as running"),
                    ],
                    rfc3339_seconds(),
                ),
                "phaseTransitionTimestamps": _transition(
                    status.get("phaseTransitionTimestamps"), "Scheduled"
                ),
                "activePods": {_pod_uid(vmi): NODE},
                "launcherContainerImageVersion": LAUNCHER_IMAGE,
            }
        )
        self._write_status(vmi, status)
        self.rt.enqueue_after(QUEUE, key, max(plan[2] - now, 0.0), settles=True)

    def _boot(self, key: Key, vmi: dict[str, Any], vm: dict[str, Any] | None) -> None:
        plan = self._start.get(key)
        now = self.rt.now()
        if plan is not None and plan[0] == vmi["metadata"]["uid"] and now + _TOLERANCE < plan[2]:
            return
        self._start.pop(key, None)
        paused = (vmi.get("spec") or {}).get("startStrategy") == "Paused"
        if vm is not None:
            try:
                paused = paused or ann.paused(vm)
            except ann.AnnotationError as exc:
                self.rt.record(vm, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator")
        status = dict(vmi.get("status") or {})
        agent = self.agents.mode(vmi) is not ann.GuestAgent.ABSENT
        status.update(
            {
                "phase": "Running",
                "nodeName": NODE,
                "phaseTransitionTimestamps": _transition(
                    status.get("phaseTransitionTimestamps"), "Running"
                ),
                "interfaces": self._interfaces(vmi, agent),
                "volumeStatus": self._volume_status(vmi),
                "guestOSInfo": _guest_os() if agent else {},
                "migrationMethod": "BlockMigration",
            }
        )
        _, _, data_volumes = self._data_volumes(vmi)
        status["conditions"] = merge_conditions(
            status.get("conditions"),
            [
                _ready(True),
                self._live_migratable(vmi),
                *([_agent_connected()] if agent else []),
                *([_data_volumes_ready(data_volumes)] if data_volumes else []),
            ],
            rfc3339_seconds(),
        )
        booted = {**vmi, "status": status}
        if paused:
            set_paused(booted, True)
        self._write_status(booted, booted["status"])

    def _refresh(self, vmi: dict[str, Any]) -> None:
        """AgentConnected comes and goes with the guest agent."""
        agent = self.agents.mode(vmi) is not ann.GuestAgent.ABSENT
        if agent == has_condition(vmi, "AgentConnected"):
            return
        status = dict(vmi.get("status") or {})
        conditions = [
            c for c in status.get("conditions") or [] if c.get("type") != "AgentConnected"
        ]
        if agent:
            conditions.append({**_agent_connected(), "lastTransitionTime": None})
        status["conditions"] = conditions
        status["guestOSInfo"] = _guest_os() if agent else {}
        self._write_status(vmi, status)

    def _shut_down(self, key: Key, vmi: dict[str, Any]) -> None:
        uid = vmi["metadata"]["uid"]
        plan = self._stop.get(key)
        now = self.rt.now()
        if plan is None or plan[0] != uid:
            delay = self._latency(self.agents.owner_vm(vmi) or vmi, ann.STOP_LATENCY)
            self._stop[key] = (uid, now + delay)
            self.rt.enqueue_after(QUEUE, key, delay, settles=True)
            return
        if now + _TOLERANCE < plan[1]:
            return
        self._stop.pop(key, None)
        self.agents.vmi_stopped(uid)
        if phase_of(vmi) not in FINAL_PHASES:
            status = dict(vmi.get("status") or {})
            status.pop("fsFreezeStatus", None)
            status.update(
                {
                    "phase": "Succeeded",
                    "conditions": merge_conditions(
                        status.get("conditions"),
                        [
                            _ready(False, "PodTerminating", "virt-launcher pod is terminating"),
                        ],
                        rfc3339_seconds(),
                    ),
                    "phaseTransitionTimestamps": _transition(
                        status.get("phaseTransitionTimestamps"), "Succeeded"
                    ),
                }
            )
            vmi = self._write_status(vmi, status)
        finalizers = vmi["metadata"].get("finalizers") or []
        remaining = [f for f in finalizers if f not in VMI_FINALIZERS]
        if remaining != finalizers:
            self.rt.write(KUBEVIRT, "virtualmachineinstances",
                          {**vmi, "metadata": {**vmi["metadata"], "finalizers": remaining}},
                          shared=True)

    # ---- pieces of status ----------------------------------------------------------

    def _select_node(self, namespace: str, claim: str) -> None:
        pvc = self.view.pvc(namespace, claim)
        if pvc is None:
            return
        storage_class = self.rt.find(
            STORAGE, "storageclasses", None, (pvc.get("spec") or {}).get("storageClassName") or ""
        )
        if (storage_class or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
            return
        if annotations_dict(pvc).get(SELECTED_NODE) == NODE:
            return
        annotations_dict(pvc)[SELECTED_NODE] = NODE
        self.rt.write(CORE, "persistentvolumeclaims", pvc, shared=True)

    def _sync_failure(self, vmi: dict[str, Any], reason: str, message: str) -> None:
        """CheckFailure: condition Synchronized=False with the sync error's reason."""
        status = dict(vmi.get("status") or {})
        previous = status.get("conditions") or []
        if any(c.get("type") == "Synchronized" and c.get("status") == "False"
               and c.get("reason") == reason for c in previous):
            return
        status["conditions"] = [
            *(c for c in previous if c.get("type") != "Synchronized"),
            {"type": "Synchronized", "status": "False", "reason": reason, "message": message,
             "lastProbeTime": None, "lastTransitionTime": rfc3339_seconds()},
        ]
        self._write_status(vmi, status)

    def _data_volumes(
        self, vmi: dict[str, Any]
    ) -> tuple[bool, bool, list[dict[str, Any]]]:
        """(ready, waits for first consumer, the DataVolumes) of the VMI's volumes, as
        areDataVolumesReady sees them: a claim controlled by a DataVolume is ready once that
        DataVolume is Succeeded or PendingPopulation, and waits for its consumer while it is
        WaitForFirstConsumer; any other claim is ready."""
        namespace = vmi["metadata"].get("namespace", "")
        ready, wffc = True, False
        found: dict[str, dict[str, Any]] = {}
        for volume in instance_volumes(vmi.get("spec")):
            source = volume.get("persistentVolumeClaim") or volume.get("dataVolume")
            if (source or {}).get("hotpluggable"):
                continue
            claim = claim_of(volume)
            if not claim:
                continue
            pvc = self.view.pvc_view(namespace, claim)
            owner = controller_of(pvc) if pvc is not None else None
            if pvc is None or owner is None or owner.get("kind") != "DataVolume":
                if "dataVolume" in volume:
                    dv = self.rt.view(CDI, "datavolumes", namespace, claim)
                    if dv is not None:
                        found[claim] = dv
                continue
            dv = self.rt.view(CDI, "datavolumes", namespace, str(owner.get("name")))
            if dv is None:
                ready = False
                continue
            found[dv["metadata"]["name"]] = dv
            phase = dv_phase(dv)
            volume_ready = phase in ("Succeeded", "PendingPopulation")
            volume_wffc = not volume_ready and phase == "WaitForFirstConsumer"
            wffc = wffc or volume_wffc
            ready = ready and (volume_ready or volume_wffc)
        return ready, wffc, list(found.values())

    def _interfaces(self, vmi: dict[str, Any], agent: bool) -> list[dict[str, Any]]:
        spec = vmi.get("spec") or {}
        declared = ((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []
        names = [i.get("name") for i in declared if isinstance(i, dict) and i.get("name")]
        macs = {i.get("name"): i.get("macAddress") for i in declared if isinstance(i, dict)}
        uid = vmi["metadata"]["uid"]
        result = []
        for index, name in enumerate(names):
            digest = hashlib.sha256(f"{uid}/{name}".encode()).digest()
            ip = f"10.244.{digest[0]}.{digest[1] % 250 + 2}"
            mac = macs.get(name) or "02:" + ":".join(f"{b:02x}" for b in digest[2:7])
            entry: dict[str, Any] = {
                "name": name,
                "mac": mac,
                "infoSource": "domain, guest-agent" if agent else "domain",
                "queueCount": 1,
                "linkState": "up",
            }
            if agent or index == 0:  # without an agent only the pod network's address is known
                entry["ipAddress"] = ip
                entry["ipAddresses"] = [ip]
            if agent:
                entry["interfaceName"] = f"eth{index}"
            result.append(entry)
        return result

    def _volume_status(self, vmi: dict[str, Any]) -> list[dict[str, Any]]:
        namespace = vmi["metadata"].get("namespace", "")
        spec = vmi.get("spec") or {}
        disks = ((spec.get("domain") or {}).get("devices") or {}).get("disks") or []
        targets = _disk_targets(disks)
        result = []
        for volume in instance_volumes(spec):
            name = str(volume.get("name"))
            entry: dict[str, Any] = {"name": name, "target": targets.get(name, "")}
            claim = claim_of(volume)
            pvc = self.view.pvc(namespace, claim) if claim else None
            if pvc is not None:
                pvc_spec = pvc.get("spec") or {}
                entry["persistentVolumeClaimInfo"] = {
                    "claimName": claim,
                    "accessModes": list(pvc_spec.get("accessModes") or []),
                    "capacity": dict((pvc.get("status") or {}).get("capacity") or {}),
                    "requests": dict((pvc_spec.get("resources") or {}).get("requests") or {}),
                    "volumeMode": pvc_spec.get("volumeMode") or "Filesystem",
                    "filesystemOverhead": "0.055",
                }
                source = volume.get("persistentVolumeClaim") or volume.get("dataVolume") or {}
                if source.get("hotpluggable"):
                    entry.update(
                        {
                            "phase": "Ready",
                            "reason": "VolumeReady",
                            "message": f"Successfully attach hotplugged volume {name} to VM",
                            "hotplugVolume": {},
                        }
                    )
            elif "containerDisk" in volume:
                entry["containerDiskVolume"] = {"checksum": 0}
            result.append(entry)
        backend = self.backend.claim_for(vmi)
        if backend is not None:
            result.append(volume_status(backend))
        return result

    def _live_migratable(self, vmi: dict[str, Any]) -> dict[str, Any]:
        namespace = vmi["metadata"].get("namespace", "")
        for volume in instance_volumes(vmi.get("spec")):
            claim = claim_of(volume)
            pvc = self.view.pvc(namespace, claim) if claim else None
            if pvc is not None and "ReadWriteMany" not in (
                (pvc.get("spec") or {}).get("accessModes") or []
            ):
                return {
                    "type": "LiveMigratable",
                    "status": "False",
                    "reason": "DisksNotLiveMigratable",
                    "message": f"cannot migrate VMI: PVC {claim} is not shared, live migration "
                    "requires that all PVCs must be shared (using ReadWriteMany access mode)",
                    "lastTransitionTime": None,
                }
        return {"type": "LiveMigratable", "status": "True", "lastTransitionTime": None}

    def _latency(self, obj: dict[str, Any], name: str) -> float:
        try:
            return ann.first_latency(name, obj)
        except ann.AnnotationError as exc:
            self.rt.record(obj, "Warning", "InvalidSimAnnotation", str(exc), "vmsnap-simulator")
            return ann.default_latency(name)

    def _write_status(self, vmi: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """`vmi` may be the stored object: it is not changed, the write is a new dict."""
        return self.rt.write_status(KUBEVIRT, "virtualmachineinstances", {**vmi, "status": status})


def _ready(ready: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    cond: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False"}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _data_volumes_ready(data_volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """aggregateDataVolumesConditions: True when every DataVolume is Ready."""
    cond: dict[str, Any] = {
        "type": "DataVolumesReady",
        "status": "True",
        "reason": "AllDVsReady",
        "message": "All of the VMI's DVs are bound and ready",
    }
    for dv in data_volumes:
        ready = next(
            (c.get("status") for c in (dv.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"),
            "Unknown",
        )
        if ready != "True":
            cond["reason"] = "NotAllDVsReady"
            if ready == "False":
                cond["status"] = "False"
            elif cond["status"] == "True":
                cond["status"] = ready
    if cond["status"] != "True":
        cond["message"] = "Not all of the VMI's DVs are ready"
    return cond


def _agent_connected() -> dict[str, Any]:
    return {"type": "AgentConnected", "status": "True", "lastProbeTime": rfc3339_seconds()}


def _guest_os() -> dict[str, Any]:
    return {
        "id": "fedora",
        "name": "Fedora Linux",
        "prettyName": "Fedora Linux 40 (Cloud Edition)",
        "version": "40 (Cloud Edition)",
        "versionId": "40",
        "kernelRelease": "6.8.5-301.fc40.x86_64",
        "kernelVersion": "#1 SMP PREEMPT_DYNAMIC Thu Apr 11 20:00:10 UTC 2024",
        "machine": "x86_64",
    }


def _transition(previous: list[dict[str, Any]] | None, phase: str) -> list[dict[str, Any]]:
    return [*(previous or []), {"phase": phase, "phaseTransitionTimestamp": rfc3339_seconds()}]


def _pod_uid(vmi: dict[str, Any]) -> str:
    digest = hashlib.sha256(("launcher/" + vmi["metadata"]["uid"]).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _disk_targets(disks: list[Any]) -> dict[str, str]:
    """Device names as libvirt assigns them: vda, vdb... for virtio; sda... for sata/scsi."""
    counters = {"vd": 0, "sd": 0}
    targets = {}
    for disk in disks:
        if not isinstance(disk, dict) or not disk.get("name"):
            continue
        bus = ""
        for kind in ("disk", "cdrom", "lun"):
            if isinstance(disk.get(kind), dict):
                bus = disk[kind].get("bus") or ("sata" if kind == "cdrom" else "virtio")
        prefix = "vd" if bus in ("", "virtio") else "sd"
        targets[disk["name"]] = prefix + chr(ord("a") + counters[prefix] % 26)
        counters[prefix] += 1
    return targets
