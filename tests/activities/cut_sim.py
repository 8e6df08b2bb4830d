"""A simulator process on the snapshot seed and a cluster adapter to it: what the cut's
tests in this folder (GuestCut, against real HTTP) run on. One process serves a module;
each test sees only the freezes and requests made since it began, and leaves the seed's
guests thawed, their disks' cut latency and the simulator's faults as it found them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cluster.client import Cluster, load_api_client
from cluster.errors import ClusterError
from contracts.snapshot import CutInput, FreezePlan, PlannedVolumeSnapshot
from rules.naming import SNAPSHOT_LABEL, label_value
from tests.conftest import StartSim
from tests.support.sim import Sim

SEED = Path(__file__).resolve().parents[1] / "e2e" / "snapshot_seeds" / "snapshot.yaml"
CUT_LATENCY = "sim.vmsnap.io/cut-latency"


GUESTS = ("gc", "twice")  # the seed's running VMs with a guest agent, disk `root` each


@dataclasses.dataclass
class CutSim:
    sim: Sim
    cluster: Cluster
    freeze_mark: int = 0  # freeze log entries before this test
    request_mark: int = 0  # request log index when this test began

    def begin(self) -> None:
        self.freeze_mark = len(self.sim.freeze_log())
        self.request_mark = self.sim.request("GET", "/sim/requests?since=999999999999")["next"]

    def end(self) -> None:
        """Thaw the guests, clear the faults and the slowed cuts a test left behind."""
        self.sim.clear_faults()
        for vm in GUESTS:
            self.cluster.request_json(
                "PATCH", f"/api/v1/namespaces/snap/persistentvolumeclaims/{vm}-root",
                body={"metadata": {"annotations": {CUT_LATENCY: None}}},
                content_type="application/merge-patch+json")
            with contextlib.suppress(ClusterError):  # not frozen
                self.cluster.unfreeze("snap", vm)

    def requests(self) -> list[dict[str, Any]]:
        """The request log since this test began."""
        return list(self.sim.request(
            "GET", f"/sim/requests?since={self.request_mark}")["items"])

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
        """`vm`'s freezes since this test began."""
        return [e for e in self.sim.freeze_log()[self.freeze_mark:] if e["vmi"] == vm]

    def slow_cut(self, pvc: str, latency: str) -> None:
        self.sim.kubectl("annotate", "--overwrite", "pvc", "-n", "snap", pvc,
                         f"{CUT_LATENCY}={latency}")


Harness = TypeVar("Harness", bound=CutSim)


@contextmanager
def cut_sim(start_sim: StartSim, name: str, harness: type[Harness]) -> Iterator[Harness]:
    """A simulator process of its own in a module's `harness` (a CutSim with the module's
    way of running a cut), stopped by its PID on the way out."""
    sim = start_sim(SEED, name=name)
    cluster = Cluster(load_api_client(str(sim.kubeconfig)))
    try:
        yield harness(sim, cluster)
    finally:
        cluster.close()
        sim.process.stop()


@contextmanager
def one_test(shared: CutSim) -> Iterator[None]:
    """A test's turn on the module's simulator (`CutSim.begin` and `end`)."""
    shared.begin()
    try:
        yield
    finally:
        shared.end()
