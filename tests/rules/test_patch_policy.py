"""The clone patch policy: an allowlist of paths, what is always refused, the widening,
and the second line on the VM about to be created."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rules.patch_policy import (
    DEFAULT_ALLOWED,
    PatchPolicy,
    PatchRefused,
    added_credentials,
    check_patch_syntax,
    matches,
)

VOLUMES = "/spec/template/spec/volumes"


def check(*operations: dict[str, Any], policy: PatchPolicy | None = None) -> None:
    (policy or PatchPolicy()).check(check_patch_syntax([json.dumps(list(operations))]))


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


ALLOWED = [
    add("/metadata/labels/tier", "gold"),
    add("/metadata/annotations/example.com~1owner", "team-a"),
    add("/metadata/labels", {"tier": "gold", "app": "web"}),
    {"op": "replace", "path": "/spec/runStrategy", "value": "Always"},
    {"op": "remove", "path": "/metadata/labels/app"},
    add("/spec/template/metadata/labels/zone", "a"),
    {"op": "replace", "path": "/spec/template/spec/hostname", "value": "web-2"},
    {"op": "replace", "path": "/spec/template/spec/domain/firmware/serial", "value": "s2"},
    {"op": "remove", "path": "/spec/template/spec/domain/firmware/uuid"},
    add("/spec/template/spec/domain/devices/interfaces/0/macAddress", "02:00:00:00:00:02"),
    {"op": "replace", "path": "/spec/template/spec/domain/resources",
     "value": {"requests": {"memory": "2Gi"}}},
    {"op": "replace", "path": "/spec/template/spec/domain/cpu/cores", "value": 4},
    {"op": "replace", "path": "/spec/template/spec/domain/memory/guest", "value": "4Gi"},
    {"op": "replace", "path": "/spec/instancetype/name", "value": "u1.large"},
    {"op": "replace", "path": f"{VOLUMES}/1/cloudInitNoCloud/userData",
     "value": "#cloud-config\nhostname: web-2\n"},
    {"op": "test", "path": "/spec/runStrategy", "value": "Halted"},
]


@pytest.mark.parametrize("operation", ALLOWED, ids=lambda o: f"{o['op']} {o['path']}")
def test_what_a_copy_legitimately_changes_is_allowed(operation: dict[str, Any]) -> None:
    check(operation)


REFUSED = [
    (add(f"{VOLUMES}/-", {"name": "t", "serviceAccount": {"serviceAccountName": "admin"}}),
     f"{VOLUMES}/-/serviceAccount/serviceAccountName", "serviceAccount volume"),
    (add(f"{VOLUMES}/-", {"name": "s", "secret": {"secretName": "db"}}),
     f"{VOLUMES}/-/secret/secretName", "secret volume"),
    (add(f"{VOLUMES}/-", {"name": "c", "configMap": {"name": "cfg"}}),
     f"{VOLUMES}/-/configMap/name", "configMap volume"),
    (add(f"{VOLUMES}/-", {"name": "d", "downwardAPI": {"fields": []}}),
     f"{VOLUMES}/-/downwardAPI", "downwardAPI volume"),
    (add(f"{VOLUMES}/-", {"name": "h", "hostDisk": {"path": "/", "type": "Disk"}}),
     f"{VOLUMES}/-/hostDisk/path", "hostDisk volume"),
    (add(f"{VOLUMES}/-", {"name": "w", "sysprep": {"secret": {"name": "x"}}}),
     f"{VOLUMES}/-/sysprep/secret/name", "sysprep volume"),
    (add(f"{VOLUMES}/1/cloudInitNoCloud/userDataSecretRef", {"name": "s"}),
     f"{VOLUMES}/1/cloudInitNoCloud/userDataSecretRef/name", "from a Secret"),
    (add(f"{VOLUMES}/1/cloudInitConfigDrive/networkDataSecretRef", {"name": "s"}),
     f"{VOLUMES}/1/cloudInitConfigDrive/networkDataSecretRef/name", "from a Secret"),
    (add(VOLUMES, [{"name": "h", "hostDisk": {"path": "/"}}]),
     f"{VOLUMES}/0/hostDisk/path", "hostDisk volume"),
    (add("/spec/template/spec/accessCredentials", [{"sshPublicKey": {"source": {
        "secret": {"secretName": "keys"}}}}]), "/spec/template/spec/accessCredentials/0",
     "accessCredentials"),
    (add("/metadata/annotations/hooks.kubevirt.io~1hookSidecars", "[{}]"),
     "/metadata/annotations/hooks.kubevirt.io~1hookSidecars", "sidecar"),
    (add("/spec/template/metadata/annotations", {"hooks.kubevirt.io/hookSidecars": "[]"}),
     "/spec/template/metadata/annotations/hooks.kubevirt.io~1hookSidecars", "sidecar"),
    (add("/spec/template/metadata/annotations/sidecar.istio.io~1inject", "true"),
     "/spec/template/metadata/annotations/sidecar.istio.io~1inject", "sidecar"),
    (add("/spec/template/metadata/annotations/container.apparmor.security.beta.kubernetes.io"
         "~1compute", "unconfined"), "apparmor", "configures the VM's pod"),
    (add("/spec/template/metadata/annotations/k8s.v1.cni.cncf.io~1networks", "other/net"),
     "k8s.v1.cni.cncf.io~1networks", "configures the VM's pod"),
    (add("/metadata/labels/vmsnap.io~1clone", "x"), "/metadata/labels/vmsnap.io~1clone",
     "vmsnap's own"),
    (add("/metadata/labels/schedule.vmsnap.io~1name", "nightly"),
     "schedule.vmsnap.io~1name", "vmsnap's own"),
    (add("/metadata/annotations/vmsnap.io~1lock", "{}"), "vmsnap.io~1lock", "vmsnap's own"),
    ({"op": "remove", "path": "/metadata/labels/vmsnap.io~1clone"}, "vmsnap.io~1clone",
     "vmsnap's own"),
    ({"op": "replace", "path": "/metadata/name", "value": "evil"}, "/metadata/name",
     "allowlist"),
    (add("/metadata/namespace", "kube-system"), "/metadata/namespace", "allowlist"),
    (add("/metadata/ownerReferences", []), "/metadata/ownerReferences", "allowlist"),
    (add("/status/x", 1), "/status/x", "allowlist"),
    ({"op": "replace", "path": "/spec", "value": {}}, "/spec", "allowlist"),
    ({"op": "remove", "path": f"{VOLUMES}/0"}, f"{VOLUMES}/0", "allowlist"),
    (add("/spec/template/spec/nodeSelector/kubernetes.io~1hostname", "node-1"),
     "nodeSelector", "allowlist"),
    (add("/spec/dataVolumeTemplates/-", {"metadata": {"name": "x"}}), "dataVolumeTemplates",
     "allowlist"),
    ({"op": "copy", "from": f"{VOLUMES}/0", "path": f"{VOLUMES}/-"}, f"{VOLUMES}/-",
     "allowlist"),
    ({"op": "move", "from": "/metadata/labels/vmsnap.io~1clone", "path": "/metadata/labels/x"},
     "vmsnap.io~1clone", "vmsnap's own"),
]


@pytest.mark.parametrize(("operation", "path", "reason"), REFUSED,
                         ids=[f"{o['op']} {o['path']}" for o, _, _ in REFUSED])
def test_every_refused_path_is_named_with_its_reason(
    operation: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(PatchRefused) as refused:
        check(operation)
    assert path in str(refused.value) and reason in str(refused.value), refused.value


def test_a_widened_list_allows_more_but_never_credentials() -> None:
    policy = PatchPolicy.widened(f"{VOLUMES}/**, /spec/template/spec/nodeSelector/*")
    assert policy.extra == (f"{VOLUMES}/**", "/spec/template/spec/nodeSelector/*")
    check(add("/spec/template/spec/nodeSelector/zone", "a"),
          add(f"{VOLUMES}/-", {"name": "tools", "containerDisk": {"image": "tools:1"}}),
          policy=policy)
    with pytest.raises(PatchRefused, match="serviceAccount"):
        check(add(f"{VOLUMES}/-", {"name": "t", "serviceAccount": {"serviceAccountName": "a"}}),
              policy=policy)
    with pytest.raises(PatchRefused, match="sidecar"):
        check(add("/metadata/annotations/hooks.kubevirt.io~1hookSidecars", "[]"),
              policy=PatchPolicy.widened("/metadata/annotations/**"))


@pytest.mark.parametrize("bad", ["spec/x", "/spec/**/x", "/spec//x", ""])
def test_a_bad_widening_is_refused_naming_the_setting(bad: str) -> None:
    if not bad:
        assert PatchPolicy.widened(bad).allowed == DEFAULT_ALLOWED
        return
    with pytest.raises(ValueError, match="VMSNAP_CLONE_PATCH_ALLOW"):
        PatchPolicy.widened(bad)


@pytest.mark.parametrize(("pattern", "pointer", "matched"), [
    ("/metadata/labels/*", "/metadata/labels/app", True),
    ("/metadata/labels/*", "/metadata/labels", False),
    ("/metadata/labels/*", "/metadata/labels/a/b", False),
    ("/spec/x/**", "/spec/x", True),
    ("/spec/x/**", "/spec/x/y/z", True),
    ("/spec/x/**", "/spec/xy", False),
    ("/spec/*/y", "/spec/-/y", True),
])
def test_patterns(pattern: str, pointer: str, matched: bool) -> None:
    assert matches(pattern, pointer) is matched


@pytest.mark.parametrize(("text", "complaint"), [
    ("{nope", "not JSON"),
    ('"add"', "must be an object"),
    ('{"op": "frob", "path": "/spec"}', "unknown operation"),
    ('{"op": "add", "path": "spec/x", "value": 1}', "JSON pointer"),
    ('{"op": "add", "path": "/spec/x"}', "no value"),
    ('{"op": "copy", "path": "/spec/x"}', "JSON pointer"),
])
def test_syntax(text: str, complaint: str) -> None:
    with pytest.raises(PatchRefused, match=complaint):
        check_patch_syntax([text])


def vm(volumes: list[dict[str, Any]], annotations: dict[str, str] | None = None,
       pod_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "v", "annotations": annotations or {}},
            "spec": {"template": {"metadata": {"annotations": pod_annotations or {}},
                                  "spec": {"volumes": volumes}}}}


ROOT = {"name": "root", "persistentVolumeClaim": {"claimName": "root"}}
TOKEN = {"name": "t", "serviceAccount": {"serviceAccountName": "admin"}}


def test_the_created_vm_may_not_reach_what_its_source_did_not() -> None:
    source = vm([ROOT])
    assert added_credentials(source, vm([ROOT])) == []
    assert added_credentials(source, vm([ROOT, TOKEN])) == [
        'serviceAccount volume {"serviceAccountName":"admin"}']
    assert added_credentials(source, vm([ROOT], {"hooks.kubevirt.io/hookSidecars": "[]"})) == [
        "VM annotation hooks.kubevirt.io/hookSidecars=[]"]
    init = {"name": "i", "cloudInitNoCloud": {"userDataSecretRef": {"name": "s"}}}
    assert added_credentials(source, vm([ROOT, init])) == [
        'cloudInitNoCloud.userDataSecretRef {"name":"s"}']


def test_what_the_source_had_travels() -> None:
    """A copy of a VM that mounts a Secret mounts the same Secret: nothing new."""
    secret = {"name": "s", "secret": {"secretName": "db"}}
    other = {"name": "s", "secret": {"secretName": "other"}}
    source = vm([ROOT, secret], pod_annotations={"k8s.v1.cni.cncf.io/networks": "n"})
    assert added_credentials(source, source) == []
    assert added_credentials(source, vm([ROOT, other])) == [
        'secret volume {"secretName":"other"}']
