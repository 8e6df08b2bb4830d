"""Discovery documents: `/version`, `/api`, `/apis`, and each group version's resources.

Plain `APIVersions` / `APIGroupList` / `APIResourceList` JSON, which
kubectl accepts in place of aggregated discovery (see KUBECTL-NOTES.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from simulator.registry import (
    KUBEVIRT_SUBRESOURCES,
    STATUS_VERBS,
    SUBRESOURCES_GROUP,
    Kind,
    Registry,
)

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T17:58:35Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _storage_version_hash(kind: Kind) -> str:
    digest = hashlib.sha256(f"{kind.group}/{kind.version}/{kind.kind}".encode()).digest()
    import base64

    return base64.b64encode(digest[:8]).decode()


def _resource_entries(kind: Kind) -> list[dict[str, Any]]:
    resource = kind.resource
    entry: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(kind.verbs),
        "storageVersionHash": _storage_version_hash(kind),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    entries = [entry]
    for sub in resource.subresources:
        entries.append(
            {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(STATUS_VERBS),
            }
        )
    return entries


class Discovery:
    """Builds the discovery documents from the registry (cheap; rebuilt when kinds change)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def version(self) -> dict[str, Any]:
        return dict(KUBERNETES_VERSION)

    def core_versions(self, server_address: str) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }

    def _group(self, name: str, versions: list[str]) -> dict[str, Any]:
        listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": listed, "preferredVersion": listed[0]}

    def group_list(self) -> dict[str, Any]:
        groups = [
            self._group(name, versions)
            for name, versions in sorted(self.registry.group_versions().items())
            if name
        ]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def group(self, name: str) -> dict[str, Any] | None:
        versions = self.registry.group_versions().get(name)
        if not name or not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(name, versions)}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        if version not in self.registry.group_versions().get(group, []):
            return None
        group_version = f"{group}/{version}" if group else version
        resources: list[dict[str, Any]] = []
        if group == SUBRESOURCES_GROUP:
            for plural, subresources in KUBEVIRT_SUBRESOURCES.items():
                for sub in subresources:
                    resources.append(
                        {
                            "name": f"{plural}/{sub}",
                            "singularName": "",
                            "namespaced": True,
                            "kind": "",
                            "verbs": ["update"],
                        }
                    )
        else:
            for kind in sorted(self.registry.kinds(), key=lambda k: k.plural):
                if kind.group == group and kind.version == version:
                    resources.extend(_resource_entries(kind))
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }
