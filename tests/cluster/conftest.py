"""The adapter against a running simulator seeded with `seeds/adapter.yaml` (one per module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.client import Cluster
from tests.conftest import StartSim
from tests.support.sim import Sim

SEED = Path(__file__).parent / "seeds" / "adapter.yaml"
NS = "adapter"
# PVCs of the seed that bind (all but pending-disk, whose class has no provisioner).
BINDABLE = ["root-disk", "data-dv", "hot-disk", "legacy-disk", "ambiguous-disk",
            "vmi-only-disk", "snap-a", "slow-disk", "never-disk", "hotplug-root",
            "hotplug-persistent"]


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(SEED, name="adapter")
    yield started
    started.process.stop()


@pytest.fixture(scope="module")
def cluster(sim: Sim) -> Iterator[Cluster]:
    """The adapter on the simulator's kubeconfig, once the seeded PVCs are Bound."""
    with Cluster.from_environment(str(sim.kubeconfig), request_timeout_seconds=10) as adapter:
        adapter.watch_pvcs(NS, BINDABLE, timeout_seconds=10)
        yield adapter
