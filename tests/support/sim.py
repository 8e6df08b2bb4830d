"""Test helpers around a running simulator process: its admin endpoints and kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from starter.local_stack import SimulatorProcess

WORKER_ACCOUNT = "vmsnap/vmsnap-worker"  # deploy/rbac/serviceaccount.yaml


class Sim:
    """A running simulator as tests use it: URL, kubeconfig, `/sim/*` endpoints, kubectl."""

    def __init__(self, process: SimulatorProcess, home: Path) -> None:
        self.process = process
        self.url = process.url
        self.kubeconfig = process.kubeconfig
        self.token = process.token
        self.home = home
        # What a vmsnap worker uses: the deployed ServiceAccount's credentials when the
        # simulator enforces RBAC for it (tests/support/enforced.py), else the admin's.
        self.worker_kubeconfig = process.service_account_kubeconfigs.get(
            WORKER_ACCOUNT, process.kubeconfig)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def requests_log(self) -> list[dict[str, Any]]:
        answer = self.request("GET", "/sim/requests")
        return answer["items"] if isinstance(answer, dict) else answer

    def freeze_log(self) -> list[dict[str, Any]]:
        answer = self.request("GET", "/sim/freeze-log")
        return answer["items"] if isinstance(answer, dict) else answer

    def set_faults(self, spec: Any) -> Any:
        return self.request("PUT", "/sim/faults", spec)

    def clear_faults(self) -> None:
        self.request("DELETE", "/sim/faults")

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """kubectl against this simulator, with a private discovery cache; as the admin
        unless another `kubeconfig` (a ServiceAccount's) is given."""
        env = {**os.environ, "HOME": str(self.home),
               "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        return subprocess.run(
            ["kubectl", "--cache-dir", str(self.home / "kube-cache"), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=check,
        )
