"""Which of a CRD's served versions the simulator serves: the one clients pick.

The simulator serves one version of each kind. kube-apiserver orders a CRD's
versions by Kubernetes version priority (GA before beta before alpha, then the
higher number first) and names the first its discovery `preferredVersion`, the
one kubectl and generated clients use. With `conversion: None` (every CRD the
simulator vendors) the versions differ only in `apiVersion`, so serving the
preferred one shows a client what a real cluster shows it. The storage version
can be another (external-snapshotter stores `groupsnapshot.storage.k8s.io`
objects as `v1beta2` and serves `v1`); the CRD's `status.storedVersions` still
names it.
"""

from __future__ import annotations

import re
from typing import Any

_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_LEVEL = {None: 2, "beta": 1, "alpha": 0}


def version_priority(name: str) -> tuple[int, int, int, int, str]:
    """Sort key, highest priority first when sorted ascending (as
    `CompareKubeAwareVersionStrings` orders them): `v1` < `v1beta2` < `v1beta1` <
    `v1alpha1` < names that are not Kubernetes versions, those alphabetically."""
    match = _KUBE_VERSION.match(name)
    if match is None:
        return (1, 0, 0, 0, name)
    major, level, minor = match.group(1), match.group(2), match.group(3)
    return (0, -_LEVEL[level], -int(major), -int(minor or 0), name)


def preferred_version(versions: list[dict[str, Any]]) -> dict[str, Any]:
    """The served version a client uses, of a CRD's (non-empty) served versions."""
    return min(versions, key=lambda version: version_priority(str(version.get("name", ""))))
