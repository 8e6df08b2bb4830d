"""Who is asking, and whether a form was sent by the console's own page.

Identity, in this order: the trusted proxy's user header (only when the console was
told its name: a header anyone can set is trusted from nothing else), then the token
(`Authorization: Bearer`, or a session opened by the login form). With neither
configured the console serves loopback only (`ConsoleSettings` refuses otherwise) and
its user is `local`.

CSRF: every visitor gets a session (an unguessable id in an HttpOnly, SameSite=Strict
cookie) holding a random token; every form carries that token in a hidden field (htmx
requests in a header), and every POST whose token is not the session's is refused
before anything is read or started. Sessions live in memory: a restart signs users out.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from starlette.requests import Request

COOKIE = "vmsnap_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    csrf: str
    user: str | None = None
    """Set by a successful login (token); None until then."""
    notice: str | None = None
    """One line for the next page (what an action did)."""
    expires: float = field(default_factory=lambda: time.monotonic() + SESSION_SECONDS)


class Sessions:
    """The sessions of this process; the oldest go first when there are too many."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def get(self, session_id: str | None) -> Session | None:
        session = self._by_id.get(session_id or "")
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def new(self) -> Session:
        now = time.monotonic()
        for stale in [k for k, s in self._by_id.items() if s.expires < now]:
            del self._by_id[stale]
        while len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        self._by_id[session.id] = session
        return session

    def renew(self, session: Session, user: str) -> Session:
        """A new id for a session that just logged in (no fixation of a known id)."""
        self._by_id.pop(session.id, None)
        fresh = self.new()
        fresh.user = user
        return fresh

    def drop(self, session: Session) -> None:
        self._by_id.pop(session.id, None)


def same_secret(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and secrets.compare_digest(
        str(given).encode(), str(expected).encode())


def bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def identify(request: Request, session: Session, token: str | None,
             user_header: str | None) -> str | None:
    """The user's name, or None when the request is not authenticated."""
    if user_header is not None:
        user = request.headers.get(user_header, "").strip()
        if user:
            return user
    if token is not None:
        if same_secret(bearer(request), token):
            return "token"
        return session.user
    if user_header is not None:
        return None
    return "local"
