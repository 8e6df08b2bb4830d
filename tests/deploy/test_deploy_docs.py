"""deploy/README.md and docs/production.md describe the install that deploy/ is.

The README's RBAC table names every grant of the ClusterRole and nothing else; both
documents install with `kubectl apply -k deploy/`, name the four CRDs, and say how to
build and push the image that the Deployment names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from starter.local_stack import REPO_ROOT

DEPLOY_README = REPO_ROOT / "deploy" / "README.md"
PRODUCTION_DOC = REPO_ROOT / "docs" / "production.md"
CLUSTER_ROLE = REPO_ROOT / "deploy" / "rbac" / "clusterrole.yaml"
RESOURCES = ["vmsnapsnapshots", "vmsnapcontents", "vmsnaprestores", "vmsnapclones"]

Grant = tuple[str, str, str]  # (API group, resource, verb)


def cluster_role_grants() -> set[Grant]:
    role = yaml.safe_load(CLUSTER_ROLE.read_text())
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def _cell_names(cell: str) -> list[str]:
    """The backquoted names of a table cell (`a`, `b`), or its comma-separated words."""
    quoted = re.findall(r"`([^`]*)`", cell)
    return quoted if quoted else [word.strip() for word in cell.split(",") if word.strip()]


def readme_grants() -> set[Grant]:
    """The (group, resource, verb) rows of the README's RBAC table."""
    section = DEPLOY_README.read_text().split("## RBAC", 1)[1]
    grants: set[Grant] = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("API group", "---"):
            continue
        group = "" if cells[0].startswith("core") else _cell_names(cells[0])[0]
        grants |= {(group, resource, verb) for resource in _cell_names(cells[1])
                   for verb in _cell_names(cells[2])}
    return grants


def test_the_readme_table_is_the_cluster_role() -> None:
    documented, granted = readme_grants(), cluster_role_grants()
    assert documented - granted == set(), "documented but not granted"
    assert granted - documented == set(), "granted but not documented"


@pytest.mark.parametrize("document", [DEPLOY_README, PRODUCTION_DOC], ids=lambda p: p.name)
def test_the_install_is_kubectl_apply_k_with_a_pushed_image(document: Path) -> None:
    text = document.read_text()
    assert "kubectl apply -k deploy/" in text
    assert re.search(r"docker build -t \S*vmsnap-worker", text)
    assert re.search(r"docker push \S*vmsnap-worker", text)
    assert "images:" in text and "newName:" in text
    for resource in RESOURCES:
        assert resource in text, resource
    assert "still to add" not in text.lower()
    assert "kubectl apply -f deploy/crds -f deploy/worker/namespace.yaml" not in text
