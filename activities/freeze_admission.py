"""How many guests one worker holds frozen at once (VMSNAP_MAX_FREEZES_IN_FLIGHT).

Why: every cut in a worker shares one interpreter (the GIL, the event loop, the thread
pools), so the more guests it holds frozen at once, the longer each waits for its thaw:
50 VMs of 8 disks cut at once kept each guest frozen 4 times its slowest cut. A snapshot
that waits *before* its freeze costs its guest nothing, so the cut (activities/cut.py)
takes a slot after its prepare step and before the freeze call, and gives it back after
the thaw, on every path (success, error, cancellation). Slots go first come, first served.

- The wait is not frozen: the cut's background heartbeat goes on (with `step: waiting
  to freeze` in its details, what the Temporal UI shows of the pending activity), a
  cancellation ends it, and so does the failure deadline (FreezePlan.thaw_by), with
  SnapshotDeadlineExceeded: nothing was frozen, there is nothing to thaw.
- A retry that takes over a guest an earlier attempt left frozen does not wait: that
  guest is frozen already and must go first. Neither does a cut with no freeze
  (crash-consistent): it takes no slot.
- 0 means no bound: every cut freezes as soon as it is ready.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.heartbeat import BackgroundHeartbeat
from contracts.snapshot import DEADLINE_EXCEEDED

ENV_MAX_FREEZES_IN_FLIGHT = "VMSNAP_MAX_FREEZES_IN_FLIGHT"
# Measured with bench.under_load (50 VMs x 8 disks, 200 ms cuts, 2 cores): 1 keeps the p95
# of frozen ÷ the storage's own cut near 1.15 but makes the wave 1.5 x as long; 2 keeps it
# near 1.25 at the wall time of no bound; 4 and more let it grow past 2 (see
# docs/benchmarks.md).
DEFAULT_MAX_FREEZES_IN_FLIGHT = 2
# A waiting cut looks at its cancellation and its deadline at least this often; a slot
# given back wakes the next cut at once.
CHECK_EVERY_SECONDS = 0.1
WAITING_STEP = "waiting to freeze"


def _now() -> datetime:
    return datetime.now(UTC)


class FreezeSlots:
    """At most `limit` guests frozen at once by this worker (0: no limit); shared by every
    cut of the worker, from any thread."""

    def __init__(self, limit: int = 0, now: Callable[[], datetime] = _now) -> None:
        if limit < 0:
            raise ValueError(f"the number of freezes in flight must be 0 or more, not {limit}")
        self.limit = limit
        self._now = now
        self._lock = threading.Lock()
        self._held = 0
        self._queue: deque[FreezeTurn] = deque()  # waiting cuts, first come first

    @property
    def held(self) -> int:
        """Slots taken now (guests frozen or about to be)."""
        with self._lock:
            return self._held

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def turn(self) -> FreezeTurn:
        """One cut's place with these slots: taken by `FreezeTurn.wait`, given back by
        `FreezeTurn.release`."""
        return FreezeTurn(self)

    def _take(self, turn: FreezeTurn, thaw_by: datetime | None,
              heartbeat: BackgroundHeartbeat | None) -> None:
        with self._lock:
            if turn.granted:
                return
            if self.limit == 0 or (not self._queue and self._held < self.limit):
                self._held += 1
                turn.granted = True
                return
            self._queue.append(turn)
        if heartbeat is not None:
            heartbeat.update(step=WAITING_STEP)
        try:
            self._wait(turn, thaw_by)
        except BaseException:
            self._give_back(turn)  # out of the queue, or the slot granted meanwhile passed on
            raise
        finally:
            if heartbeat is not None:
                heartbeat.update(step=None)

    def _wait(self, turn: FreezeTurn, thaw_by: datetime | None) -> None:
        while True:
            # Short waits, not one long one: the activity's cancellation is raised into
            # this thread, and only between two Python instructions.
            if turn.event.wait(CHECK_EVERY_SECONDS):
                return
            if activity.in_activity() and activity.is_cancelled():
                raise CancelledError("cancelled while waiting to freeze")
            if thaw_by is not None and self._now() >= thaw_by:
                raise ApplicationError(
                    f"the failure deadline passed while the snapshot waited to freeze "
                    f"({self.limit} guests frozen at once by this worker at most, "
                    f"{ENV_MAX_FREEZES_IN_FLIGHT}): the guest was not frozen, nothing to thaw",
                    type=DEADLINE_EXCEEDED, non_retryable=True)

    def _give_back(self, turn: FreezeTurn) -> None:
        with self._lock:
            if turn.granted:
                turn.granted = False
                self._held -= 1
            elif turn in self._queue:
                self._queue.remove(turn)
            # Hand free slots to the first waiting cuts.
            while self._queue and (self.limit == 0 or self._held < self.limit):
                first = self._queue.popleft()
                self._held += 1
                first.granted = True
                first.event.set()


class FreezeTurn:
    """One cut's slot: `wait` for it before the freeze call, `release` it after the thaw
    (any number of times: only a slot held is given back). Its state changes under the
    slots' lock only, so a cancellation raised at any instruction leaks no slot."""

    def __init__(self, slots: FreezeSlots) -> None:
        self._slots = slots
        self.granted = False
        self.event = threading.Event()

    def wait(self, thaw_by: datetime | None,
             heartbeat: BackgroundHeartbeat | None = None) -> None:
        """Block until a slot is free; raises CancelledError when the activity is
        cancelled, and a non-retryable SnapshotDeadlineExceeded once `thaw_by` passes."""
        self._slots._take(self, thaw_by, heartbeat)

    def release(self) -> None:
        self._slots._give_back(self)
