"""Where the real API schemas come from, and reading Kubernetes YAML manifests.

The simulator validates against the real KubeVirt OpenAPI document and the
real CSI snapshot and CDI DataVolume CRDs, vendored in `simulator/upstream/` (provenance and
licence in `simulator/upstream/PROVENANCE.md`), and serves the project's own
CRDs from `deploy/crds/`. A missing or unreadable schema file is a start-up
error naming the file: validating against nothing would make every test
meaningless.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_ENV = "VMSNAP_REFERENCE_DIR"
VENDORED_REFERENCE = Path(__file__).resolve().parent / "upstream"
KUBEVIRT_SWAGGER = Path("kubevirt") / "openapi-swagger.json"
CSI_CRDS = Path("csi-snapshot")
CDI_CRDS = Path("cdi")


# libyaml when present: the CRDs parse ten times faster (every simulator start reads them).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ReferenceError(RuntimeError):
    """The reference schemas (or a manifest) cannot be found or read."""


@dataclass(frozen=True)
class Reference:
    """The loaded ground truth: KubeVirt's swagger and CRD documents (CSI, CDI, then ours)."""

    directory: Path
    swagger: dict[str, Any]
    crds: list[dict[str, Any]]


def find_reference_dir(override: str | Path | None = None) -> Path:
    """`--reference`, else `$VMSNAP_REFERENCE_DIR`, else the vendored `simulator/upstream/`."""
    candidates: list[tuple[str, Path]] = []
    if override:
        candidates.append(("--reference", Path(override)))
    elif os.environ.get(REFERENCE_ENV):
        candidates.append((f"${REFERENCE_ENV}", Path(os.environ[REFERENCE_ENV])))
    else:
        candidates.append(("vendored", VENDORED_REFERENCE))
    source, directory = candidates[0]
    missing = [
        str(directory / part)
        for part in (KUBEVIRT_SWAGGER, CSI_CRDS, CDI_CRDS)
        if not (directory / part).exists()
    ]
    if missing:
        raise ReferenceError(
            f"reference schemas not found ({source}: {directory}); missing "
            + ", ".join(missing)
            + f". The vendored copy lives in {VENDORED_REFERENCE}; {REFERENCE_ENV} overrides it."
        )
    return directory


def load_reference(directory: Path, crds_dir: Path | None) -> Reference:
    """Read the swagger and every CRD: the CSI ones, CDI's, then the project's (`crds_dir`)."""
    try:
        swagger = json.loads((directory / KUBEVIRT_SWAGGER).read_text())
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"cannot read {directory / KUBEVIRT_SWAGGER}: {exc}") from exc
    crds = crd_documents(directory / CSI_CRDS)
    if not crds:
        raise ReferenceError(f"no CustomResourceDefinition found in {directory / CSI_CRDS}")
    cdi = crd_documents(directory / CDI_CRDS)
    if not cdi:
        raise ReferenceError(f"no CustomResourceDefinition found in {directory / CDI_CRDS}")
    crds.extend(cdi)
    if crds_dir is not None and crds_dir.is_dir():
        crds.extend(crd_documents(crds_dir))
    return Reference(directory, swagger, crds)


def crd_documents(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the YAML files of a folder, in file-name order."""
    found: list[dict[str, Any]] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        for document in manifest_documents(path):
            if document.get("kind") == "CustomResourceDefinition":
                found.append(document)
    return found


def _flatten(document: Any, path: Path) -> Iterator[dict[str, Any]]:
    if document is None:
        return
    if not isinstance(document, dict):
        raise ReferenceError(
            f"{path}: a manifest must be a mapping, found {type(document).__name__}"
        )
    kind = str(document.get("kind", ""))
    if kind == "List" or (kind.endswith("List") and isinstance(document.get("items"), list)):
        for item in document.get("items") or []:
            yield from _flatten(item, path)
        return
    yield document


def manifest_documents(path: Path) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML file, with `List` kinds flattened."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ReferenceError(f"cannot read {path}: {exc}") from exc
    try:
        return [
            obj for doc in yaml.load_all(text, Loader=_YAML_LOADER) for obj in _flatten(doc, path)
        ]
    except yaml.YAMLError as exc:
        raise ReferenceError(f"{path}: invalid YAML: {exc}") from exc
