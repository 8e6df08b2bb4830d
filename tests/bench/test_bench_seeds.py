"""The generated benchmark fleet: the simulator's own write pipeline accepts every object."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.seeds import (
    NAMESPACE,
    SNAPSHOT_CLASS,
    fleet_documents,
    vm_name,
    vm_namespace,
    write_fleet_seed,
)
from simulator import annotations as ann
from simulator.reference import find_reference_dir, load_reference
from simulator.registry import Registry
from simulator.runtime import DEFAULT_CRDS_DIR
from simulator.seeding import load_seed_files
from simulator.store import Store
from simulator.writes import Writer


def test_fleet_has_every_vm_with_its_disks() -> None:
    docs = fleet_documents(4, disks=3)
    vms = [d for d in docs if d["kind"] == "VirtualMachine"]
    pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert [v["metadata"]["name"] for v in vms] == [vm_name(i) for i in range(4)]
    assert len(pvcs) == 12
    claims = {v["persistentVolumeClaim"]["claimName"]
              for vm in vms for v in vm["spec"]["template"]["spec"]["volumes"]}
    assert claims == {p["metadata"]["name"] for p in pvcs}


def test_instant_storage_by_default_and_latencies_settable() -> None:
    def snapshot_class(docs: list[dict[str, Any]]) -> dict[str, Any]:
        return next(d for d in docs if d["metadata"]["name"] == SNAPSHOT_CLASS)

    instant = snapshot_class(fleet_documents(1))
    assert ann.latency(instant, ann.CUT_LATENCY) == 0.0
    assert ann.latency(instant, ann.READY_LATENCY) == 0.0
    slow = snapshot_class(fleet_documents(1, cut_latency="200ms"))
    assert ann.latency(slow, ann.CUT_LATENCY) == pytest.approx(0.2)


def test_vms_spread_over_namespaces_round_robin() -> None:
    docs = fleet_documents(6, disks=1, namespaces=3)
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert namespaces == [vm_namespace(i, 3) for i in range(3)]
    for doc in docs:
        if doc["kind"] in ("VirtualMachine", "PersistentVolumeClaim"):
            index = int(doc["metadata"]["name"].split("-")[1])
            assert doc["metadata"]["namespace"] == vm_namespace(index, 3)
    assert vm_namespace(5, 1) == NAMESPACE
    with pytest.raises(ValueError, match="namespaces"):
        fleet_documents(2, namespaces=3)


def test_bad_sizes_refused() -> None:
    with pytest.raises(ValueError, match="VM"):
        fleet_documents(0)
    with pytest.raises(ValueError, match="disk"):
        fleet_documents(1, disks=0)


def test_written_seed_loads_through_the_simulators_validation(tmp_path: Path) -> None:
    path = write_fleet_seed(tmp_path, 3, disks=2, namespaces=2)
    assert len(list(yaml.safe_load_all(path.read_text()))) == 4 + 3 * 3
    store = Store()
    registry = Registry(store, load_reference(find_reference_dir(None), DEFAULT_CRDS_DIR))
    registry.install()
    try:
        created = load_seed_files(Writer(store, registry), registry, [path])
    finally:
        registry.close()
    assert created == 4 + 3 * 3
