"""A watch-fed copy of one collection, read without a request (an informer's cache).

Every snapshot reads its VM's PVCs (before choosing volumes, and again before the
freeze), their StorageClasses and the VolumeSnapshotClasses. One LIST of the namespace
answered the PVCs in one request, but it carries every PVC of the namespace: with 1,500
of them, 500 snapshots made the API server encode, and the worker decode, three quarters
of a million PVCs. Kubernetes controllers (KubeVirt's among them) read from a cache that
one LIST and one long watch keep current instead; so does the worker, for what it reads
on every snapshot.

The cache can lag the server by the watch's latency (milliseconds). Callers use it
only where a stale answer is safe or confirmed: `cluster.pvcs` trusts a cached PVC
that looks usable and asks the server about one that is missing or looks unusable;
`Cluster.select_volumes_and_pvcs` chooses volumes on cached classes and, when that
leaves a disk out, chooses again on the server's. While the watch is down (until it has
listed again) `fresh` is False and callers read from the server as before.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from cluster.errors import ClusterError, translated_errors
from cluster.waiting import DictWatch, backoff_delays

log = logging.getLogger(__name__)

WATCH_WINDOW_SECONDS = 60.0  # one watch request; the next resumes from the last version


class WatchedCollection:
    """The objects of one collection by name, kept current by a watch on its own thread.

    `list_call` lists the collection as the generated list methods do (as for
    `cluster.waiting.ListWatch`). `start()` lists once, in the caller's thread (its
    errors are the caller's), then a daemon thread watches from that list's version,
    resumes after a quiet window, and lists again after 410 Gone or a dropped
    connection (with backoff while the server refuses).
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        *,
        what: str,
        connect_timeout_seconds: float = 5.0,
        request_timeout_seconds: float = 30.0,
        window_seconds: float = WATCH_WINDOW_SECONDS,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        on_event: Callable[[str, str | None], None] | None = None,
    ) -> None:
        """`key`: how objects are keyed (default their name; `namespace/name` for a watch
        of every namespace). `on_event(kind, key)`: told of each change after the copy
        holds it (ADDED, MODIFIED, DELETED with the object's key; SYNC with None after a
        list), on the watch's thread: it must not block."""
        if window_seconds <= 0:
            raise ValueError("a watch window must be > 0 seconds")
        self._list_call = list_call
        self._what = what
        self._connect_timeout = connect_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self._window = window_seconds
        self._key = key or _name_of
        self._on_event = on_event
        self._objects: dict[str, dict[str, Any]] = {}
        self._version = ""
        self._lock = threading.Lock()
        self._fresh = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fresh(self) -> bool:
        """True while the copy follows the server (listed, and the watch not broken since)."""
        return self._fresh.is_set() and not self._closed.is_set()

    def get(self, name: str) -> dict[str, Any] | None:
        """The object as last seen (a copy of its top level: callers may set keys), or None."""
        with self._lock:
            found = self._objects.get(name)
        return None if found is None else dict(found)

    def values(self) -> list[dict[str, Any]]:
        """Every object as last seen, in name order (copies of their top level)."""
        with self._lock:
            return [dict(self._objects[name]) for name in sorted(self._objects)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def start(self) -> None:
        """List now (ClusterError if that fails: nothing started), then follow on a thread."""
        if self._thread is not None:
            raise RuntimeError(f"the watch of {self._what} is already started")
        self._relist()
        self._thread = threading.Thread(
            target=self._follow, name=f"watch {self._what}", daemon=True)
        self._thread.start()

    def close(self, wait_seconds: float = 0.0) -> None:
        """Stop following (the thread ends at its window's end at the latest); wait up to
        `wait_seconds` for it to end (nothing of it is sent after that)."""
        self._closed.set()
        self._fresh.clear()
        if wait_seconds > 0 and self._thread is not None:
            self._thread.join(wait_seconds)

    # ---- the thread ------------------------------------------------------------------------

    def _follow(self) -> None:
        delays = backoff_delays(0.1, 5.0)
        while not self._closed.is_set():
            try:
                if not self._fresh.is_set():
                    self._relist()
                self._watch_window()
                delays = backoff_delays(0.1, 5.0)
            except urllib3.exceptions.ReadTimeoutError:
                pass  # a quiet window: resume from the last version seen
            except ApiException as exc:
                self._broken(f"watch answered {exc.status} {exc.reason}", delays)
            except ClusterError as exc:
                self._broken(str(exc), delays)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                self._broken(f"watch dropped: {exc}", delays)

    def _broken(self, why: str, delays: Any) -> None:
        """The copy may have missed events: stop answering from it until it lists again."""
        self._fresh.clear()
        if not self._closed.is_set():
            log.info("cache of %s is stale (%s): listing again", self._what, why)
            self._closed.wait(next(delays))

    def _relist(self) -> None:
        with translated_errors(f"list {self._what}"):
            response = self._list_call(
                _preload_content=False,
                _request_timeout=(self._connect_timeout, self._request_timeout))
            try:
                answer: Mapping[str, Any] = json.loads(response.data or b"{}")
            finally:
                response.release_conn()
        objects = {key: dict(item) for item in answer.get("items") or []
                   if (key := self._key(item))}
        with self._lock:
            self._objects = objects
            self._version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        self._fresh.set()
        if self._on_event is not None:
            self._on_event("SYNC", None)

    def _watch_window(self) -> None:
        watcher = DictWatch()
        stream = watcher.stream(
            self._list_call,
            resource_version=self._version,
            timeout_seconds=max(1, math.ceil(self._window)),
            allow_watch_bookmarks=True,
            _request_timeout=(self._connect_timeout, self._window + 5.0),
        )
        try:
            for event in stream:
                if self._closed.is_set():
                    return
                self._apply(str(event.get("type")), event.get("raw_object") or {})
        finally:
            watcher.stop()
            stream.close()

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "ERROR":
            # 410 Gone (the version is too old) and other errors end the stream as an event.
            code = obj.get("code")
            raise ApiException(status=code if isinstance(code, int) else 500,
                               reason=str(obj.get("reason") or "watch error"))
        metadata = obj.get("metadata") or {}
        version = str(metadata.get("resourceVersion") or "")
        key = self._key(obj) if metadata.get("name") else ""
        with self._lock:
            if version:
                self._version = version
            if kind == "BOOKMARK" or not key:
                return
            if kind == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = dict(obj)
        if self._on_event is not None:
            self._on_event(kind, key)


def _name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def namespaced_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name`: the key of a watch of every namespace."""
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"


class CollectionCaches:
    """One WatchedCollection per key (a namespace), started on first use, shared by threads.

    A key whose first list fails gets no cache this time (the caller reads from the
    server); the next use tries again, at most once every `retry_seconds`.
    """

    def __init__(
        self, make: Callable[[str], WatchedCollection], retry_seconds: float = 30.0
    ) -> None:
        self._make = make
        self._retry_seconds = retry_seconds
        self._caches: dict[str, WatchedCollection] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._starting: dict[str, threading.Lock] = {}

    def get(self, key: str) -> WatchedCollection | None:
        """The cache for `key` if it follows the server now, else None (read the server)."""
        cache = self._caches.get(key)
        if cache is not None:
            return cache if cache.fresh else None
        with self._lock:
            starting = self._starting.setdefault(key, threading.Lock())
        with starting:  # one thread lists; the others wait for its answer
            cache = self._caches.get(key)
            if cache is not None:
                return cache if cache.fresh else None
            failed = self._failed_at.get(key)
            if failed is not None and time.monotonic() - failed < self._retry_seconds:
                return None
            candidate = self._make(key)
            try:
                candidate.start()
            except ClusterError as exc:
                self._failed_at[key] = time.monotonic()
                log.info("no cache for %s: %s", key, exc)
                return None
            self._caches[key] = candidate
            return candidate

    def close(self) -> None:
        for cache in list(self._caches.values()):
            cache.close()
        self._caches.clear()
