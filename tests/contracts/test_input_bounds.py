"""Every workflow input is bounded and checked where it enters: durations within days,
names as Kubernetes names, vmsnap's label keys refused, sizes bounded, unknown fields
refused. Decoded as the worker decodes a `temporal workflow start --input` payload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from contracts.clone import CloneVirtualMachineInput
from contracts.delete_snapshot import DeleteVirtualMachineSnapshotInput
from contracts.restore import RestoreVirtualMachineInput
from contracts.schedule import ScheduledSnapshotInput
from contracts.snapshot import SnapshotVirtualMachineInput
from contracts.sweep import SweepOrphansInput
from rules.namespace_scope import NamespaceScope

SNAPSHOT = {"namespace": "demo", "vm": "web"}
RESTORE = {"namespace": "demo", "snapshot": "snap"}
CLONE = {"namespace": "demo", "source_snapshot": "snap", "target": "copy"}
SCHEDULE = {"schedule": "nightly", "namespace": "demo", "vm": "web", "keep": 3}
SWEEP = {"namespaces": ["demo"]}
DELETE = {"namespace": "demo", "name": "snap"}


def decode(model: type[BaseModel], text: str) -> Any:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=text.encode())
    [value] = pydantic_data_converter.payload_converter.from_payloads([payload], [model])
    return value


CASES: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    # durations: too long, negative, not finite, not a duration, too short
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": 1e308}, "too long"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": "25h"}, "too long"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "ready_deadline": "200h"}, "too long"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": -1}, "negative"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": "NaN"}, "invalid duration"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": "Infinity"},
     "invalid duration"),
    (RestoreVirtualMachineInput, {**RESTORE, "bound_wait": 1e308}, "too long"),
    (RestoreVirtualMachineInput, {**RESTORE, "bound_wait": 0}, "too short"),
    (RestoreVirtualMachineInput, {**RESTORE, "stop_wait": "0.5s"}, "too short"),
    (RestoreVirtualMachineInput, {**RESTORE, "target_ready_grace": "169h"}, "too long"),
    (CloneVirtualMachineInput, {**CLONE, "bound_wait": 86401}, "too long"),
    (ScheduledSnapshotInput, {**SCHEDULE, "failure_deadline": 1e20}, "too long"),
    (SweepOrphansInput, {**SWEEP, "grace": "1000h"}, "too long"),
    # names: dots where a label is needed, slashes, upper case, length
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "namespace": "de.mo"}, "not a valid name"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "vm": "a/b"}, "not a valid name"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "name": "x" * 300}, "at most 253"),
    (RestoreVirtualMachineInput, {**RESTORE, "namespace": "Demo"}, "not a valid name"),
    (RestoreVirtualMachineInput, {**RESTORE, "snapshot": "../x"}, "not a valid name"),
    (RestoreVirtualMachineInput, {**RESTORE, "target": "web.copy"}, "not a valid name"),
    (RestoreVirtualMachineInput, {**RESTORE, "target": "w" * 64}, "at most 63"),
    (CloneVirtualMachineInput, {**CLONE, "target": "Copy"}, "not a valid name"),
    (CloneVirtualMachineInput, {**CLONE, "source_snapshot": "s" * 300}, "at most 253"),
    (CloneVirtualMachineInput, {**CLONE, "new_smbios_serial": "x\n"}, "printable"),
    (CloneVirtualMachineInput, {**CLONE, "new_mac_addresses": {"a b": "02:00:00:00:00:01"}},
     "interface name"),
    (DeleteVirtualMachineSnapshotInput, {**DELETE, "name": "A"}, "not a valid name"),
    (SweepOrphansInput, {"namespaces": ["kube_system"]}, "not a valid name"),
    (ScheduledSnapshotInput, {**SCHEDULE, "schedule": "Nightly"}, "not a valid name"),
    # vmsnap's own label keys
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "labels": {"schedule.vmsnap.io/name": "x"}},
     "reserved"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "labels": {"vmsnap.io/restore": "x"}},
     "reserved"),
    (ScheduledSnapshotInput, {**SCHEDULE, "labels": {"schedule.vmsnap.io/name": "x"}},
     "reserved"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "labels": {f"k{i}": "v" for i in range(65)}},
     "at most 64"),
    # sizes
    (CloneVirtualMachineInput, {**CLONE, "patches": ["{}"] * 65}, "at most 64"),
    (CloneVirtualMachineInput, {**CLONE, "patches": ["x" * 70000]}, "longer than"),
    (CloneVirtualMachineInput, {**CLONE, "label_filters": ["a" * 400]}, "at most 317"),
    (ScheduledSnapshotInput, {**SCHEDULE, "vm": None, "selector": "a=b," * 300},
     "longer than"),
    (SweepOrphansInput, {"namespaces": [f"n{i}" for i in range(1001)]}, "at most 1000"),
    # unknown fields and wrong types
    (RestoreVirtualMachineInput, {**RESTORE, "boundWait": 5}, "Extra inputs"),
    (CloneVirtualMachineInput, {**CLONE, "spec": {}}, "Extra inputs"),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "namespace": 5}, "string"),
    (RestoreVirtualMachineInput, {**RESTORE, "keep_identity": "maybe"}, "bool"),
    (CloneVirtualMachineInput, {**CLONE, "patches": {"op": "add"}}, "list"),
    (SweepOrphansInput, {"namespaces": "demo"}, "list"),
]


@pytest.mark.parametrize(("model", "document", "complaint"), CASES,
                         ids=[f"{m.__name__}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_hostile_input_is_refused_where_it_enters(
    model: type[BaseModel], document: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        decode(model, json.dumps(document))
    assert complaint in str(refused.value), refused.value


@pytest.mark.parametrize(("model", "document"), [
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": "24h",
                                   "ready_deadline": "168h"}),
    (SnapshotVirtualMachineInput, {**SNAPSHOT, "failure_deadline": 0, "ready_deadline": 0}),
    (RestoreVirtualMachineInput, {**RESTORE, "bound_wait": "10m", "stop_wait": 1,
                                  "target_ready_grace": "168h"}),
    (CloneVirtualMachineInput, {**CLONE, "bound_wait": "24h", "new_smbios_serial": "SN 01"}),
    (SweepOrphansInput, {"all_namespaces": True, "grace": "720h"}),
])
def test_the_bounds_themselves_are_accepted(model: type[BaseModel],
                                            document: dict[str, Any]) -> None:
    decode(model, json.dumps(document))


def test_the_namespace_scope_setting() -> None:
    assert NamespaceScope.parse(None).everything
    assert NamespaceScope.parse(" * ").everything
    scope = NamespaceScope.parse("team-a, team-b team-c")
    assert scope.listed() == ["team-a", "team-b", "team-c"]
    assert scope.refused(["team-a", "kube-system", "kube-system"]) == ["kube-system"]
    for bad in ("Team", "a.b", "*,a"):
        with pytest.raises(ValueError, match="VMSNAP_NAMESPACES"):
            NamespaceScope.parse(bad)
