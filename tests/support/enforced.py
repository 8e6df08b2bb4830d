"""Simulators that enforce the shipped RBAC on the vmsnap worker.

The deploy/ manifests that give the worker its rights (its ServiceAccount, ClusterRole and
ClusterRoleBinding, as `kubectl apply -k deploy/` installs them) are seeded, the
simulator authorizes every request as kube-apiserver's RBAC authorizer does, and the
ServiceAccount gets a token and a kubeconfig of its own (`Sim.worker_kubeconfig`), so a
worker started on it is refused (403) anything the manifests do not grant, on every path
it takes: retries, compensations and sweeps included. Tests and kubectl keep the admin's
kubeconfig (`system:masters`, never refused).
"""

from __future__ import annotations

from pathlib import Path

from starter.local_stack import REPO_ROOT, SimulatorProcess, start_simulator
from tests.support.sim import WORKER_ACCOUNT, Sim

RBAC_DIR = REPO_ROOT / "deploy" / "rbac"
DEPLOY_RBAC_SEEDS = (
    RBAC_DIR / "serviceaccount.yaml",
    RBAC_DIR / "clusterrole.yaml",
    RBAC_DIR / "clusterrolebinding.yaml",
)
WORKER_USER = "system:serviceaccount:" + WORKER_ACCOUNT.replace("/", ":")


def start_enforced_simulator(
    state_dir: Path, seeds: list[Path], name: str = "simulator", timeout: float = 30.0
) -> SimulatorProcess:
    namespace, account = WORKER_ACCOUNT.split("/")
    return start_simulator(
        state_dir, [*seeds, *DEPLOY_RBAC_SEEDS], name=name, timeout=timeout, rbac=True,
        service_accounts=((namespace, account),),
    )  # fmt: skip


def refused_requests(sim: Sim) -> list[str]:
    """Every request the simulator refused (401, 403), as `METHOD path: message`-ish lines
    (the log keeps the attributes, not the answer): none may be, under enforcement."""
    return [
        f"{e['status']} {e['user'] or 'no user'}: {e['verb']} {e['path']}"
        for e in sim.requests_log() if e["status"] in (401, 403)
    ]
