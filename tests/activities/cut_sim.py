"""A simulator process on the snapshot seed and a cluster adapter to it: what the cut's
tests in this folder (GuestCut, against real HTTP) run on. Each test gets its own, since
they count the freezes of the seed's VMs and slow their disks' cuts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cluster.client import Cluster, load_api_client
from contracts.snapshot import CutInput, FreezePlan, PlannedVolumeSnapshot
from rules.naming import SNAPSHOT_LABEL, label_value
from tests.conftest import StartSim
from tests.support.sim import Sim

SEED = Path(__file__).resolve().parents[1] / "e2e" / "snapshot_seeds" / "snapshot.yaml"
CUT_LATENCY = "sim.vmsnap.io/cut-latency"


@dataclasses.dataclass
class CutSim:
    sim: Sim
    cluster: Cluster

    def input(self, name: str, vm: str, *, freeze: bool = True, required: bool = False,
              budget: float = 10.0, thaw_by: datetime | None = None,
              pvc: str | None = None) -> CutInput:
        """The cut of `vm`'s root disk into VolumeSnapshot `{name}-root` in namespace snap."""
        plan = FreezePlan(vmi=vm, thaw_by=thaw_by or datetime.now(UTC) + timedelta(hours=1),
                          budget_seconds=budget, required=required) if freeze else None
        return CutInput(
            namespace="snap", snapshot=name, snapshot_uid="uid-" + name,
            owned_by_snapshot=False, labels={SNAPSHOT_LABEL: label_value(name)},
            volumes=[PlannedVolumeSnapshot(name=f"{name}-root", volume_name="root",
                                           pvc_name=pvc or f"{vm}-root",
                                           snapshot_class="csi-snap")],
            freeze=plan)

    def freezes(self, vm: str) -> list[dict[str, Any]]:
        return [e for e in self.sim.freeze_log() if e["vmi"] == vm]

    def slow_cut(self, pvc: str, latency: str) -> None:
        self.sim.kubectl("annotate", "--overwrite", "pvc", "-n", "snap", pvc,
                         f"{CUT_LATENCY}={latency}")


@contextmanager
def cut_sim(start_sim: StartSim, name: str) -> Iterator[CutSim]:
    """A simulator process of its own, stopped by its PID on the way out."""
    sim = start_sim(SEED, name=name)
    cluster = Cluster(load_api_client(str(sim.kubeconfig)))
    try:
        yield CutSim(sim, cluster)
    finally:
        cluster.close()
        sim.process.stop()
