"""The tenant boundary a worker keeps, from its environment (docs/security.md):

- `VMSNAP_NAMESPACES` (default: all, with a warning): the Kubernetes namespaces it
  serves; every workflow refuses the others before any step (`NamespaceNotServed`);
- `VMSNAP_CLONE_PATCH_ALLOW` (default: none): JSON pointer patterns a clone's patches
  may touch beyond the default allowlist (`rules.patch_policy`);
- `VMSNAP_MAX_FREEZE_BUDGET` (default: 1m, at most 5m): the longest a snapshot may keep
  a guest frozen (`rules.freeze_budget`); a snapshot asking for more is refused
  (`FreezeBudgetTooLong`), a VM annotation asking for more is lowered to it;
- `VMSNAP_PRODUCTION` (default: off): `1`/`true` refuses to start without a payload
  codec key (histories would hold inputs and failure messages in clear).

A bad value stops the worker at start-up with one line naming the variable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from rules.freeze_budget import DEFAULT_MAX_FREEZE_BUDGET, max_from_environment
from rules.namespace_scope import ENV as NAMESPACES_ENV
from rules.namespace_scope import NamespaceScope
from rules.patch_policy import ENV as PATCH_ALLOW_ENV
from rules.patch_policy import PatchPolicy
from starter.codec import ENV_KEY, ENV_KEY_FILE

PRODUCTION_ENV = "VMSNAP_PRODUCTION"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}

log = logging.getLogger("vmsnap.worker")


class BoundaryError(ValueError):
    """A boundary setting is unusable, or production mode lacks the codec."""


@dataclass(frozen=True)
class WorkerBoundary:
    scope: NamespaceScope
    policy: PatchPolicy
    production: bool
    encrypted: bool
    max_freeze_budget: float = DEFAULT_MAX_FREEZE_BUDGET

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> WorkerBoundary:
        try:
            scope = NamespaceScope.parse(env.get(NAMESPACES_ENV))
            policy = PatchPolicy.widened(env.get(PATCH_ALLOW_ENV))
            max_freeze_budget = max_from_environment(env)
        except ValueError as error:
            raise BoundaryError(str(error)) from None
        switch = (env.get(PRODUCTION_ENV) or "").strip().lower()
        if switch not in _TRUE | _FALSE:
            raise BoundaryError(f"{PRODUCTION_ENV} must be 1 or 0 (true or false), not "
                                f"{switch!r}")
        encrypted = bool(env.get(ENV_KEY) or env.get(ENV_KEY_FILE))
        boundary = cls(scope, policy, switch in _TRUE, encrypted, max_freeze_budget)
        if boundary.production and not encrypted:
            raise BoundaryError(
                f"{PRODUCTION_ENV} is on but no payload codec key is configured ({ENV_KEY} "
                f"or {ENV_KEY_FILE}): histories would hold VM specs and failure messages in "
                "clear; configure the key, or unset VMSNAP_PRODUCTION for a demo")
        return boundary

    def announce(self) -> None:
        """Once at start-up: what this worker serves, and what is not protected."""
        if self.scope.everything:
            log.warning("serving every Kubernetes namespace: whoever can start workflows on "
                        "this task queue acts with the worker's rights in all of them; set "
                        "%s to the namespaces this worker is for", NAMESPACES_ENV)
        else:
            log.info("serving the Kubernetes namespaces %s", self.scope.describe())
        if self.policy.extra:
            log.info("clone patch allowlist widened by %s: %s", PATCH_ALLOW_ENV,
                     ", ".join(self.policy.extra))
        if not self.encrypted:
            log.warning("payload encryption is off: workflow inputs, results and failure "
                        "messages are stored in Temporal's history in clear (set %s for "
                        "production, and %s=1 to require it)", ENV_KEY, PRODUCTION_ENV)
