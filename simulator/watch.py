"""Watches: one store subscription fanned out to the open watch streams by kind.

A watch registers synchronously right after it has read the store's history
(the store and every handler share one event loop), so no change falls
between the replayed events and the live ones. Each event is encoded once
and shared by every plain-JSON watcher of its kind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.store import Store, WatchEvent

Matcher = Callable[[dict[str, Any]], bool]


Encoder = Callable[[dict[str, Any]], bytes]


def _plain_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


class EncodedEvent:
    """A watch event and its newline-terminated JSON, computed at most once.

    `encode` gives the object's JSON; the hub passes the store's, which caches a stored
    object's bytes per version (a GET of the same version then costs nothing more).
    """

    __slots__ = ("_encode", "_line", "object", "type")

    def __init__(self, type_: str, obj: dict[str, Any], encode: Encoder = _plain_json) -> None:
        self.type = type_
        self.object = obj
        self._encode = encode
        self._line: bytes | None = None

    def retyped(self, type_: str) -> EncodedEvent:
        """The same object as another event type (a selective watch's ADDED or DELETED)."""
        return EncodedEvent(type_, self.object, self._encode)

    @property
    def line(self) -> bytes:
        if self._line is None:
            # Byte for byte json.dumps({"type": ..., "object": ...}).
            self._line = (b'{"type": ' + json.dumps(self.type).encode() + b', "object": '
                          + self._encode(self.object) + b"}\n")
        return self._line


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta.get("name") or "")


@dataclass(eq=False)
class Watcher:
    """One open watch: what it wants and the queue its stream drains.

    With a selector, a watcher remembers which objects it has shown, so that an
    object that stops matching arrives as DELETED and one that starts matching as
    ADDED, as the API server's watch cache reports them.
    """

    key: tuple[str, str]
    namespace: str
    matches: Matcher
    selective: bool = False
    shown: set[tuple[str, str]] = field(default_factory=set)
    # None is the end-of-stream sentinel (the server is stopping).
    queue: asyncio.Queue[EncodedEvent | None] = field(default_factory=asyncio.Queue)

    def offer(self, encoded: EncodedEvent) -> None:
        obj = encoded.object
        if self.namespace and obj.get("metadata", {}).get("namespace") != self.namespace:
            return
        if not self.selective:
            self.queue.put_nowait(encoded)
            return
        key, matches = _key(obj), self.matches(obj)
        if encoded.type == "DELETED":
            if key in self.shown or matches:
                self.shown.discard(key)
                self.queue.put_nowait(encoded)
        elif matches:
            if key not in self.shown and encoded.type == "MODIFIED":
                encoded = encoded.retyped("ADDED")
            self.shown.add(key)
            self.queue.put_nowait(encoded)
        elif key in self.shown:
            self.shown.discard(key)
            self.queue.put_nowait(encoded.retyped("DELETED"))


class WatchHub:
    def __init__(self, store: Store) -> None:
        self._watchers: dict[tuple[str, str], set[Watcher]] = {}
        self._store = store
        self._unsubscribe = store.subscribe(self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        watchers = self._watchers.get(event.resource.key)
        if not watchers:
            return

        def encode(obj: dict[str, Any]) -> bytes:
            return self._store.encoded(event.resource, obj, type_meta=True)

        encoded = EncodedEvent(event.type, event.object, encode)
        for watcher in list(watchers):
            watcher.offer(encoded)

    def open(
        self,
        key: tuple[str, str],
        namespace: str,
        matches: Matcher,
        *,
        selective: bool = False,
        shown: set[tuple[str, str]] | None = None,
    ) -> Watcher:
        """Register a watcher; `shown` is what matched when it started (selective ones)."""
        watcher = Watcher(key, namespace, matches, selective, shown or set())
        self._watchers.setdefault(key, set()).add(watcher)
        return watcher

    def close(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.key)
        if watchers is not None:
            watchers.discard(watcher)

    def end_all(self) -> None:
        """Tell every open stream to finish (server shutdown)."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(None)

    @property
    def open_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def shutdown(self) -> None:
        self._unsubscribe()
