"""The namespaced form of deploy/: an overlay whose worker holds rights only in the
namespaces it serves, generated from one list of them.

    python -m starter.namespaced_deploy --namespaces team-a,team-b --output my-vmsnap \\
        [--worker-namespace vmsnap] [--base path/to/vmsnap/deploy]
    kubectl apply -k my-vmsnap

It writes three files:

- `OUT/roles.yaml`: per served namespace, a Role `vmsnap-worker` with the namespaced rules
  of deploy/rbac/clusterrole.yaml (all but the cluster-scoped kinds) and a RoleBinding
  of it to the worker's ServiceAccount;
- `OUT/worker/kustomization.yaml`: the base, the component `components/namespaced` (no
  cluster-wide rights but the reads of StorageClasses and VolumeSnapshotClasses), the
  worker's namespace, and `VMSNAP_NAMESPACES` set to the same list, so the worker
  refuses what its RBAC would refuse, before any step;
- `OUT/kustomization.yaml`: both, with no `namespace:` of its own (kustomize would move
  the Roles into it).

The same list decides what the cluster allows and what the worker accepts; generate
again when it changes. The RBAC proof (tests/e2e/test_rbac.py) checks the output of this
generator against every request of a worker serving its namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rules.namespace_scope import ENV as NAMESPACES_ENV
from rules.namespace_scope import NamespaceScope

DEFAULT_BASE = Path(__file__).resolve().parents[1] / "deploy"
ROLE = "vmsnap-worker"
SERVICE_ACCOUNT = "vmsnap-worker"
BASE_NAMESPACE = "vmsnap"  # the base's namespace: the ConfigMap to merge into is there
CLUSTER_SCOPED = {("", "namespaces"), ("storage.k8s.io", "storageclasses"),
                  ("snapshot.storage.k8s.io", "volumesnapshotclasses"),
                  ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses"),
                  ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents")}
RBAC = "rbac.authorization.k8s.io"
LABELS = {"app.kubernetes.io/name": "vmsnap-worker", "app.kubernetes.io/part-of": "vmsnap"}


def cluster_role_rules(base: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load((base / "rbac" / "clusterrole.yaml").read_text())
    rules = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(rules, list):
        raise ValueError(f"{base}/rbac/clusterrole.yaml holds no rules")
    return rules


def namespaced_rules(rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rules of the ClusterRole a Role can grant: without the cluster-scoped kinds."""
    kept = []
    for rule in rules:
        resources = [r for r in rule["resources"]
                     if not any((g, r) in CLUSTER_SCOPED for g in rule["apiGroups"])]
        if resources:
            kept.append({**rule, "resources": resources})
    return kept


def roles(namespaces: Sequence[str], worker_namespace: str,
          rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A Role and its RoleBinding per namespace, in the order given."""
    documents: list[dict[str, Any]] = []
    for namespace in namespaces:
        metadata = {"name": ROLE, "namespace": namespace, "labels": dict(LABELS)}
        documents.append({"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": metadata,
                          "rules": [dict(r) for r in rules]})
        documents.append({
            "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": dict(metadata),
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                          "namespace": worker_namespace}]})
    return documents


def write_overlay(output: Path, namespaces: Sequence[str], worker_namespace: str = "vmsnap",
                  base: Path = DEFAULT_BASE) -> list[Path]:
    """Write the overlay (module docstring); the files written."""
    scope = NamespaceScope.parse(",".join(namespaces))
    if scope.everything:
        raise ValueError("name the namespaces to serve (the namespaced form has no 'all')")
    served = scope.listed()
    worker_dir = output / "worker"
    worker_dir.mkdir(parents=True, exist_ok=True)
    base_from_worker = os.path.relpath(base.resolve(), worker_dir.resolve())
    files = {
        output / "roles.yaml": yaml.safe_dump_all(
            roles(served, worker_namespace, namespaced_rules(cluster_role_rules(base))),
            sort_keys=False),
        worker_dir / "kustomization.yaml": yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": worker_namespace,
            "resources": [base_from_worker],
            "components": [f"{base_from_worker}/components/namespaced"],
            "configMapGenerator": [{
                "name": "vmsnap-worker", "namespace": BASE_NAMESPACE, "behavior": "merge",
                "literals": [f"{NAMESPACES_ENV}={','.join(served)}"]}],
        }, sort_keys=False),
        output / "kustomization.yaml": yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["worker", "roles.yaml"],
        }, sort_keys=False),
    }
    header = ("# Generated by `python -m starter.namespaced_deploy`: the worker serves "
              f"{', '.join(served)}.\n# Generate it again rather than edit it.\n")
    for path, text in files.items():
        path.write_text(header + text)
    return list(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starter.namespaced_deploy",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespaces", required=True,
                        help="the namespaces to serve, comma separated")
    parser.add_argument("--output", required=True, type=Path, help="the overlay to write")
    parser.add_argument("--worker-namespace", default="vmsnap",
                        help="where the worker runs (default vmsnap)")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE,
                        help="vmsnap's deploy/ folder (default: this checkout's)")
    args = parser.parse_args(argv)
    try:
        written = write_overlay(args.output, args.namespaces.split(","),
                                args.worker_namespace, args.base)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
