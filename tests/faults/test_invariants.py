"""The invariant checks themselves: on a simulator with no vmsnap at all, each one stays
quiet on a clean cluster and names what a broken run would leave (so they can fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartSim
from tests.faults.invariants import (
    check_invariants,
    freeze_violations,
    lock_violations,
    object_violations,
)
from tests.faults.seeds import VmSeed, write_seed

NS = "inv"


async def test_each_invariant_can_fail(start_sim: StartSim, tmp_path: Path) -> None:
    sim = start_sim(write_seed(tmp_path / "seed.yaml", [VmSeed(NS, disks=1)]), name="inv-sim")
    check_invariants(sim)  # a clean cluster

    sim.request("PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/"
                       "virtualmachineinstances/vm/freeze", {"unfreezeTimeout": "1m"})
    assert any("still frozen" in v for v in freeze_violations(sim))
    assert any("fsFreezeStatus frozen" in v for v in freeze_violations(sim))

    sim.kubectl("-n", NS, "annotate", "vm/vm", 'vmsnap.io/lock={"workflowId":"w"}')
    assert lock_violations(sim) == [f'VM {NS}/vm still locked: {{"workflowId":"w"}}']

    for name in ("orphan", "twice"):
        sim.request("POST", f"/apis/snapshot.storage.k8s.io/v1/namespaces/{NS}/volumesnapshots",
                    {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                     "metadata": {"name": name, "labels": {"vmsnap.io/snapshot": "gone"}},
                     "spec": {"volumeSnapshotClassName": "csi-snap",
                              "source": {"persistentVolumeClaimName": "vm-disk0"}}})
    found = object_violations(sim)
    assert f"VolumeSnapshot {NS}/orphan (vmsnap.io/snapshot=gone) has no record" in found
    assert f"snapshot {NS}/gone: PVCs cut more than once: ['vm-disk0']" in found
    with pytest.raises(AssertionError, match="invariants violated"):
        check_invariants(sim)
    sim.process.stop()
