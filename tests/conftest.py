"""Shared fixtures: real processes for the simulator (and, for e2e, Temporal and a worker)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from starter.local_stack import REPO_ROOT, start_simulator
from tests.support.sim import Sim

SEEDS = REPO_ROOT / "simulator" / "seeds"
REFERENCE_EXAMPLES = REPO_ROOT.parent / "shared" / "reference" / "examples"

StartSim = Callable[..., Sim]


@pytest.fixture(scope="session")
def start_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartSim]:
    """Start a simulator process on the given seed files; all are stopped at session end."""
    started: list[Sim] = []

    def start(*seeds: Path | str, name: str = "sim") -> Sim:
        state = tmp_path_factory.mktemp(name)
        process = start_simulator(state, [Path(s) for s in seeds], name=name)
        sim = Sim(process, state)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.process.stop()


@pytest.fixture
def simulator(start_sim: StartSim) -> Iterator[Sim]:
    """A fresh simulator on the demo seed, stopped after the test."""
    sim = start_sim(SEEDS / "demo.yaml")
    yield sim
    sim.process.stop()
