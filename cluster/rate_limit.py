"""The client-side rate limit in front of the API server: who waits for a token, and in what order.

It works like client-go's QPS/burst (VMSNAP_KUBE_QPS, VMSNAP_KUBE_BURST), with two twists
that snapshots need. Waiting requests go earliest operation first, not in arrival order
(`RequestPriority`, which `request_priority` sets for a context), so a throttled fleet
finishes one operation after another instead of all of them missing their deadlines
together. Requests made while a guest is frozen (`urgent_requests`) never wait, so the
freeze window does not queue behind unfrozen work. `ThrottledApiClient` puts the limiter in
front of every request of an `ApiClient`; `cluster.client.load_api_client` builds one from
the environment.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from cluster.errors import ConfigurationError, Transient

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
