"""The parts of a cluster that are absent, simulated: CSI snapshotter, PV binding, KubeVirt.

`Behaviours` is what the server wires in. It subscribes to the store, hands
each change to the controllers (which queue keys and reconcile on the event
loop, see `runtime.py`), and answers the KubeVirt subresources.

| module | plays |
| --- | --- |
| `csi_snapshotter` | the CSI snapshot controller (VolumeSnapshot <-> content) |
| `csi_driver` | the csi-snapshotter sidecar and the storage: cut, ready, errors |
| `group_snapshotter` | the CSI snapshot controller's VolumeGroupSnapshots and their members |
| `group_driver` | the sidecar and storage for group snapshots: one cut, ready, errors |
| `pvc_binder` | the PV controller and external-provisioner: binding, restores |
| `datavolumes` | CDI: DataVolumes make their PVCs, with CDI's phases |
| `vm_controller` | virt-controller's VM loop and virt-api's start/stop/restart |
| `instancetypes` | instance types and preferences: revisions, what a VMI gets |
| `virt_handler` | a VMI's phases, status and shutdown |
| `backend_storage` | the claim of a VM's persistent TPM and EFI state |
| `guest_agent` | freeze/unfreeze (and the freeze log), pause/unpause |

Behaviour knobs are the `sim.vmsnap.io/*` annotations (`simulator.annotations`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from simulator.controllers.csi_driver import CsiDriverSidecar
from simulator.controllers.csi_snapshotter import SnapshotController
from simulator.controllers.datavolumes import DataVolumes
from simulator.controllers.group_driver import GroupDriverSidecar
from simulator.controllers.group_snapshotter import GroupSnapshotController
from simulator.controllers.guest_agent import GuestAgents
from simulator.controllers.pvc_binder import PvcBinder
from simulator.controllers.runtime import Observer, Runtime
from simulator.controllers.virt_handler import VirtHandler
from simulator.controllers.vm_controller import VmController
from simulator.errors import ApiError, bad_request
from simulator.store import Store, WatchEvent

_VMI_SUBRESOURCES = ("freeze", "unfreeze", "pause", "unpause")
_VM_SUBRESOURCES = ("start", "stop", "restart")


class Behaviours:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.runtime = Runtime(store)
        self.agents = GuestAgents(self.runtime)
        self.vms = VmController(self.runtime)
        self._observers: list[Observer] = [
            SnapshotController(self.runtime),
            CsiDriverSidecar(self.runtime),
            GroupSnapshotController(self.runtime),
            GroupDriverSidecar(self.runtime),
            PvcBinder(self.runtime),
            DataVolumes(self.runtime),
            self.vms,
            VirtHandler(self.runtime, self.agents),
        ]
        self._unsubscribe: Any = None

    def start(self) -> None:
        """Bind to the running loop and watch the store (before the seeds are loaded)."""
        self.runtime.start(asyncio.get_running_loop())
        if self._unsubscribe is None:
            self._unsubscribe = self.store.subscribe(self._observe)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.agents.stop()
        self.runtime.stop()

    async def settle(self, timeout: float = 5.0) -> bool:
        """Wait until start-up work is done (VMIs running, PVCs bound); False on timeout.

        The server can await this after loading seeds, so that a seeded
        running VM is Running when the simulator says it is listening.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.runtime.idle():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _observe(self, event: WatchEvent) -> None:
        for observer in self._observers:
            observer.observe(event)

    async def subresource(
        self, namespace: str, resource: str, name: str, subresource: str, body: Any
    ) -> dict[str, Any] | None:
        """A KubeVirt subresource call; None is an empty success, an ApiError the failure."""
        if resource == "virtualmachineinstances" and subresource in _VMI_SUBRESOURCES:
            if subresource == "freeze":
                self.agents.freeze(namespace, name, body)
            elif subresource == "unfreeze":
                self.agents.unfreeze(namespace, name)
            elif subresource == "pause":
                self.agents.pause(namespace, name)
            else:
                self.agents.unpause(namespace, name)
            return None
        if resource == "virtualmachines" and subresource in _VM_SUBRESOURCES:
            body = _options(body)
            if subresource == "start":
                self.vms.start(namespace, name, body)
            elif subresource == "stop":
                self.vms.stop(namespace, name, body)
            else:
                self.vms.restart(namespace, name, body)
            return None
        raise ApiError(
            404,
            "NotFound",
            f"the server could not find the requested resource ({resource}/{subresource})",
        )

    def freeze_log(self) -> list[dict[str, Any]]:
        return self.agents.freeze_log()


def _options(body: Any) -> dict[str, Any]:
    """Start/Stop/RestartOptions from a request body, as virt-api decodes them."""
    if body is None or body in (b"", ""):
        return {}
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"Can not unmarshal Request body to struct, error: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request(
            f"Can not unmarshal Request body to struct, error: expected an object, not {body!r}"
        )
    return body
