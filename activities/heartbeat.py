"""A heartbeat sent from a thread of its own, for an activity whose calls block.

Why: the cut's freeze and create calls block its thread, and the server learns that a
worker died only when its heartbeats stop. With heartbeats from the calls' own thread,
a takeover has to wait out a heartbeat timeout long enough to cover the slowest call;
from a thread of their own, it can be short (about a second) while calls take what
they take. The details sent are the latest the activity set (`update`).

Nothing is sent during a quiet start: a fast activity is over before it, and sends no
heartbeat at all (each is a server write and a hop through the worker's event loop). The
quiet start must stay below the activity's heartbeat timeout: the server times out an
attempt that has not heartbeated by then. The SDK sends at most one heartbeat per
min(0.8 x heartbeat timeout, the worker's `max_heartbeat_throttle_interval`), the
latest details each time.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

from temporalio import activity

log = logging.getLogger("vmsnap.heartbeat")


class BackgroundHeartbeat:
    """Heartbeat every `every` seconds, from `quiet_start` seconds after `began`
    (time.monotonic) until `stop`; always with the latest details."""

    def __init__(self, every: float, quiet_start: float, began: float) -> None:
        self.every = every
        self.quiet_start = quiet_start
        self.began = began
        self._details: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundHeartbeat:
        """Start, from the activity's thread: the heartbeats are sent in a copy of its
        context, where activity.heartbeat finds its activity."""
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._beat,),
                                        name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def update(self, **details: Any) -> None:
        """Details for the next heartbeat; a None value removes its key."""
        with self._lock:
            for key, value in details.items():
                if value is None:
                    self._details.pop(key, None)
                else:
                    self._details[key] = value

    def details(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._details)

    def send_now(self) -> None:
        """One heartbeat at once, quiet start or not (an attempt's last word on failure)."""
        self._send()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=self.every + 1.0)

    def _beat(self) -> None:
        quiet = self.began + self.quiet_start - time.monotonic()
        if quiet > 0 and self._stopped.wait(quiet):
            return
        while not self._stopped.is_set():
            self._send()
            self._stopped.wait(self.every)

    def _send(self) -> None:
        try:
            activity.heartbeat(self.details())
        except Exception as err:  # the activity ended meanwhile: nothing left to keep alive
            log.debug("heartbeat not sent: %s", err)
