"""Waiting for the cluster: a list-then-watch loop, and bounded-backoff polling.

The snapshot's freeze window ends when the last VolumeSnapshot is cut, so that
wait is a watch: the event arrives within milliseconds of the change. The
watch starts from the resourceVersion of a list (nothing falls between the
two), resumes from the last event seen when a window ends, lists again on 410
Gone or a dropped connection, and reports progress at least every few seconds
so that a Temporal activity can heartbeat (and be cancelled) while it waits.
Slower waits (a VM stopping) poll with bounded backoff instead.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import urllib3.exceptions
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from cluster.errors import ClusterError, NotFound, from_api_exception, translated_errors

T = TypeVar("T")
Objects = dict[str, dict[str, Any]]


class DictWatch(watch.Watch):
    """kubernetes' Watch for objects read as plain dicts (each event's `raw_object`): its
    JSON is decoded once. Given a return type, the client decodes each event, encodes the
    object again and decodes it a second time (into the same dict, for custom objects):
    about a third of a cut's watch CPU when profiled under a wave of snapshots."""

    def get_return_type(self, func: Callable[..., Any]) -> None:
        return None


class ParsedStates(Generic[T]):
    """Each watched object parsed into its state once per resourceVersion.

    A watch asks for the state of every object it follows on every event (what is still
    pending, the progress it reports): parsing them all each time made a cut's watch
    quadratic in its disks, a pydantic model per disk per event.
    """

    def __init__(self, parse: Callable[[Mapping[str, Any]], T]) -> None:
        self._parse = parse
        self._seen: dict[str, tuple[str, T]] = {}

    def __call__(self, obj: Mapping[str, Any]) -> T:
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name") or "")
        version = str(metadata.get("resourceVersion") or "")
        found = self._seen.get(name)
        if found is None or not version or found[0] != version:
            found = (version, self._parse(obj))
            self._seen[name] = found
        return found[1]


class WaitTimeout(TimeoutError):
    """The condition did not hold in time; `last` is what was seen last."""

    def __init__(self, message: str, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


def backoff_delays(
    initial: float = 0.05, maximum: float = 2.0, factor: float = 2.0
) -> Iterator[float]:
    """initial, initial*factor, ... capped at maximum, forever."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * factor, maximum)


def poll_until(
    check: Callable[[], T | None],
    timeout_seconds: float,
    *,
    what: str,
    initial_delay: float = 0.05,
    max_delay: float = 2.0,
) -> T:
    """Call `check` until it returns something other than None, sleeping with bounded backoff.

    Transient cluster errors are retried until the deadline; any other error
    ends the wait. WaitTimeout (a TimeoutError) when time runs out.
    """
    _require_positive(timeout_seconds)
    deadline = time.monotonic() + timeout_seconds
    delays = backoff_delays(initial_delay, max_delay)
    last_error: ClusterError | None = None
    while True:
        try:
            result = check()
            last_error = None
        except ClusterError as exc:
            if not exc.retryable:
                raise
            result, last_error = None, exc
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(
                f"timed out after {timeout_seconds:g}s waiting for {what}{detail}"
            ) from last_error
        time.sleep(min(next(delays), remaining))


class ListWatch:
    """Follow named objects of one collection until none of them is pending.

    `list_call` lists the collection as the generated list methods do
    (`KubeApis.list_call(path)`, or a generated method with its leading arguments
    bound); `pending(objects)` lists, for each object that is not there
    yet, a short description ("snap-a (not cut)"); an empty list ends the wait.
    `list_json(query)`, when given, makes the LISTs instead of `list_call` (which
    then serves the watches only): the adapter's `request_json` path, cheaper per
    request than the generated method (see `cluster.transport`).
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        names: Sequence[str],
        pending: Callable[[Objects], list[str]],
        *,
        kind: str,
        what: str,
        connect_timeout_seconds: float = 5.0,
        request_timeout_seconds: float = 30.0,
        progress_interval_seconds: float = 5.0,
        label_selector: str = "",
        list_json: Callable[[Mapping[str, str]], Any] | None = None,
    ) -> None:
        if not names:
            raise ValueError(f"no {kind} names to wait for")
        _require_positive(progress_interval_seconds)
        self._list_call = list_call
        self._names = list(dict.fromkeys(names))
        self._pending = pending
        self._kind = kind
        self._what = what
        self._connect_timeout = connect_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self._progress_interval = progress_interval_seconds
        self._selector: dict[str, Any] = (
            {"label_selector": label_selector} if label_selector else {}
        )
        self._version = ""
        self._list_json = list_json

    def run(
        self, timeout_seconds: float, on_change: Callable[[Objects], None] | None = None
    ) -> Objects:
        """The objects by name once nothing is pending; WaitTimeout when time runs out,
        NotFound when a named object does not exist or is deleted meanwhile."""
        _require_positive(timeout_seconds)
        deadline = time.monotonic() + timeout_seconds
        objects = self._list_with_retries(deadline, timeout_seconds)
        last_report = time.monotonic()
        if on_change is not None:
            on_change(objects)
        if not self._pending(objects):
            return objects
        delays = backoff_delays(0.05, 1.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(timeout_seconds, objects)
            window = min(remaining, self._progress_interval)
            relist = False
            try:
                if self._watch_window(objects, window, on_change):
                    return objects
                delays = backoff_delays(0.05, 1.0)
            except ApiException as exc:
                mapped = from_api_exception(exc)
                if exc.status != 410 and not mapped.retryable:
                    raise mapped from exc
                relist = True
            except urllib3.exceptions.ReadTimeoutError:
                pass  # a quiet window: resume from the last version seen
            except (urllib3.exceptions.HTTPError, OSError):
                relist = True  # the watch was dropped
            if on_change is not None and time.monotonic() - last_report >= self._progress_interval:
                on_change(objects)
                last_report = time.monotonic()
            if relist:
                time.sleep(min(next(delays), max(deadline - time.monotonic(), 0)))
                objects = self._list_with_retries(deadline, timeout_seconds)
                if on_change is not None:
                    on_change(objects)
                    last_report = time.monotonic()
                if not self._pending(objects):
                    return objects

    def _watch_window(
        self, objects: Objects, window: float, on_change: Callable[[Objects], None] | None
    ) -> bool:
        """Watch for up to `window` seconds, updating `objects`; True once nothing is pending.

        Every event moves `self._version` on, so a quiet window that ends in a
        read timeout resumes exactly where it stopped.
        """
        window_end = time.monotonic() + window
        watcher = DictWatch()
        stream = watcher.stream(
            self._list_call,
            resource_version=self._version,
            timeout_seconds=max(1, math.ceil(window)),
            allow_watch_bookmarks=True,
            _request_timeout=(self._connect_timeout, max(window, 0.05)),
            **self._selector,
        )
        try:
            for event in stream:
                kind = event.get("type")
                obj = event.get("raw_object") or {}
                metadata = obj.get("metadata") or {}
                self._version = str(metadata.get("resourceVersion") or self._version)
                name = metadata.get("name")
                if kind == "BOOKMARK" or name not in self._names:
                    if time.monotonic() >= window_end:
                        break
                    continue
                if kind == "DELETED":
                    raise NotFound(
                        f"{self._kind} {name} was deleted while waiting for {self._what}",
                        status=404, reason="NotFound",
                    )
                objects[name] = obj
                if on_change is not None:
                    on_change(objects)
                if not self._pending(objects):
                    return True
                if time.monotonic() >= window_end:
                    break  # a busy namespace must not hold the loop past its window
        finally:
            watcher.stop()
            stream.close()
        return False

    def _list_with_retries(self, deadline: float, timeout_seconds: float) -> Objects:
        delays = backoff_delays(0.05, 1.0)
        while True:
            try:
                return self._list()
            except ClusterError as exc:
                if not exc.retryable:
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(
                        f"timed out after {timeout_seconds:g}s waiting for {self._what}: "
                        f"cannot list {self._kind}s ({exc})"
                    ) from exc
                time.sleep(min(next(delays), remaining))

    def _list(self) -> Objects:
        """The named objects, and `self._version` set to the list's resourceVersion."""
        with translated_errors(f"list {self._kind}s"):
            if self._list_json is not None:
                selector = self._selector.get("label_selector")
                answer: Mapping[str, Any] = self._list_json(
                    {"labelSelector": selector} if selector else {}) or {}
            else:
                response = self._list_call(
                    _preload_content=False,
                    _request_timeout=(self._connect_timeout, self._request_timeout),
                    **self._selector,
                )
                try:
                    answer = json.loads(response.data or b"{}")
                finally:
                    response.release_conn()
        objects: Objects = {}
        for item in answer.get("items") or []:
            name = (item.get("metadata") or {}).get("name")
            if name in self._names:
                objects[name] = item
        missing = [name for name in self._names if name not in objects]
        if missing:
            raise NotFound(
                f"{self._kind} {', '.join(missing)} not found (waiting for {self._what})",
                status=404, reason="NotFound",
            )
        self._version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        return objects

    def _timeout(self, timeout_seconds: float, objects: Objects) -> WaitTimeout:
        still = self._pending(objects)
        return WaitTimeout(
            f"timed out after {timeout_seconds:g}s waiting for {self._what}; "
            f"still waiting on: {', '.join(still)}",
            last=objects,
        )


def _require_positive(seconds: float) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"a timeout is a number of seconds, not {seconds!r}")
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"a timeout must be > 0 seconds, not {seconds!r}")
