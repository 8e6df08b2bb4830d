"""Fault injection per route: latency, errors (500, 503, 429, 409) and timeouts.

Set with `PUT /sim/faults` (replacing what was set), read with `GET`, cleared
with `DELETE`. The body:

    {"seed": 7,
     "rules": [
       {"verb": "create", "group": "snapshot.storage.k8s.io", "resource": "volumesnapshots",
        "error": 500, "rate": 0.5, "count": 3},
       {"resource": "virtualmachineinstances", "subresource": "freeze", "latency": "200ms"},
       {"verb": "get", "resource": "virtualmachines", "name": "web-1", "error": "timeout",
        "hold": "5s"}]}

A rule matches a resource request on `verb` (RBAC verbs: get, list, watch,
create, update, patch, delete, deletecollection; a subresource PUT such as
freeze is `update`), `group` (`""` is the core group), `resource`,
`namespace`, `name` and `subresource` (`""` matches only requests without
one); an omitted field matches anything. A matching rule fires with
probability `rate` (default 1), at most `count` times (default: always).
When it fires it adds its `latency` (Go duration or seconds) and, if it has
one, its `error`:

- `500` InternalError, `503` ServiceUnavailable;
- `429` TooManyRequests with `details.retryAfterSeconds` (`retryAfter`,
  default 1s) for the Retry-After header;
- `409` Conflict ("the object has been modified"), as a stale write gets;
- `"timeout"`: the request is held for `hold` (default 60s, kube-apiserver's
  request timeout) and then answered 504 Timeout, so a client with a shorter
  timeout gives up first.

Latencies of every firing rule add up; the first firing rule with an error
decides the answer (later error rules are not consulted, so their counts are
not used up). Draws come from one `random.Random(seed)`: with the same seed and
the same requests, the same requests fail. A spec that does not parse is
refused with 400 and changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
from dataclasses import dataclass
from typing import Any

from simulator.durations import go_string, setting_seconds
from simulator.errors import ApiError, bad_request, conflict
from simulator.request_info import RequestInfo

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
ERRORS: tuple[int | str, ...] = (500, 503, 429, 409, "timeout")
_MATCH_FIELDS = ("verb", "group", "resource", "namespace", "name", "subresource")
_EFFECT_FIELDS = ("latency", "error", "rate", "count", "retryAfter", "hold", "message")
_DEFAULT_HOLD = 60.0


@dataclass
class FaultRule:
    verb: str | None = None
    group: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    latency: float = 0.0
    error: int | str | None = None
    rate: float = 1.0
    count: int | None = None
    retry_after: int = 1
    hold: float = _DEFAULT_HOLD
    message: str | None = None
    matched: int = 0
    fired: int = 0

    def matches(self, request: RequestInfo) -> bool:
        return all(
            wanted is None or wanted == actual
            for wanted, actual in (
                (self.verb, request.verb.lower()),
                (self.group, request.group),
                (self.resource, request.resource),
                (self.namespace, request.namespace),
                (self.name, request.name),
                (self.subresource, request.subresource),
            )
        )

    @property
    def spent(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            f: getattr(self, f) for f in _MATCH_FIELDS if getattr(self, f) is not None
        }
        if self.latency:
            shown["latency"] = go_string(self.latency)
        if self.error is not None:
            shown["error"] = self.error
        shown["rate"] = self.rate
        if self.count is not None:
            shown["count"] = self.count
            shown["remaining"] = max(self.count - self.fired, 0)
        if self.error == 429:
            shown["retryAfter"] = go_string(self.retry_after)
        if self.error == "timeout":
            shown["hold"] = go_string(self.hold)
        if self.message is not None:
            shown["message"] = self.message
        shown["matched"] = self.matched
        shown["fired"] = self.fired
        return shown

    def failure(self, request: RequestInfo) -> ApiError:
        """The error this rule answers with (a timeout's 504 after the hold)."""
        if self.error == 500:
            return ApiError(
                500, "InternalError", self.message or "Internal error occurred: injected fault"
            )
        if self.error == 503:
            return ApiError(
                503,
                "ServiceUnavailable",
                self.message or "the server is currently unable to handle the request",
            )
        if self.error == 429:
            return ApiError(
                429,
                "TooManyRequests",
                self.message or "Too many requests, please try again later.",
                {"retryAfterSeconds": self.retry_after},
            )
        if self.error == 409:
            error = conflict(request.group, request.resource, request.name)
            if self.message:
                error.message = self.message
            return error
        return ApiError(
            504,
            "Timeout",
            self.message
            or "Timeout: request did not complete within requested timeout - context deadline "
            "exceeded",
        )


def _string(rule: dict[str, Any], key: str, where: str) -> str | None:
    value = rule.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{where}.{key} must be a string, not {value!r}")
    return value


def _duration(rule: dict[str, Any], key: str, where: str) -> float | None:
    value = rule.get(key)
    if value is None:
        return None
    try:
        return setting_seconds(value)
    except ValueError as exc:
        raise bad_request(f"{where}.{key}: {exc}") from None


def parse_rule(rule: Any, where: str) -> FaultRule:
    """One rule of a fault spec; ApiError 400 naming the bad field."""
    if not isinstance(rule, dict):
        raise bad_request(f"{where} must be an object, not {rule!r}")
    unknown = sorted(set(rule) - set(_MATCH_FIELDS) - set(_EFFECT_FIELDS))
    if unknown:
        allowed = ", ".join((*_MATCH_FIELDS, *_EFFECT_FIELDS))
        raise bad_request(f"{where}: unknown field {unknown[0]!r} (allowed: {allowed})")
    parsed = FaultRule(
        verb=_string(rule, "verb", where),
        group=_string(rule, "group", where),
        resource=_string(rule, "resource", where),
        namespace=_string(rule, "namespace", where),
        name=_string(rule, "name", where),
        subresource=_string(rule, "subresource", where),
    )
    if parsed.verb is not None:
        parsed.verb = parsed.verb.lower()
        if parsed.verb not in VERBS:
            raise bad_request(f"{where}.verb {rule['verb']!r} is not one of {', '.join(VERBS)}")
    parsed.latency = _duration(rule, "latency", where) or 0.0
    error = rule.get("error")
    if error is not None:
        if isinstance(error, bool) or error not in ERRORS:
            choices = ", ".join(str(e) for e in ERRORS)
            raise bad_request(f"{where}.error {error!r} is not one of {choices}")
        parsed.error = error
    if parsed.error is None and not parsed.latency:
        raise bad_request(f"{where}: a rule needs a latency, an error or both")
    rate = rule.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise bad_request(f"{where}.rate must be a number from 0 to 1, not {rate!r}")
    parsed.rate = float(rate)
    count = rule.get("count")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise bad_request(f"{where}.count must be a positive integer, not {count!r}")
        parsed.count = count
    retry_after = _duration(rule, "retryAfter", where)
    if retry_after is not None:
        if parsed.error != 429:
            raise bad_request(f"{where}.retryAfter applies to error 429 only")
        parsed.retry_after = max(1, math.ceil(retry_after))
    hold = _duration(rule, "hold", where)
    if hold is not None:
        if parsed.error != "timeout":
            raise bad_request(f'{where}.hold applies to error "timeout" only')
        parsed.hold = hold
    parsed.message = _string(rule, "message", where)
    return parsed


class FaultInjector:
    """The active fault rules and the seeded random source they draw from."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._seed = secrets.randbits(32)
        self._random = random.Random(self._seed)

    def configure(self, spec: Any) -> dict[str, Any]:
        """Replace the rules with those of `spec`; 400 and no change when it does not parse."""
        if isinstance(spec, list):
            spec = {"rules": spec}
        if not isinstance(spec, dict):
            raise bad_request('a fault spec is an object: {"seed": 1, "rules": [...]}')
        unknown = sorted(set(spec) - {"seed", "rules"})
        if unknown:
            raise bad_request(
                f"unknown field {unknown[0]!r} in the fault spec (allowed: seed, rules)"
            )
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise bad_request(f"seed must be an integer, not {seed!r}")
        rules = spec.get("rules", [])
        if not isinstance(rules, list):
            raise bad_request("rules must be a list of rules")
        parsed = [parse_rule(rule, f"rules[{index}]") for index, rule in enumerate(rules)]
        self._rules = parsed
        self._seed = seed if seed is not None else secrets.randbits(32)
        self._random = random.Random(self._seed)
        return self.active()

    def active(self) -> dict[str, Any]:
        return {"seed": self._seed, "rules": [rule.describe() for rule in self._rules]}

    def clear(self) -> None:
        self._rules = []

    def decide(self, request: RequestInfo) -> tuple[float, FaultRule | None]:
        """Which rules fire for `request`: the total latency and the rule whose error answers."""
        latency = 0.0
        failing: FaultRule | None = None
        for rule in self._rules:
            if rule.spent or not rule.matches(request):
                continue
            if failing is not None and rule.error is not None:
                continue
            rule.matched += 1
            if rule.rate < 1.0 and self._random.random() >= rule.rate:
                continue
            rule.fired += 1
            latency += rule.latency
            if rule.error is not None:
                failing = rule
        return latency, failing

    async def before(self, request: RequestInfo) -> ApiError | None:
        latency, failing = self.decide(request)
        if latency > 0:
            await asyncio.sleep(latency)
        if failing is None:
            return None
        if failing.error == "timeout":
            await asyncio.sleep(failing.hold)
        return failing.failure(request)
