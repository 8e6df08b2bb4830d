"""vmsnap's records beside KubeVirt's own snapshot and clone APIs, as kubectl resolves them.

On a cluster with KubeVirt installed, `snapshot.kubevirt.io` and `clone.kubevirt.io`
serve VirtualMachineSnapshot, VirtualMachineSnapshotContent, VirtualMachineRestore and
VirtualMachineClone. The simulator serves them too (virt-operator's names, validated
against the vendored swagger), so these tests can prove that every `kubectl get` the
documentation shows returns vmsnap's records, never KubeVirt's.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from starter.local_stack import REPO_ROOT
from tests.conftest import StartSim
from tests.support.sim import Sim

KUBEVIRT_GROUPS = {"snapshot.kubevirt.io", "clone.kubevirt.io"}
DOCUMENTS = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "workflows" / "README.md",
    REPO_ROOT / "deploy" / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    REPO_ROOT / "demo" / "story.py",
    *sorted((REPO_ROOT / "starter").glob("*.py")),
]
# `kubectl [--kubeconfig F] get a,b,c` as written in the docs and printed by the CLI.
KUBECTL_GET = re.compile(r"kubectl(?:\s+--kubeconfig\s+\S+)?\s+get\s+([a-z][a-z0-9.,-]*)")
# Resources of other APIs that documented commands list beside ours.
NOT_OURS = {
    "vm", "vms", "vmi", "vmis", "pvc", "pvcs", "volumesnapshots", "volumesnapshot", "vs",
    "volumesnapshotcontents", "events", "ev", "crd", "crds", "deployment", "pods", "po",
    "virtualmachines", "virtualmachineinstances", "persistentvolumeclaims", "all",
    "clusterrole", "clusterrolebinding", "serviceaccount", "namespace", "ns", "sc",
    "storageclasses", "volumesnapshotclasses", "secret", "configmap",
}

KUBEVIRT_OBJECTS = """
apiVersion: snapshot.kubevirt.io/v1beta1
kind: VirtualMachineSnapshot
metadata: {name: kv-snap}
spec:
  source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: web-1}
---
apiVersion: snapshot.kubevirt.io/v1beta1
kind: VirtualMachineSnapshotContent
metadata: {name: kv-content}
spec:
  source: {}
  virtualMachineSnapshotName: kv-snap
---
apiVersion: snapshot.kubevirt.io/v1beta1
kind: VirtualMachineRestore
metadata: {name: kv-restore}
spec:
  target: {apiGroup: kubevirt.io, kind: VirtualMachine, name: web-1}
  virtualMachineSnapshotName: kv-snap
---
apiVersion: clone.kubevirt.io/v1beta1
kind: VirtualMachineClone
metadata: {name: kv-clone}
spec:
  source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: web-1}
  target: {apiGroup: kubevirt.io, kind: VirtualMachine, name: web-2}
"""

VMSNAP_OBJECTS = """
apiVersion: vmsnap.io/v1alpha1
kind: VirtualMachineSnapshot
metadata: {name: our-snap}
spec:
  source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: web-1}
---
apiVersion: vmsnap.io/v1alpha1
kind: VirtualMachineSnapshotContent
metadata: {name: our-content}
spec:
  source: {virtualMachine: {metadata: {name: web-1}, spec: {}}}
  virtualMachineSnapshotName: our-snap
  volumeBackups: []
---
apiVersion: vmsnap.io/v1alpha1
kind: VirtualMachineRestore
metadata: {name: our-restore}
spec:
  target: {apiGroup: kubevirt.io, kind: VirtualMachine, name: web-1}
  virtualMachineSnapshotName: our-snap
---
apiVersion: vmsnap.io/v1alpha1
kind: VirtualMachineClone
metadata: {name: our-clone}
spec:
  source: {kind: VirtualMachineSnapshot, name: our-snap}
  target: {kind: VirtualMachine, name: web-2}
"""


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(name="coexistence")
    yield started
    started.process.stop()


@pytest.fixture(scope="module")
def namespace(sim: Sim) -> str:
    name = f"co-{uuid.uuid4().hex[:8]}"
    sim.kubectl("create", "namespace", name)
    sim.kubectl("create", "-n", name, "-f", "-", input=KUBEVIRT_OBJECTS)
    sim.kubectl("create", "-n", name, "-f", "-", input=VMSNAP_OBJECTS)
    return name


def documented_resources() -> dict[str, list[str]]:
    """Each resource name a documented `kubectl get` names, with the files that name it."""
    found: dict[str, list[str]] = {}
    for document in DOCUMENTS:
        for match in KUBECTL_GET.finditer(document.read_text()):
            for resource in match.group(1).split(","):
                if resource and resource not in NOT_OURS:
                    found.setdefault(resource, []).append(str(document.relative_to(REPO_ROOT)))
    return found


def groups_listed(sim: Sim, namespace: str, resource: str) -> set[str]:
    listed = json.loads(sim.kubectl("get", resource, "-n", namespace, "-o", "json").stdout)
    return {item["apiVersion"].split("/")[0] for item in listed["items"]}


def test_kubevirt_snapshot_and_clone_kinds_are_served_with_their_own_names(sim: Sim) -> None:
    rows = sim.kubectl("api-resources", "--api-group", "snapshot.kubevirt.io").stdout
    rows += sim.kubectl("api-resources", "--api-group", "clone.kubevirt.io").stdout
    for plural, shorts in [
        ("virtualmachinesnapshots", "vmsnapshot,vmsnapshots"),
        ("virtualmachinesnapshotcontents", "vmsnapshotcontent,vmsnapshotcontents"),
        ("virtualmachinerestores", "vmrestore,vmrestores"),
        ("virtualmachineclones", "vmclone,vmclones"),
    ]:
        row = next(line.split() for line in rows.splitlines() if line.startswith(plural + " "))
        assert row[1] == shorts, row


def test_kubevirt_records_are_validated_against_the_vendored_schema(
    sim: Sim, namespace: str
) -> None:
    refused = sim.kubectl(
        "create", "-n", namespace, "-f", "-", check=False,
        input="apiVersion: snapshot.kubevirt.io/v1beta1\nkind: VirtualMachineRestore\n"
        "metadata: {name: no-target}\nspec: {virtualMachineSnapshotName: kv-snap}\n",
    )
    assert refused.returncode != 0
    assert "spec.target" in refused.stderr and "Required value" in refused.stderr


def test_kubevirt_short_names_resolve_to_kubevirt(sim: Sim, namespace: str) -> None:
    for short in ("vmsnapshot", "vmsnapshotcontent", "vmrestore", "vmclone"):
        assert groups_listed(sim, namespace, short) <= KUBEVIRT_GROUPS, short
        assert groups_listed(sim, namespace, short), short


def test_every_documented_kubectl_get_returns_vmsnap_records(sim: Sim, namespace: str) -> None:
    documented = documented_resources()
    assert {"vmsnapsnapshots", "vmsnap", "vmsnaprestore", "vmsnapclone"} <= set(documented)
    for resource, where in documented.items():
        assert groups_listed(sim, namespace, resource) == {"vmsnap.io"}, (resource, where)


def test_each_record_name_and_short_name_resolves_to_ours(sim: Sim, namespace: str) -> None:
    for names, expected in [
        (("vmsnapsnapshots", "vmsnapsnapshot", "vmsnap", "vmsnaps"), "our-snap"),
        (("vmsnapcontents", "vmsnapcontent"), "our-content"),
        (("vmsnaprestores", "vmsnaprestore"), "our-restore"),
        (("vmsnapclones", "vmsnapclone"), "our-clone"),
    ]:
        for name in names:
            listed = json.loads(sim.kubectl("get", name, "-n", namespace, "-o", "json").stdout)
            assert [i["metadata"]["name"] for i in listed["items"]] == [expected], name
            assert {i["apiVersion"] for i in listed["items"]} == {"vmsnap.io/v1alpha1"}, name


def test_documents_list_only_files_that_exist() -> None:
    assert all(Path(document).is_file() for document in DOCUMENTS)
