"""VirtualMachine and VirtualMachineInstance operations: read, freeze, start/stop, update.

Freeze and unfreeze are KubeVirt's `subresources.kubevirt.io/v1` calls, with
`unfreezeTimeout` always sent (never 0: the guest must thaw by itself if
everything else dies). Start and stop are idempotent: repeating one that
already took effect answers False instead of KubeVirt's 409.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from cluster.apis import (
    KUBEVIRT_SUBRESOURCES,
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
    KubeApis,
    PatchType,
    place_in_namespace,
)
from cluster.errors import Conflict
from cluster.vm_revisions import restart_required
from cluster.waiting import WaitTimeout, poll_until
from rules.durations import format_go_duration
from rules.freeze_budget import ANNOTATION as FREEZE_BUDGET_ANNOTATION
from rules.models import VmState

_RUNNING_STRATEGIES = {"Always", "RerunOnFailure"}
_FINAL_VMI_PHASES = {"Succeeded", "Failed"}


def vm_state_from(vm: Mapping[str, Any], vmi: Mapping[str, Any] | None) -> VmState:
    """The facts a snapshot needs, from the VM and its VMI (None when there is none)."""
    metadata = vm.get("metadata") or {}
    spec = vm.get("spec") or {}
    run_strategy = spec.get("runStrategy")
    if run_strategy is None and "running" in spec:
        run_strategy = "Always" if spec.get("running") else "Halted"
    vmi_status = (vmi or {}).get("status") or {}
    conditions = {
        str(c.get("type")): c for c in vmi_status.get("conditions") or [] if isinstance(c, dict)
    }
    phase = vmi_status.get("phase") if vmi is not None else None
    paused = conditions.get("Paused", {}).get("status") == "True"
    return VmState(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        run_strategy=run_strategy,
        vmi_exists=vmi is not None,
        running=phase == "Running",
        paused=paused,
        # KubeVirt only checks that the condition exists; it is removed on disconnect.
        agent_connected="AgentConnected" in conditions,
        fs_freeze_status=vmi_status.get("fsFreezeStatus") or None,
        printable_status=((vm.get("status") or {}).get("printableStatus")) or None,
        vmi_phase=phase,
        resource_version=metadata.get("resourceVersion"),
        restart_required=restart_required(vm),
        freeze_budget=(metadata.get("annotations") or {}).get(FREEZE_BUDGET_ANNOTATION),
    )


class VmOperations(KubeApis):
    """Typed operations on `kubevirt.io/v1` VMs and VMIs."""

    def get_vm(self, namespace: str, name: str) -> dict[str, Any]:
        """The VM as stored; NotFound when absent."""
        return self.get_custom(VIRTUAL_MACHINES, namespace, name)

    def get_vmi(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The running instance, or None when the VM has none."""
        return self.get_custom_or_none(VIRTUAL_MACHINE_INSTANCES, namespace, name)

    def vm_state(self, namespace: str, name: str) -> VmState:
        vm = self.get_vm(namespace, name)
        return vm_state_from(vm, self.get_vmi(namespace, name))

    def wait_for_vm(
        self,
        namespace: str,
        name: str,
        condition: Callable[[VmState], bool],
        timeout_seconds: float,
        on_poll: Callable[[VmState], None] | None = None,
    ) -> VmState:
        """Poll (bounded backoff) until `condition(state)`; TimeoutError after the timeout.

        VM start/stop take seconds to minutes, so polling is good enough here.
        """

        last: list[VmState] = []

        def check() -> VmState | None:
            state = self.vm_state(namespace, name)
            last[:] = [state]
            if on_poll is not None:
                on_poll(state)
            return state if condition(state) else None

        try:
            return poll_until(
                check, timeout_seconds, what=f"VirtualMachine {namespace}/{name} to reach the state"
            )
        except WaitTimeout as exc:
            if not last:
                raise
            seen = last[0]
            raise WaitTimeout(
                f"{exc}; last seen: status {seen.printable_status}, VMI phase "
                f"{seen.vmi_phase or 'none'}, freeze {seen.fs_freeze_status or 'none'}",
                last=seen,
            ) from exc

    # ---- freeze ------------------------------------------------------------------------

    def freeze(self, namespace: str, vmi: str, unfreeze_timeout_seconds: float) -> None:
        """Freeze the guest filesystems; the guest thaws by itself after the timeout
        (rounded up to whole seconds, the precision KubeVirt keeps).

        Invalid (400) when the guest agent fails to freeze (the server's message
        is kept); Conflict (409) when the VMI is not running.
        """
        if not isinstance(unfreeze_timeout_seconds, int | float) or isinstance(
            unfreeze_timeout_seconds, bool
        ):
            raise ValueError("unfreeze_timeout_seconds must be a number of seconds")
        if math.isnan(unfreeze_timeout_seconds) or unfreeze_timeout_seconds <= 0:
            raise ValueError(
                f"unfreeze_timeout_seconds must be > 0, not {unfreeze_timeout_seconds!r}: "
                "0 would disable the guest's self-thaw"
            )
        if math.isinf(unfreeze_timeout_seconds):
            raise ValueError("unfreeze_timeout_seconds must be finite")
        # virt-handler keeps whole seconds (int32(timeout.Seconds())): "500ms" would become 0,
        # no self-thaw at all. Round up instead, so the guest always thaws by itself.
        timeout = format_go_duration(math.ceil(unfreeze_timeout_seconds))
        self.put_raw(
            self._vmi_subresource(namespace, vmi, "freeze"),
            {"unfreezeTimeout": timeout},
            f"freeze VirtualMachineInstance {namespace}/{vmi}",
        )

    def unfreeze(self, namespace: str, vmi: str) -> None:
        """Thaw the guest; idempotent on the server side."""
        self.put_raw(
            self._vmi_subresource(namespace, vmi, "unfreeze"),
            None,
            f"unfreeze VirtualMachineInstance {namespace}/{vmi}",
        )

    # ---- start / stop --------------------------------------------------------------------

    def start_vm(self, namespace: str, name: str) -> bool:
        """Ask KubeVirt to start the VM; False when it was already started."""
        try:
            self.put_raw(
                self._vm_subresource(namespace, name, "start"),
                {},
                f"start VirtualMachine {namespace}/{name}",
            )
        except Conflict:
            state = self.vm_state(namespace, name)
            vmi_active = state.vmi_exists and state.vmi_phase not in _FINAL_VMI_PHASES
            if state.run_strategy in _RUNNING_STRATEGIES or vmi_active:
                return False
            raise
        return True

    def stop_vm(self, namespace: str, name: str, grace_period_seconds: int | None = None) -> bool:
        """Ask KubeVirt to stop the VM; False when it was already stopped."""
        body: dict[str, Any] = {}
        if grace_period_seconds is not None:
            if grace_period_seconds < 0:
                raise ValueError("grace_period_seconds must be >= 0")
            body["gracePeriod"] = int(grace_period_seconds)
        try:
            self.put_raw(
                self._vm_subresource(namespace, name, "stop"),
                body,
                f"stop VirtualMachine {namespace}/{name}",
            )
        except Conflict:
            state = self.vm_state(namespace, name)
            if state.run_strategy == "Halted" or not state.vmi_exists:
                return False
            raise
        return True

    # ---- updates ------------------------------------------------------------------------

    def patch_vm(
        self,
        namespace: str,
        name: str,
        patch: dict[str, Any] | list[dict[str, Any]],
        patch_type: PatchType = "merge",
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge patch (an object) or JSON patch (a list of operations).

        With `resource_version`, the server refuses (Conflict) a VM that changed
        since it was read: the version goes into the patch, where the API
        server checks it as a precondition.
        """
        if resource_version is not None:
            if patch_type == "json" and isinstance(patch, list):
                patch = [
                    {"op": "replace", "path": "/metadata/resourceVersion",
                     "value": resource_version},
                    *patch,
                ]
            elif isinstance(patch, dict):
                patch = copy.deepcopy(patch)
                patch.setdefault("metadata", {})["resourceVersion"] = resource_version
        return self.patch_custom(VIRTUAL_MACHINES, namespace, name, patch, patch_type)

    def replace_vm(
        self,
        namespace: str,
        name: str,
        body: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """PUT the whole VM. The body's (or the given) resourceVersion must be current,
        else Conflict."""
        body = copy.deepcopy(body)
        metadata = body.setdefault("metadata", {})
        if metadata.get("name", name) != name:
            raise ValueError(f"body names VM {metadata['name']!r}, not {name!r}")
        place_in_namespace(metadata, namespace, "VM")
        metadata["name"] = name
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        if not metadata.get("resourceVersion"):
            raise ValueError("replace_vm needs a resourceVersion (from the VM that was read)")
        return self.replace_custom(VIRTUAL_MACHINES, namespace, name, body)

    def create_vm(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a VM (clone); AlreadyExists is raised for the caller to judge."""
        body = copy.deepcopy(body)
        body.setdefault("apiVersion", VIRTUAL_MACHINES.api_version)
        body.setdefault("kind", VIRTUAL_MACHINES.kind)
        metadata = body.setdefault("metadata", {})
        place_in_namespace(metadata, namespace, "VM")
        return self.create_custom(VIRTUAL_MACHINES, namespace, body)

    def delete_vm(self, namespace: str, name: str) -> bool:
        return self.delete_custom(VIRTUAL_MACHINES, namespace, name)

    @staticmethod
    def _vmi_subresource(namespace: str, name: str, action: str) -> str:
        return (f"{KUBEVIRT_SUBRESOURCES}/namespaces/{quote(namespace, safe='')}"
                f"/virtualmachineinstances/{quote(name, safe='')}/{action}")

    @staticmethod
    def _vm_subresource(namespace: str, name: str, action: str) -> str:
        return (f"{KUBEVIRT_SUBRESOURCES}/namespaces/{quote(namespace, safe='')}"
                f"/virtualmachines/{quote(name, safe='')}/{action}")
