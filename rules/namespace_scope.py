"""Which Kubernetes namespaces a worker serves: every workflow refuses the others first.

Whoever can start a workflow on the worker's task queue borrows the worker's rights, so
an operator names the namespaces those rights are for (`VMSNAP_NAMESPACES`, a comma- or
space-separated list; unset, empty or `*`: all, which the worker warns about at
start-up). The check is a pure rule: the worker's admission step applies it, and the
namespaced RBAC form (deploy/components/namespaced) makes the cluster refuse the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rules.validation import check_dns_label

ALL = "*"
ENV = "VMSNAP_NAMESPACES"


@dataclass(frozen=True)
class NamespaceScope:
    """The namespaces served; `None`: all of them."""

    namespaces: frozenset[str] | None = None

    @classmethod
    def parse(cls, text: str | None) -> NamespaceScope:
        """From the setting's text; a name that is not a DNS label is a ValueError."""
        names = [n for n in re.split(r"[,\s]+", (text or "").strip()) if n]
        if not names or names == [ALL]:
            return cls(None)
        if ALL in names:
            raise ValueError(f"{ENV}: '*' (all namespaces) cannot be combined with names")
        for name in names:
            check_dns_label(name, f"{ENV}: namespace")
        return cls(frozenset(names))

    @property
    def everything(self) -> bool:
        return self.namespaces is None

    def serves(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def refused(self, namespaces: Iterable[str]) -> list[str]:
        """The namespaces of `namespaces` this scope does not serve, in order."""
        return [ns for ns in dict.fromkeys(namespaces) if not self.serves(ns)]

    def listed(self) -> list[str]:
        """The served namespaces, sorted (empty when all are served)."""
        return sorted(self.namespaces or ())

    def describe(self) -> str:
        return "all namespaces" if self.namespaces is None else ", ".join(self.listed())
