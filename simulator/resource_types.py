"""What the simulator knows of a kind: its REST names, scope and subresources."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Validates a whole object; returns (field path, message) pairs, empty when valid. The
# second argument, when not None, is an object the same validator passed (the stored
# version): top-level properties the new object leaves identical need no new look.
Validator = Callable[[dict[str, Any], dict[str, Any] | None], list[tuple[str, str]]]


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # "status" when the kind has a status subresource (status ignored on main writes).
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Printer columns as in a CRD's additionalPrinterColumns (name, type, jsonPath).
    printer_columns: tuple[dict[str, str], ...] = ()
    # Names are path segments (RBAC's roles and bindings: `system:discovery`), not DNS
    # subdomains: anything but `.`, `..`, and names holding `/` or `%`.
    path_segment_names: bool = False
    validator: Validator | None = field(default=None, compare=False, hash=False)

    # Worked out once per kind (the store asks on every read and write); `cached_property`
    # writes the instance's __dict__, which a frozen dataclass allows.
    @functools.cached_property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @functools.cached_property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @functools.cached_property
    def has_status(self) -> bool:
        return "status" in self.subresources
