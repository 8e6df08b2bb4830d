"""The entry point of the adapter: build a `Cluster` from a kubeconfig or in-cluster config.

`Cluster` gathers the typed operations (VMs, VolumeSnapshots, PVCs) on one
shared `ApiClient`; activity threads may share one instance. It knows nothing
of Temporal: activities translate its errors (cluster.errors) into retries.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.util.retry import Retry

from cluster.errors import ConfigurationError, NotFound
from cluster.models import VolumeSelection
from cluster.pvcs import PvcOperations
from cluster.snapshots import SnapshotOperations
from cluster.vms import VmOperations
from cluster.volumes import claim_name, select_volumes

DEFAULT_KUBECONFIG = "~/.kube/config"
ENV_QPS = "VMSNAP_KUBE_QPS"
ENV_BURST = "VMSNAP_KUBE_BURST"
# Enough connections for every VolumeSnapshot of a 32-disk cut at once, plus the watch and
# the other activities' requests: a request that finds the pool empty opens and drops a
# connection of its own, which costs a TCP (and TLS) handshake inside the freeze window.
CONNECTION_POOL_SIZE = 64


class RateLimiter:
    """A token bucket in front of the API server, like client-go's QPS/burst, with one twist.

    Ordinary requests take a token and, when the bucket is empty, wait until their turn.
    Urgent requests (made while a guest is frozen, see `urgent_requests`) never wait: they
    take their token on credit and the debt delays the ordinary requests after them, so the
    average rate still holds while the guest's window does not queue behind unfrozen work.
    """

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not qps > 0 or not math.isfinite(qps):
            raise ValueError(f"QPS must be a positive number, not {qps}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.qps, self.burst = qps, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, urgent: bool = False) -> float:
        """Take one token; return how many seconds the caller must wait before sending."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._updated) * self.qps)
            self._updated = now
            self._tokens -= 1.0
            if urgent or self._tokens >= 0:
                return 0.0
            return -self._tokens / self.qps

    def acquire(self, urgent: bool = False) -> float:
        """`reserve`, then wait; returns the seconds waited."""
        wait = self.reserve(urgent)
        if wait > 0:
            self._sleep(wait)
        return wait


_urgency = threading.local()


@contextlib.contextmanager
def urgent_requests() -> Iterator[None]:
    """Mark this thread's requests as urgent (a guest is frozen) for `RateLimiter`."""
    before = getattr(_urgency, "on", False)
    _urgency.on = True
    try:
        yield
    finally:
        _urgency.on = before


def requests_are_urgent() -> bool:
    return bool(getattr(_urgency, "on", False))


def rate_limiter_from_environment(env: Mapping[str, str]) -> RateLimiter | None:
    """VMSNAP_KUBE_QPS (unset, empty or 0: unlimited) and VMSNAP_KUBE_BURST (default: the
    QPS rounded up, at least 1). Bad values are a ConfigurationError."""
    qps_text, burst_text = env.get(ENV_QPS, "").strip(), env.get(ENV_BURST, "").strip()
    try:
        qps = float(qps_text) if qps_text else 0.0
    except ValueError:
        qps = math.nan
    if math.isnan(qps) or qps < 0 or math.isinf(qps):
        raise ConfigurationError(f"{ENV_QPS}={qps_text!r}: give a number of requests per "
                                 "second (0 or unset: unlimited)", reason="Configuration")
    if qps == 0:
        if burst_text:
            raise ConfigurationError(f"{ENV_BURST} is set but {ENV_QPS} is not",
                                     reason="Configuration")
        return None
    try:
        burst = int(burst_text) if burst_text else max(1, math.ceil(qps))
    except ValueError:
        burst = 0
    if burst < 1:
        raise ConfigurationError(f"{ENV_BURST}={burst_text!r}: give a whole number of at "
                                 "least 1", reason="Configuration")
    return RateLimiter(qps, burst)


class ThrottledApiClient(client.ApiClient):
    """An ApiClient whose every request (watches included) first passes the rate limiter."""

    def __init__(self, configuration: client.Configuration,
                 limiter: RateLimiter | None) -> None:
        super().__init__(configuration)
        self.limiter = limiter

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if self.limiter is not None:
            self.limiter.acquire(requests_are_urgent())
        return super().call_api(*args, **kwargs)


def _connection_retries() -> Retry:
    """Retry only failures to connect (the request never left), and nothing else.

    urllib3's default also re-sends idempotent requests after read timeouts,
    which would multiply a caller's timeout by four; the callers (Temporal
    activities) retry with their own policy instead.
    """
    return Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0,
                 backoff_factor=0.1, raise_on_status=False)


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient from, in order: `kubeconfig`, $KUBECONFIG, ~/.kube/config, in-cluster.

    An explicit path that does not exist is an error (no silent fallback);
    $KUBECONFIG may list several files separated by ':' as kubectl allows. Requests are
    rate-limited by $VMSNAP_KUBE_QPS / $VMSNAP_KUBE_BURST when set (`RateLimiter`).
    """
    configuration = type.__call__(client.Configuration)
    source = _kubeconfig_source(kubeconfig)
    try:
        if source is not None:
            config.load_kube_config(
                config_file=source, context=context,
                client_configuration=configuration, persist_config=False,
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            if context:
                raise ConfigurationError(
                    f"context {context!r} given, but there is no kubeconfig "
                    "(running with in-cluster configuration)", reason="Configuration")
            config.load_incluster_config(client_configuration=configuration)
        else:
            raise ConfigurationError(
                "no Kubernetes configuration: pass a kubeconfig, set KUBECONFIG, create "
                f"{DEFAULT_KUBECONFIG}, or run inside a cluster", reason="Configuration")
    except ConfigException as exc:
        where = source or "in-cluster configuration"
        raise ConfigurationError(f"cannot load {where}: {exc}", reason="Configuration") from exc
    configuration.retries = _connection_retries()
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize or 0, CONNECTION_POOL_SIZE)
    return ThrottledApiClient(configuration, rate_limiter_from_environment(os.environ))


def _kubeconfig_source(explicit: str | None) -> str | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"kubeconfig {explicit} not found", reason="Configuration")
        return str(path)
    from_env = os.environ.get("KUBECONFIG", "")
    if from_env:
        existing = [p for p in from_env.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        if not existing:
            raise ConfigurationError(
                f"KUBECONFIG={from_env} names no existing file", reason="Configuration")
        return os.pathsep.join(existing)
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    return str(default) if default.is_file() else None


class Cluster(VmOperations, SnapshotOperations, PvcOperations):
    """Typed Kubernetes operations for vmsnap on one ApiClient.

    Objects are plain dicts as the server sent them; states that cross into
    workflows are the pydantic models of `cluster.models`. Every error is a
    `cluster.errors.ClusterError`.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        super().__init__(
            api_client,
            request_timeout_seconds=request_timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
        )

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, context: str | None = None, **options: Any
    ) -> Cluster:
        """`load_api_client(kubeconfig, context)` wrapped in a Cluster."""
        return cls(load_api_client(kubeconfig, context), **options)

    def close(self) -> None:
        """Release the connection pool."""
        self.api_client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def select_volumes(self, namespace: str, vm_name: str) -> VolumeSelection:
        """Apply the eligibility rules to the VM as stored now (see `cluster.volumes`).

        Reads the VM, each PVC its spec names, their StorageClasses and every
        VolumeSnapshotClass; NotFound when the VM itself does not exist.
        """
        return self.select_volumes_of(namespace, self.get_vm(namespace, vm_name))

    def select_volumes_of(self, namespace: str, vm: dict[str, Any]) -> VolumeSelection:
        """`select_volumes` for a VM already read (one GET fewer for a caller that has it)."""
        return self.select_volumes_and_pvcs(namespace, vm)[0]

    def select_volumes_and_pvcs(
        self, namespace: str, vm: dict[str, Any]
    ) -> tuple[VolumeSelection, dict[str, dict[str, Any]]]:
        """`select_volumes_of`, and the PVCs it read (by name): a caller that records them
        (the snapshot's content) needs no second read."""
        volumes = ((vm.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes")
        claims = dict.fromkeys(c for v in volumes or [] if (c := claim_name(v)))
        pvcs = self.get_pvcs(namespace, list(claims))
        class_names = dict.fromkeys(
            c for pvc in pvcs.values() if (c := (pvc.get("spec") or {}).get("storageClassName"))
        )
        storage_classes = {
            name: sc for name in class_names if (sc := self.get_storage_class(name)) is not None
        }
        snapshot_classes: list[dict[str, Any]] = []
        if pvcs:
            # NotFound: the snapshot API is not installed, so no PVC has a class.
            with contextlib.suppress(NotFound):
                snapshot_classes = self.list_volume_snapshot_classes()
        return select_volumes(vm, pvcs, storage_classes, snapshot_classes), pvcs
