"""The entry point of the adapter: build a `Cluster` from a kubeconfig or in-cluster config.

`Cluster` gathers the typed operations (VMs, VolumeSnapshots, PVCs) on one
shared `ApiClient`; activity threads may share one instance. It knows nothing
of Temporal: activities translate its errors (cluster.errors) into retries.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.util.retry import Retry

from cluster.apis import CONNECTION_POOL_SIZE, VOLUME_SNAPSHOT_CLASSES
from cluster.errors import ConfigurationError, NotFound, Transient
from cluster.informer import CollectionCaches, WatchedCollection
from cluster.pvcs import PvcOperations
from cluster.snapshots import SnapshotOperations
from cluster.vms import VmOperations
from rules.models import VolumeSelection
from rules.volumes import claim_name, select_volumes

DEFAULT_KUBECONFIG = "~/.kube/config"
ENV_QPS = "VMSNAP_KUBE_QPS"
ENV_BURST = "VMSNAP_KUBE_BURST"
# Token arithmetic in floats: a token due at t must be there at t, not a rounding later.
_EPSILON = 1e-9
# A waiting request that is not next is woken when it becomes next; it also looks again
# this often, so that no lost wake-up can stall the queue.
MAX_IDLE_WAIT_SECONDS = 1.0


class TokenQueue:
    """A token bucket whose waiting requests are served by priority key, not arrival.

    Pure bookkeeping (no lock, no clock, no waiting): `RateLimiter` drives it, and tests
    drive it with a fake clock. Tokens refill at `qps` up to `burst`. A request that finds
    no one waiting and a token free takes it at once (`try_take`); otherwise it queues
    (`enqueue`) and `grant` hands each token, as it comes, to the waiting request with the
    smallest key (ties: first come). Urgent requests `borrow`: the bucket goes into debt,
    which delays everyone waiting.
    """

    def __init__(self, qps: float, burst: int, now: float) -> None:
        if not qps > 0 or not math.isfinite(qps):
            raise ValueError(f"QPS must be a positive number, not {qps}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.qps, self.burst = qps, burst
        self._tokens = float(burst)
        self._updated = now
        self._waiting: list[Ticket] = []
        self._arrivals = itertools.count()

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._updated) * self.qps)
            self._updated = now

    def _drop_withdrawn(self) -> None:
        while self._waiting and self._waiting[0].withdrawn:
            heapq.heappop(self._waiting)

    @property
    def waiting(self) -> int:
        return sum(not t.withdrawn for t in self._waiting)

    def head(self) -> Ticket | None:
        """The waiting request that gets the next token."""
        self._drop_withdrawn()
        return self._waiting[0] if self._waiting else None

    def try_take(self, now: float) -> bool:
        """Take a token at once if one is free and nobody waits for it."""
        self._refill(now)
        if self.head() is None and self._tokens >= 1 - _EPSILON:
            self._tokens -= 1
            return True
        return False

    def borrow(self, now: float) -> None:
        """Take a token whether or not there is one (an urgent request)."""
        self._refill(now)
        self._tokens -= 1

    def enqueue(self, key: float, now: float) -> Ticket:
        ticket = Ticket(key, next(self._arrivals), now)
        heapq.heappush(self._waiting, ticket)
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """Leave the queue without a token (the caller gave up)."""
        ticket.withdrawn = True
        self._drop_withdrawn()

    def grant(self, now: float) -> list[Ticket]:
        """Give every token available now to the waiting requests, smallest key first."""
        self._refill(now)
        granted = []
        while self._tokens >= 1 - _EPSILON and (ticket := self.head()) is not None:
            heapq.heappop(self._waiting)
            self._tokens -= 1
            ticket.granted = True
            granted.append(ticket)
        return granted

    def next_grant_in(self, now: float) -> float | None:
        """Seconds until the head can be granted (None when nobody waits)."""
        if self.head() is None:
            return None
        self._refill(now)
        return max(0.0, (1.0 - _EPSILON - self._tokens) / self.qps)


@dataclass(eq=False)
class Ticket:
    """One request waiting in a `TokenQueue`; ordered by (key, arrival)."""

    key: float
    arrival: int
    enqueued_at: float
    granted: bool = False
    withdrawn: bool = False
    wake: threading.Event = field(default_factory=threading.Event, repr=False)

    def __lt__(self, other: Ticket) -> bool:
        return (self.key, self.arrival) < (other.key, other.arrival)


@dataclass(frozen=True)
class RequestPriority:
    """Whose request this is, for `RateLimiter`: smaller `key` goes first.

    `key` is a `time.monotonic()` reading, the start of the operation the request works
    for (activities.request_priority sets it per workflow run), so that requests of
    operations that started earlier pass first and a throttled fleet finishes one operation
    after another instead of all together at the end. A request without a priority is keyed
    by its own arrival time. `give_up_at` (monotonic) and `max_wait` (seconds) bound the wait:
    past either, the request leaves the queue with a `Transient` error instead of holding a
    place for an activity that has already timed out.
    """

    key: float
    give_up_at: float | None = None
    max_wait: float | None = None

    def deadline(self, enqueued_at: float) -> float | None:
        limits = [t for t in (self.give_up_at, None if self.max_wait is None
                              else enqueued_at + self.max_wait) if t is not None]
        return min(limits) if limits else None


_priority: contextvars.ContextVar[RequestPriority | None] = contextvars.ContextVar(
    "vmsnap_request_priority", default=None)


@contextlib.contextmanager
def request_priority(key: float, give_up_at: float | None = None,
                     max_wait: float | None = None) -> Iterator[RequestPriority]:
    """Give the requests made in this context (and in tasks or threads started with a copy
    of it, e.g. `contextvars.copy_context().run`) this priority for `RateLimiter`."""
    priority = RequestPriority(key, give_up_at, max_wait)
    token = _priority.set(priority)
    try:
        yield priority
    finally:
        _priority.reset(token)


def current_request_priority() -> RequestPriority | None:
    return _priority.get()


class RateLimiter:
    """A token bucket in front of the API server, like client-go's QPS/burst, with two twists.

    Waiting requests are served by their `RequestPriority` key, earliest operation first,
    not in arrival order (see `TokenQueue`): under a tight limit, the operations that started
    first finish first, while FIFO would advance every operation together until all of them
    hit their deadlines at once. Urgent requests (made while a guest is frozen, see
    `urgent_requests`) never wait: they take their token on credit and the debt delays the
    waiting requests, so the average rate still holds while the guest's window does not
    queue behind unfrozen work.
    """

    def __init__(self, qps: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._queue = TokenQueue(qps, burst, clock())
        self.qps, self.burst = self._queue.qps, self._queue.burst
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """How many requests wait for a token now."""
        with self._lock:
            return self._queue.waiting

    def acquire(self, urgent: bool = False, priority: RequestPriority | None = None) -> float:
        """Wait for this request's turn; return the seconds waited.

        Raises `Transient` (reason ClientThrottled) when the priority's deadline passes
        before the request's turn comes; it then holds no place and took no token.
        """
        with self._lock:
            now = self._clock()
            if urgent:
                self._queue.borrow(now)
                self._wake_head()  # the head must time its token again, later
                return 0.0
            if self._queue.try_take(now):
                return 0.0
            ticket = self._queue.enqueue(now if priority is None else priority.key, now)
            deadline = None if priority is None else priority.deadline(now)
        try:
            return self._wait_for_turn(ticket, deadline)
        except BaseException:
            # Cancelled while waiting (an activity's thread gets CancelledError raised in
            # it): leave the queue and pass the turn on, or everyone behind waits forever.
            with self._lock:
                if not ticket.granted:
                    self._queue.withdraw(ticket)
                self._wake_head()
            raise

    def _wait_for_turn(self, ticket: Ticket, deadline: float | None) -> float:
        while True:
            with self._lock:
                now = self._clock()
                for granted in self._queue.grant(now):
                    granted.wake.set()
                if ticket.granted:
                    self._wake_head()
                    return now - ticket.enqueued_at
                if deadline is not None and now >= deadline:
                    self._queue.withdraw(ticket)
                    self._wake_head()
                    raise Transient(
                        f"client-side rate limit ({self.qps:g} requests/s): no turn within "
                        f"{now - ticket.enqueued_at:.1f}s, the caller's deadline",
                        status=429, reason="ClientThrottled")
                timeout = (self._queue.next_grant_in(now) if self._queue.head() is ticket
                           else MAX_IDLE_WAIT_SECONDS)
                if deadline is not None:
                    timeout = min(math.inf if timeout is None else timeout, deadline - now)
                ticket.wake.clear()
            ticket.wake.wait(timeout)

    def _wake_head(self) -> None:
        """Let the (new) head time the next token: only the head waits with a timeout."""
        head = self._queue.head()
        if head is not None:
            head.wake.set()


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
    """An ApiClient whose every request (watches included) first passes the rate limiter,
    with this thread's urgency and this context's `RequestPriority`."""

    def __init__(self, configuration: client.Configuration,
                 limiter: RateLimiter | None) -> None:
        super().__init__(configuration)
        self.limiter = limiter

    def before_request(self) -> None:
        """Wait for the rate limiter's token (requests sent by other transports call this)."""
        if self.limiter is not None:
            self.limiter.acquire(requests_are_urgent(), current_request_priority())

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self.before_request()
        return super().call_api(*args, **kwargs)


def _connection_retries() -> Retry:
    """Retry only failures to connect (the request never left), and nothing else.

    urllib3's default also re-sends idempotent requests after read timeouts,
    which would multiply a caller's timeout by four; the callers (Temporal
    activities) retry with their own policy instead.
    """
    return Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0,
                 backoff_factor=0.1, raise_on_status=False)


CREDENTIAL_CHECK_SECONDS = 1.0
STORAGE_CLASSES = "storageclasses"


def _at_most_every(
    seconds: float, hook: Callable[[client.Configuration], None]
) -> Callable[[client.Configuration], None]:
    """`hook`, run at most once every `seconds` (later calls in between do nothing).

    The kubeconfig and in-cluster loaders install a hook that the client runs before every
    request: it checks the token's expiry (refreshing 5 minutes early) and then writes the
    whole configuration back, host included, whose setter reads the environment's proxy
    settings: a third of a request's client CPU, for credentials that change at most
    every few minutes.
    """
    last = -math.inf
    inner = hook

    def throttled(configuration: client.Configuration) -> None:
        nonlocal last, inner
        now = time.monotonic()
        if now - last >= seconds:
            last = now
            inner(configuration)
            # The loaders' hook installs itself again each time it runs: keep ours first.
            installed = configuration.refresh_api_key_hook
            if installed is not throttled and installed is not None:
                inner = installed
                configuration.refresh_api_key_hook = throttled

    return throttled


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
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        configuration.refresh_api_key_hook = _at_most_every(CREDENTIAL_CHECK_SECONDS, hook)
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
    workflows are the pydantic models of `rules.models`. Every error is a
    `cluster.errors.ClusterError`.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
        cache_reads: bool = False,
    ) -> None:
        """`cache_reads`: keep watch-fed copies of what every snapshot reads (the PVCs of
        each namespace it meets, StorageClasses, VolumeSnapshotClasses): a long-lived
        worker then asks nothing about them per snapshot (see `cluster.informer`)."""
        super().__init__(
            api_client,
            request_timeout_seconds=request_timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
        )
        self._pvc_caches = CollectionCaches(self._watch_pvcs_of) if cache_reads else None
        self._class_caches = CollectionCaches(self._watch_classes) if cache_reads else None

    def _watch_pvcs_of(self, namespace: str) -> WatchedCollection:
        return self._watched(
            functools.partial(self.core.list_namespaced_persistent_volume_claim, namespace),
            f"PersistentVolumeClaims in {namespace}")

    def _watch_classes(self, plural: str) -> WatchedCollection:
        if plural == STORAGE_CLASSES:
            return self._watched(self.storage.list_storage_class, "StorageClasses")
        return self._watched(
            functools.partial(self.custom.list_cluster_custom_object,
                              VOLUME_SNAPSHOT_CLASSES.group, VOLUME_SNAPSHOT_CLASSES.version,
                              VOLUME_SNAPSHOT_CLASSES.plural), "VolumeSnapshotClasses")

    def _watched(self, list_call: Callable[..., Any], what: str) -> WatchedCollection:
        return WatchedCollection(
            list_call, what=what, connect_timeout_seconds=self.connect_timeout_seconds,
            request_timeout_seconds=self.request_timeout_seconds)

    def pvc_cache(self, namespace: str) -> WatchedCollection | None:
        return None if self._pvc_caches is None else self._pvc_caches.get(namespace)

    def class_cache(self, plural: str) -> WatchedCollection | None:
        """The cache of `storageclasses` or `volumesnapshotclasses` when kept and following
        the server; None: read from the server."""
        return None if self._class_caches is None else self._class_caches.get(plural)

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, context: str | None = None, **options: Any
    ) -> Cluster:
        """`load_api_client(kubeconfig, context)` wrapped in a Cluster."""
        return cls(load_api_client(kubeconfig, context), **options)

    def close(self) -> None:
        """Stop the caches' watches and release the connection pool."""
        for caches in (self._pvc_caches, self._class_caches):
            if caches is not None:
                caches.close()
        self.close_transport()
        self.api_client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def select_volumes(self, namespace: str, vm_name: str) -> VolumeSelection:
        """Apply the eligibility rules to the VM as stored now (see `rules.volumes`).

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
        selection = self._select_with_classes(vm, pvcs, cached=True)
        if selection.partial and self._class_caches is not None:
            # A disk left out on cached classes: the caches may lag a class just made.
            selection = self._select_with_classes(vm, pvcs, cached=False)
        return selection, pvcs

    def _select_with_classes(
        self, vm: dict[str, Any], pvcs: dict[str, dict[str, Any]], *, cached: bool
    ) -> VolumeSelection:
        class_names = dict.fromkeys(
            c for pvc in pvcs.values() if (c := (pvc.get("spec") or {}).get("storageClassName"))
        )
        storage_cache = self.class_cache(STORAGE_CLASSES) if cached and class_names else None
        storage_classes = {
            name: sc for name in class_names
            if (sc := (storage_cache.get(name) if storage_cache is not None else None)
                or self.get_storage_class(name)) is not None
        }
        snapshot_classes: list[dict[str, Any]] = []
        if pvcs:
            snapshot_cache = self.class_cache(VOLUME_SNAPSHOT_CLASSES.plural) if cached else None
            if snapshot_cache is not None:
                snapshot_classes = snapshot_cache.values()
            else:
                # NotFound: the snapshot API is not installed, so no PVC has a class.
                with contextlib.suppress(NotFound):
                    snapshot_classes = self.list_volume_snapshot_classes()
        return select_volumes(vm, pvcs, storage_classes, snapshot_classes)
