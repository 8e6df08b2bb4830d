"""The in-memory request log behind `GET /sim/requests`: for counting API calls and RBAC.

Bounded (oldest entries drop first); each entry keeps a running index so a
test can ask for `?since=N` and see only what happened after its mark.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from simulator.request_info import RequestInfo

DEFAULT_LIMIT = 100_000


class RequestLog:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._entries: deque[tuple[int, RequestInfo]] = deque(maxlen=limit)
        self._next = 0

    @property
    def next_index(self) -> int:
        """The index the next request will get (a mark for `since`)."""
        return self._next

    def append(self, info: RequestInfo) -> None:
        self._entries.append((self._next, info))
        self._next += 1

    def since(self, index: int = 0) -> list[dict[str, Any]]:
        """Entries with an index >= `index`, oldest first."""
        if self._entries and index > self._entries[0][0]:
            offset = index - self._entries[0][0]
            selected = list(self._entries)[offset:]
        else:
            selected = list(self._entries)
        return [{"index": i, **info.as_dict()} for i, info in selected]

    def clear(self) -> None:
        self._entries.clear()
