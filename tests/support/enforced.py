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

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from starter.local_stack import REPO_ROOT, SimulatorProcess, start_simulator
from tests.support.sim import WORKER_ACCOUNT, Sim

RBAC_DIR = REPO_ROOT / "deploy" / "rbac"
DEPLOY_RBAC_SEEDS = (
    RBAC_DIR / "serviceaccount.yaml",
    RBAC_DIR / "clusterrole.yaml",
    RBAC_DIR / "clusterrolebinding.yaml",
)
WORKER_USER = "system:serviceaccount:" + WORKER_ACCOUNT.replace("/", ":")


_started: list[SimulatorProcess] = []
_seen: dict[int, int] = {}  # id of a started simulator -> the log index read up to
_lock = threading.Lock()  # background scenarios start simulators from their own threads


def start_enforced_simulator(
    state_dir: Path, seeds: list[Path], name: str = "simulator", timeout: float = 30.0
) -> SimulatorProcess:
    """A simulator enforcing deploy/rbac; its refusals are reported by `new_refusals`."""
    namespace, account = WORKER_ACCOUNT.split("/")
    process = start_simulator(
        state_dir, [*seeds, *DEPLOY_RBAC_SEEDS], name=name, timeout=timeout, rbac=True,
        service_accounts=((namespace, account),),
    )  # fmt: skip
    with _lock:
        _started.append(process)
    return process


def _log_since(process: SimulatorProcess, since: int) -> dict[str, Any]:
    request = urllib.request.Request(f"{process.url}/sim/requests?since={since}",
                                     headers={"Authorization": f"Bearer {process.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def _refusals(entries: list[dict[str, Any]]) -> list[str]:
    return [f"{e['status']} {e['user'] or 'no user'}: {e['verb']} {e['path']}"
            for e in entries if e["status"] in (401, 403)]


def new_refusals() -> list[str]:
    """The requests every enforcing simulator still running refused since the last call
    (a 403 is a right deploy/rbac lacks, on whatever path the worker took)."""
    found: list[str] = []
    with _lock:
        running = [p for p in _started if p.process.running()]
    for process in running:
        try:
            log = _log_since(process, _seen.get(id(process), 0))
        except OSError:
            continue  # stopped meanwhile (or killed by a fault test): nothing more to read
        _seen[id(process)] = int(log["next"])
        found += [f"{process.process.name} ({process.process.log_path}): {line}"
                  for line in _refusals(log["items"])]
    return found


def refused_requests(sim: Sim) -> list[str]:
    """Every request `sim` refused (401, 403) in its whole log: none may be, under
    enforcement. Nothing for a simulator that no longer answers (a test stopped it)."""
    try:
        return _refusals(sim.requests_log())
    except OSError:
        return []
