"""What the simulated controllers share: the store, one work queue, timers, clocks, Events.

Real controllers are level-triggered: a watch event only says "look at this
object again", and the reconcile reads the current state. The simulated ones
work the same way. The store announces every change synchronously, inside the
write; the announcement only queues a key, and the queue is drained later on
the event loop (`call_soon`), so a controller never writes inside another
write and always sees committed state. Latencies are timers that queue the key
again when they are due.

Requests first: a real API server answers requests while the controllers run in
processes of their own; here they share one loop, so queued controller work waits
while API requests are being handled (`request_started` / `request_finished`), for
at most `MAX_YIELD_SECONDS` in a row, then runs anyway; it runs at once when the
last request in flight is answered, before a client can send its next one. Only
the order changes: every key is still reconciled, against the state committed at
that moment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from simulator.clock import now_micro, now_seconds
from simulator.errors import ApiError
from simulator.resource_types import ResourceType
from simulator.store import Store, WatchEvent

log = logging.getLogger("simulator.controllers")

# Keys drained per loop iteration before yielding, so that a busy controller never
# starves the HTTP server sharing the loop.
_BATCH = 200
_CONFLICT_RETRIES = 5
# The longest that queued controller work waits for API requests in flight.
MAX_YIELD_SECONDS = 0.02

CORE = ""
STORAGE = "storage.k8s.io"
SNAPSHOT = "snapshot.storage.k8s.io"
GROUP_SNAPSHOT = "groupsnapshot.storage.k8s.io"
KUBEVIRT = "kubevirt.io"

Reconcile = Callable[[Any], None]


class Observer(Protocol):
    """A controller's watch: it queues the keys an event concerns."""

    def observe(self, event: WatchEvent) -> None: ...


def rfc3339_micro(moment: datetime | None = None) -> str:
    """RFC 3339 with microseconds, UTC: precise enough to measure a freeze window."""
    if moment is None:
        return now_micro()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_from_nanos(nanos: int) -> str:
    return rfc3339_micro(datetime.fromtimestamp(nanos / 1e9, UTC))


def rfc3339_seconds(moment: datetime | None = None) -> str:
    """metav1.Time as Kubernetes writes it: whole seconds."""
    if moment is None:
        return now_seconds()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


def annotations_dict(obj: dict[str, Any]) -> dict[str, str]:
    found = meta(obj).get("annotations")
    if not isinstance(found, dict):
        found = {}
        meta(obj)["annotations"] = found
    return found


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


class Runtime:
    """The loop-bound machinery of the controllers; `start` binds it to the running loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[tuple[str, Hashable], None] = {}
        self._handlers: dict[str, Reconcile] = {}
        self._drain_scheduled = False
        self._timers: dict[int, tuple[asyncio.TimerHandle, bool]] = {}
        self._timer_ids = 0
        self._conflicts: dict[tuple[str, Hashable], int] = {}
        self._event_names: dict[tuple[str, str, str], str] = {}
        self._stopped = False
        self._requests_in_flight = 0
        self._yielding_since: float | None = None
        self._yield_timer: asyncio.TimerHandle | None = None

    # ---- lifecycle -----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopped = False
        if self._pending:
            self._schedule_drain()

    def stop(self) -> None:
        self._stopped = True
        if self._yield_timer is not None:
            self._yield_timer.cancel()
            self._yield_timer = None
        for handle, _ in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._pending.clear()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the controllers have not been started")
        return self._loop

    def now(self) -> float:
        """Monotonic seconds, the clock of every latency."""
        return self.loop.time()

    # ---- the work queue ------------------------------------------------------------

    def register(self, queue: str, reconcile: Reconcile) -> None:
        self._handlers[queue] = reconcile

    def enqueue(self, queue: str, key: Hashable) -> None:
        if self._stopped:
            return
        self._pending[(queue, key)] = None
        if self._loop is not None:
            self._schedule_drain()

    def enqueue_after(
        self, queue: str, key: Hashable, delay: float, *, settles: bool = False
    ) -> None:
        """Queue `key` again after `delay` seconds; `settles` marks start-up work that
        `idle` waits for."""
        if self._stopped:
            return
        self._timer_ids += 1
        timer_id = self._timer_ids

        def fire() -> None:
            self._timers.pop(timer_id, None)
            self.enqueue(queue, key)

        handle = self.loop.call_later(max(delay, 0.0), fire)
        self._timers[timer_id] = (handle, settles)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """A timer that is cancelled with the controllers."""
        self._timer_ids += 1
        timer_id = self._timer_ids

        def fire() -> None:
            self._timers.pop(timer_id, None)
            if not self._stopped:
                self._guarded("timer", timer_id, callback)

        handle = self.loop.call_later(max(delay, 0.0), fire)
        self._timers[timer_id] = (handle, False)
        return handle

    def idle(self) -> bool:
        """Nothing queued and no start-up timer pending (see `Behaviours.settle`)."""
        return not self._pending and not any(settles for _, settles in self._timers.values())

    # ---- requests first --------------------------------------------------------------

    def request_started(self) -> None:
        """An API request (not a watch stream) is being handled: controllers wait."""
        self._requests_in_flight += 1

    def request_finished(self) -> None:
        self._requests_in_flight = max(0, self._requests_in_flight - 1)
        if self._requests_in_flight == 0 and self._pending and self._loop is not None:
            self._schedule_drain()

    def _yield_to_requests(self) -> bool:
        """Whether queued work should wait for the requests in flight (at most
        MAX_YIELD_SECONDS in a row; a timer resumes it then)."""
        if self._requests_in_flight == 0:
            self._yielding_since = None
            return False
        now = self.loop.time()
        if self._yielding_since is None:
            self._yielding_since = now
        left = MAX_YIELD_SECONDS - (now - self._yielding_since)
        if left <= 0:
            self._yielding_since = None
            return False
        if self._yield_timer is None:
            self._yield_timer = self.loop.call_later(left, self._resume)
        return True

    def _resume(self) -> None:
        self._yield_timer = None
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._stopped or not self._pending or self._yield_to_requests():
            return
        if self._yield_timer is not None:
            self._yield_timer.cancel()
            self._yield_timer = None
        for _ in range(_BATCH):
            if not self._pending or self._stopped:
                return
            item = next(iter(self._pending))
            del self._pending[item]
            queue, key = item
            handler = self._handlers.get(queue)
            if handler is not None:
                self._guarded(queue, key, functools.partial(handler, key))
        if self._pending:
            self._schedule_drain()

    def _guarded(self, queue: str, key: Hashable, action: Callable[[], None]) -> None:
        try:
            action()
            self._conflicts.pop((queue, key), None)
        except ApiError as exc:
            if exc.code == 409 and exc.reason == "Conflict":
                attempts = self._conflicts.get((queue, key), 0) + 1
                self._conflicts[(queue, key)] = attempts
                if attempts <= _CONFLICT_RETRIES and queue in self._handlers:
                    self.enqueue_after(queue, key, 0.01 * attempts)
                    return
            log.warning("%s %s: %s %s", queue, key, exc.code, exc.message)
        except Exception:
            log.exception("%s %s failed", queue, key)

    # ---- store helpers -------------------------------------------------------------

    def kind(self, group: str, plural: str) -> ResourceType | None:
        try:
            return self.store.resource(group, plural)
        except ApiError:
            return None

    def find(
        self, group: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        resource = self.kind(group, plural)
        if resource is None or not name:
            return None
        return self.store.find(resource, namespace, name)

    def view(
        self, group: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """`find` without the copy: the stored object itself, to read only. To write it,
        build a new top-level dict (`{**obj, "status": new}`) or change a `copy_document`.
        Most reconciles only read what they look up, and a VMI's copy is not small."""
        resource = self.kind(group, plural)
        if resource is None or not name:
            return None
        return self.store.find_view(resource, namespace, name)

    def list_view(
        self, group: str, plural: str, namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """`list` without the copies (the stored objects): to read, never to change or keep.
        An equality `label_selector` reads the label index, not the whole collection."""
        resource = self.kind(group, plural)
        if resource is None:
            return []
        items, _ = self.store.list_view(resource, namespace, label_selector)
        return items

    def list(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        resource = self.kind(group, plural)
        if resource is None:
            return []
        items, _ = self.store.list(resource, namespace)
        return items

    def write(
        self, group: str, plural: str, obj: dict[str, Any], *, shared: bool = False,
        owned: bool = False,
    ) -> dict[str, Any]:
        """PUT of the main resource at the version read; a no-op write changes nothing.
        `shared`: answer the stored object itself, to read only (or ignore), not a copy.
        `owned`: `obj` is the caller's own copy (from `find`), sharing nothing with a stored
        object and never used after this call: stored as it is, not copied again."""
        resource = self._require(group, plural)
        metadata = obj["metadata"]
        return self.store.update(
            resource, metadata.get("namespace"), metadata["name"], obj, shared=shared,
            owned=owned,
        )

    def write_status(
        self, group: str, plural: str, obj: dict[str, Any], *, shared: bool = False,
        owned_status: bool = False,
    ) -> dict[str, Any]:
        """Status update, through the status subresource when the kind has one;
        `shared` as for `write`. `owned_status`: `obj["status"]` is a new dict of the
        caller's, never changed after this call, stored as it is (a VMI's status is large;
        what it shares with the stored version is never changed in place either)."""
        resource = self._require(group, plural)
        metadata = obj["metadata"]
        subresource = "status" if resource.has_status else None
        return self.store.update(
            resource, metadata.get("namespace"), metadata["name"], obj, subresource=subresource,
            shared=shared, owned=owned_status and subresource == "status",
        )

    def create(self, group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        resource = self._require(group, plural)
        return self.store.create(resource, obj["metadata"].get("namespace"), obj)

    def delete(self, group: str, plural: str, namespace: str | None, name: str) -> None:
        resource = self._require(group, plural)
        try:
            self.store.delete(resource, namespace, name)
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _require(self, group: str, plural: str) -> ResourceType:
        return self.store.resource(group, plural)

    # ---- Events --------------------------------------------------------------------

    def record(
        self,
        involved: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        component: str,
    ) -> None:
        """A `v1` Event about `involved`; a repeat bumps `count`, as the event recorder does."""
        events = self.kind(CORE, "events")
        if events is None:
            return
        metadata = involved.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        now = rfc3339_seconds()
        dedup = (str(metadata.get("uid")), reason, message)
        try:
            existing_name = self._event_names.get(dedup)
            if existing_name:
                existing = self.store.find(events, namespace, existing_name)
                if existing is not None:
                    existing["count"] = int(existing.get("count") or 1) + 1
                    existing["lastTimestamp"] = now
                    self.store.update(events, namespace, existing_name, existing, shared=True)
                    return
            name = f"{metadata.get('name', 'object')}.{time.time_ns():x}{secrets.token_hex(2)}"
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion"),
                    "kind": involved.get("kind"),
                    "name": metadata.get("name"),
                    "namespace": metadata.get("namespace"),
                    "uid": metadata.get("uid"),
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": component},
                "reportingComponent": component,
                "reportingInstance": "",
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "eventTime": None,
            }
            # The answer is unused; the event is a new dict of strings and numbers.
            self.store.create(events, namespace, event, shared=True, owned=True)
            self._event_names[dedup] = name
        except ApiError as exc:  # no such namespace, or events not served: not worth failing for
            log.debug("event %s on %s not recorded: %s", reason, metadata.get("name"), exc.message)


class Index:
    """Which objects refer to a key (a claim, a snapshot, a volume handle).

    Kept up to date from watch events, so that a change of the referred object
    queues exactly the objects that refer to it, without listing anything
    inside the store's notification.
    """

    def __init__(self) -> None:
        self._referrers: dict[Hashable, set[Hashable]] = {}
        self._keys: dict[Hashable, set[Hashable]] = {}

    def update(self, referrer: Hashable, keys: Iterable[Hashable]) -> None:
        self.drop(referrer)
        wanted = set(keys)
        if wanted:
            self._keys[referrer] = wanted
            for key in wanted:
                self._referrers.setdefault(key, set()).add(referrer)

    def drop(self, referrer: Hashable) -> None:
        for key in self._keys.pop(referrer, set()):
            found = self._referrers.get(key)
            if found is not None:
                found.discard(referrer)
                if not found:
                    del self._referrers[key]

    def referrers(self, key: Hashable) -> set[Hashable]:
        return set(self._referrers.get(key, ()))
