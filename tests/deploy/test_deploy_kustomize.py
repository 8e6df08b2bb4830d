"""deploy/ as a kustomize base: `kubectl apply -k deploy/` installs exactly the manifests
the other tests prove, and an overlay moves the image and the namespace.

Rendered with `kubectl kustomize` (kustomize is built into kubectl); the RBAC objects are
compared with what tests/support/rbac.py loads from deploy/rbac for the RBAC proof.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from starter.local_stack import REPO_ROOT
from tests.support.rbac import load_documents, policy_for_service_account

DEPLOY = REPO_ROOT / "deploy"
RBAC_DIR = DEPLOY / "rbac"
CRDS_DIR = DEPLOY / "crds"
NOT_INSTALLED = {"worker/secret.example.yaml"}  # the user makes the Secret, if any
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
REGISTRY_IMAGE = "registry.example.com/platform/vmsnap-worker"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl (with its built-in kustomize) is not installed")

Key = tuple[str, str]


def render(directory: Path) -> dict[Key, dict[str, Any]]:
    """`kubectl kustomize DIR`, by (kind, name)."""
    done = subprocess.run(["kubectl", "kustomize", str(directory)], check=True,
                          capture_output=True, text=True, timeout=60)
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    assert len(rendered) == len(documents), "two objects of one kind and name"
    return rendered


def by_key(documents: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


@pytest.fixture(scope="module")
def base() -> dict[Key, dict[str, Any]]:
    return render(DEPLOY)


def project_version() -> str:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_base_lists_every_manifest_of_deploy() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.relative_to(DEPLOY).as_posix()
               for folder in ("crds", "rbac", "worker") for p in (DEPLOY / folder).glob("*.yaml")}
    assert set(listed) == on_disk - NOT_INSTALLED


def test_every_crd_is_installed_as_written(base: dict[Key, dict[str, Any]]) -> None:
    crds = [d for path in sorted(CRDS_DIR.glob("*.yaml"))
            for d in yaml.safe_load_all(path.read_text()) if d]
    assert {d["spec"]["names"]["plural"] for d in crds} == {
        "vmsnapsnapshots", "vmsnapcontents", "vmsnaprestores", "vmsnapclones"}
    for key, crd in by_key(crds).items():
        assert base.get(key) == crd, f"{key} differs from deploy/crds"


def test_the_rbac_is_the_one_the_rbac_proof_checks(base: dict[Key, dict[str, Any]]) -> None:
    proven = load_documents(RBAC_DIR)
    for key, document in by_key(proven).items():
        assert base.get(key) == document, f"{key} differs from deploy/rbac"
    rendered = policy_for_service_account(base.values())
    assert rendered.rules == policy_for_service_account(proven).rules
    assert (rendered.service_account, rendered.namespace) == ("vmsnap-worker", "vmsnap")


def test_the_worker_runs_the_image_of_this_version(base: dict[Key, dict[str, Any]]) -> None:
    for key in [("Namespace", "vmsnap"), ("ConfigMap", "vmsnap-worker"),
                ("Service", "vmsnap-worker-metrics")]:
        assert key in base, key
    [container] = base["Deployment", "vmsnap-worker"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"vmsnap-worker:{project_version()}"
    for document in base.values():
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"]["namespace"] == "vmsnap", document["metadata"]


def overlay(directory: Path, namespace: str, image: str, tag: str) -> Path:
    """An overlay as a user writes it: the base by (relative) path, images:, namespace:."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        # kustomize refuses absolute paths; this is the absolute base, made relative
        "resources": [os.path.relpath(DEPLOY, directory)],
        "images": [{"name": "vmsnap-worker", "newName": image, "newTag": tag}],
    }))
    return directory


def test_an_overlay_sets_the_image_and_the_namespace(tmp_path: Path) -> None:
    rendered = render(overlay(tmp_path / "prod", "backup-system", REGISTRY_IMAGE, "1.2.3"))
    [container] = rendered["Deployment", "vmsnap-worker"]["spec"]["template"]["spec"][
        "containers"]
    assert container["image"] == f"{REGISTRY_IMAGE}:1.2.3"
    assert ("Namespace", "backup-system") in rendered
    for document in rendered.values():
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"]["namespace"] == "backup-system", document["metadata"]
    policy = policy_for_service_account(rendered.values())
    assert (policy.service_account, policy.namespace) == ("vmsnap-worker", "backup-system")
    assert [(r.verbs, r.api_groups, r.resources) for r in policy.rules] == [
        (r.verbs, r.api_groups, r.resources)
        for r in policy_for_service_account(load_documents(RBAC_DIR)).rules]


def documented_overlay() -> dict[str, Any]:
    """The overlay deploy/README.md shows (`# my-vmsnap/kustomization.yaml`)."""
    text = (DEPLOY / "README.md").read_text()
    match = re.search(r"```yaml\n(\s*# my-vmsnap/kustomization\.yaml\n.*?)```", text, re.S)
    assert match, "deploy/README.md shows no my-vmsnap/kustomization.yaml"
    document = yaml.safe_load(textwrap.dedent(match.group(1)))
    assert isinstance(document, dict)
    return document


def test_the_overlay_of_the_readme_renders_as_it_says(tmp_path: Path) -> None:
    document = documented_overlay()
    directory = tmp_path / "my-vmsnap"
    directory.mkdir()
    document["resources"] = [os.path.relpath(DEPLOY, directory)]  # where the base is here
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(document))
    rendered = render(directory)
    [image] = document["images"]
    [container] = rendered["Deployment", "vmsnap-worker"]["spec"]["template"]["spec"][
        "containers"]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    data = rendered["ConfigMap", "vmsnap-worker"]["data"]
    [generator] = document["configMapGenerator"]
    for literal in generator["literals"]:
        key, _, value = literal.partition("=")
        assert data[key] == value
    assert data["VMSNAP_TASK_QUEUE"] == "vmsnap"  # merged into the base's, not replacing it
