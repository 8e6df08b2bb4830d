"""How the console is started: where it listens, who may use it, whether it may act.

Safe by default: it listens on loopback, shows and changes nothing without being asked
(`allow_actions` off: a read-only console), and refuses to listen beyond loopback with
no way to authenticate its users (a token, or a trusted proxy's user header).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from rules.namespace_scope import NamespaceScope

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEFAULT_FRESH_FOR = 24 * 3600.0
MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "VMSNAP_CONSOLE_TOKEN"
_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class ConsoleConfigError(ValueError):
    """The console's settings are unusable or unsafe; one line naming the setting."""


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allow_actions: bool = False
    token: str | None = field(default=None, repr=False)
    user_header: str | None = None
    """A header an authenticating proxy sets to the user's name; trusted only when set."""
    scope: NamespaceScope = field(default_factory=NamespaceScope)
    temporal_ui: str | None = None
    """The Temporal UI's base URL, for links to each run; None: no links."""
    fresh_for: float = DEFAULT_FRESH_FOR
    """How old a VM's last snapshot may be when no schedule covers it."""

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConsoleConfigError(
                f"the console token must have at least {MIN_TOKEN_LENGTH} characters "
                f"(--token or {TOKEN_ENV}); e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe())'`")
        if self.user_header is not None and not _HEADER.fullmatch(self.user_header):
            raise ConsoleConfigError(f"--trusted-user-header {self.user_header!r} is not a "
                                     "header name (e.g. X-Forwarded-User)")
        if not 0 < self.port < 65536:
            raise ConsoleConfigError(f"--port {self.port} is not a TCP port")
        if self.temporal_ui is not None and not re.match(r"^https?://", self.temporal_ui):
            raise ConsoleConfigError(f"--temporal-ui {self.temporal_ui!r} is not an http(s) "
                                     "URL")
        if self.fresh_for <= 0:
            raise ConsoleConfigError("--fresh-for must be a positive duration")
        if not self.authenticates and not self.loopback:
            raise ConsoleConfigError(
                f"the console would listen on {self.host} with no authentication: give a "
                f"token (--token or {TOKEN_ENV}) or a trusted proxy's user header "
                "(--trusted-user-header), or listen on loopback")

    @property
    def authenticates(self) -> bool:
        return self.token is not None or self.user_header is not None

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
