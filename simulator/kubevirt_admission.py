"""A few of virt-api's validating-webhook rules that a VM writer can trip over.

KubeVirt refuses, through its admission webhook, a VM whose `running` and
`runStrategy` are both set, and a VM or VMI whose disks name volumes that do
not exist. The product writes VMs when it clones and restores, so these
checks keep the simulator as strict as a real cluster on them.
"""

from __future__ import annotations

from typing import Any

VM_WEBHOOK = "virtualmachine-validator.kubevirt.io"
VMI_WEBHOOK = "virtualmachineinstances-create-validator.kubevirt.io"
_RUN_STRATEGIES = ("Always", "Halted", "Manual", "RerunOnFailure", "Once", "WaitAsReceiver")


def _instance_spec_errors(spec: Any, base: str) -> list[str]:
    if not isinstance(spec, dict):
        return []
    volumes = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)}
    devices = (spec.get("domain") or {}).get("devices") or {}
    errors = []
    for index, disk in enumerate(devices.get("disks") or []):
        if isinstance(disk, dict) and disk.get("name") not in volumes:
            errors.append(
                f"{base}.domain.devices.disks[{index}].Name '{disk.get('name')}' not found."
            )
    names = [v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)]
    for index, name in enumerate(names):
        if name in names[:index]:
            errors.append(f"{base}.volumes[{index}].name '{name}' is set more than once.")
    return errors


def virtual_machine_denials(new: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = new.get("spec") or {}
    errors = []
    if spec.get("running") is not None and spec.get("runStrategy") is not None:
        errors.append("spec.running and spec.runStrategy are mutually exclusive")
    strategy = spec.get("runStrategy")
    if strategy is not None and strategy not in _RUN_STRATEGIES:
        errors.append(f"spec.runStrategy is set with an unknown value: {strategy}")
    template = spec.get("template") or {}
    errors.extend(_instance_spec_errors(template.get("spec"), "spec.template.spec"))
    return errors


def virtual_machine_instance_denials(new: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    if old is not None:
        return []  # virt-api validates the VMI spec on create; updates go through other rules
    return _instance_spec_errors(new.get("spec"), "spec")
