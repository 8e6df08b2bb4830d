"""Owner references, finalizers and resourceVersion on update, as kube-apiserver treats them.

A PUT replaces the object: what it leaves out of `metadata` (owner references,
finalizers) is gone. A merge patch changes only what it names. Custom resources
and CRDs (strategies without AllowUnconditionalUpdate) refuse a PUT without
`metadata.resourceVersion`; built-in kinds take it as "the current one".
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import REFERENCE_EXAMPLES, StartSim
from tests.support.sim import Sim

KUBEVIRT = ("kubevirt.io", "v1")
Api = Any


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(name="api-update")
    yield started
    started.process.stop()


def body_of(error: ApiException) -> dict[str, Any]:
    """The Status the server answered."""
    text = error.body if isinstance(error.body, str) else (error.body or b"").decode()
    decoded: dict[str, Any] = json.loads(text)
    return decoded


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REFERENCE_EXAMPLES / name).read_text())
    return loaded


def owned_vm(custom: Api, namespace: str, owner_uid: str) -> dict[str, Any]:
    vm = example("vm-cirros.yaml")
    vm["metadata"]["finalizers"] = ["example.com/keep"]
    vm["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
    ]
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        *KUBEVIRT, namespace, "virtualmachines", vm
    )
    return created


def replace_vm(custom: Api, namespace: str, change: Any) -> dict[str, Any]:
    """GET, change, PUT; again on 409 (the VM controller writes the status meanwhile)."""
    for _ in range(20):
        vm = custom.get_namespaced_custom_object(
            *KUBEVIRT, namespace, "virtualmachines", "vm-cirros"
        )
        change(vm)
        try:
            replaced: dict[str, Any] = custom.replace_namespaced_custom_object(
                *KUBEVIRT, namespace, "virtualmachines", "vm-cirros", vm
            )
            return replaced
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError("the VM kept changing")


def test_a_put_without_owner_references_and_finalizers_removes_them(
    custom: Api, namespace: str
) -> None:
    owned_vm(custom, namespace, str(uuid.uuid4()))

    def strip(vm: dict[str, Any]) -> None:
        vm["metadata"].pop("ownerReferences")
        vm["metadata"].pop("finalizers")

    replaced = replace_vm(custom, namespace, strip)
    assert "ownerReferences" not in replaced["metadata"]
    assert "finalizers" not in replaced["metadata"]


def test_a_merge_patch_that_does_not_name_them_keeps_them(custom: Api, namespace: str) -> None:
    owner = str(uuid.uuid4())
    owned_vm(custom, namespace, owner)
    patched = custom.patch_namespaced_custom_object(
        *KUBEVIRT, namespace, "virtualmachines", "vm-cirros",
        {"metadata": {"labels": {"patched": "yes"}}},
    )
    assert patched["metadata"]["finalizers"] == ["example.com/keep"]
    assert [r["uid"] for r in patched["metadata"]["ownerReferences"]] == [owner]
    assert patched["metadata"]["labels"]["patched"] == "yes"


def test_a_custom_resource_put_without_resource_version_is_invalid(
    custom: Api, namespace: str
) -> None:
    vm = owned_vm(custom, namespace, str(uuid.uuid4()))
    vm["metadata"].pop("resourceVersion")
    with pytest.raises(ApiException) as refused:
        custom.replace_namespaced_custom_object(
            *KUBEVIRT, namespace, "virtualmachines", "vm-cirros", vm
        )
    status = body_of(refused.value)
    assert refused.value.status == 422
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'virtualmachines.kubevirt.io "vm-cirros" is invalid: metadata.resourceVersion: '
        "Invalid value: 0x0: must be specified for an update"
    )
    assert status["details"] == {
        "name": "vm-cirros",
        "group": "kubevirt.io",
        "kind": "virtualmachines",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 0x0: must be specified for an update",
                "field": "metadata.resourceVersion",
            }
        ],
    }
    # The status subresource of a custom resource is held to the same rule.
    with pytest.raises(ApiException) as status_refused:
        custom.replace_namespaced_custom_object_status(
            *KUBEVIRT, namespace, "virtualmachines", "vm-cirros", vm
        )
    assert status_refused.value.status == 422


def test_a_crd_put_without_resource_version_is_invalid(api: client.ApiClient) -> None:
    extensions: Api = client.ApiextensionsV1Api(api)
    crd = api.sanitize_for_serialization(
        extensions.read_custom_resource_definition("virtualmachines.kubevirt.io")
    )
    crd["metadata"].pop("resourceVersion")
    with pytest.raises(ApiException) as refused:
        extensions.replace_custom_resource_definition("virtualmachines.kubevirt.io", crd)
    assert refused.value.status == 422
    assert body_of(refused.value)["message"].startswith(
        'customresourcedefinitions.apiextensions.k8s.io "virtualmachines.kubevirt.io" is '
        "invalid: metadata.resourceVersion"
    )


def test_a_built_in_put_without_resource_version_replaces_the_current_one(
    core: Api, namespace: str
) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data", "finalizers": ["example.com/keep"]},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "",
            },
        },
    )
    current = core.read_namespaced_persistent_volume_claim("data", namespace)
    body = core.api_client.sanitize_for_serialization(current)
    body["metadata"].pop("resourceVersion")
    body["metadata"].pop("finalizers")
    replaced = core.replace_namespaced_persistent_volume_claim("data", namespace, body)
    assert replaced.metadata.finalizers is None
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)


def test_no_finalizer_may_be_added_once_deleting(core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "held", "finalizers": ["example.com/a"]},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "",
            },
        },
    )
    core.delete_namespaced_persistent_volume_claim("held", namespace)
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_persistent_volume_claim(
            "held", namespace, {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}}
        )
    status = body_of(refused.value)
    assert refused.value.status == 422
    assert status["message"] == (
        'PersistentVolumeClaim "held" is invalid: metadata.finalizers: Forbidden: no new '
        'finalizers can be added if the object is being deleted, found new finalizers '
        '[]string{"example.com/b"}'
    )
    assert status["details"]["causes"][0]["reason"] == "FieldValueForbidden"
    # Removing one is how deletion proceeds.
    core.patch_namespaced_persistent_volume_claim(
        "held", namespace, {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_persistent_volume_claim("held", namespace)
    assert gone.value.status == 404


def _claim(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def test_a_delete_with_another_uid_is_a_conflict_and_deletes_nothing(
    core: Api, namespace: str
) -> None:
    """DeleteOptions.preconditions.uid: the object of that uid or none (`rest.BeforeDelete`):
    a PVC made again under the same name is not the one a stale delete removes."""
    first = core.create_namespaced_persistent_volume_claim(namespace, _claim("again"))
    core.delete_namespaced_persistent_volume_claim("again", namespace)
    second = core.create_namespaced_persistent_volume_claim(namespace, _claim("again"))
    stale = first.metadata.uid
    with pytest.raises(ApiException) as refused:
        core.delete_namespaced_persistent_volume_claim(
            "again", namespace, body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid=stale)))
    status = body_of(refused.value)
    assert refused.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == (
        f'Operation cannot be fulfilled on PersistentVolumeClaim "again": the UID in the '
        f"precondition ({stale}) does not match the UID in record ({second.metadata.uid}). "
        "The object might have been deleted and then recreated")
    assert status["details"] == {"name": "again", "group": "", "kind": "PersistentVolumeClaim"}
    kept = core.read_namespaced_persistent_volume_claim("again", namespace)
    assert kept.metadata.uid == second.metadata.uid and kept.metadata.deletion_timestamp is None

    core.delete_namespaced_persistent_volume_claim(
        "again", namespace, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=second.metadata.uid)))
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_persistent_volume_claim("again", namespace)
    assert gone.value.status == 404


def test_a_custom_resource_delete_with_a_stale_resource_version_is_a_conflict(
    custom: Api, namespace: str
) -> None:
    vm = example("vm-cirros.yaml")
    made = custom.create_namespaced_custom_object(*KUBEVIRT, namespace, "virtualmachines", vm)
    name, stored = made["metadata"]["name"], made["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as refused:
        custom.delete_namespaced_custom_object(
            *KUBEVIRT, namespace, "virtualmachines", name,
            body={"preconditions": {"resourceVersion": "1"}})
    status = body_of(refused.value)
    assert refused.value.status == 409
    # The VM controller writes the status meanwhile: the record's version is any newer one.
    found = re.fullmatch(
        rf'Operation cannot be fulfilled on VirtualMachine\.kubevirt\.io "{name}": the '
        r"ResourceVersion in the precondition \(1\) does not match the ResourceVersion in "
        r"record \((\d+)\)\. The object might have been modified", status["message"])
    assert found is not None, status["message"]
    assert int(found.group(1)) >= int(stored)
    assert custom.get_namespaced_custom_object(*KUBEVIRT, namespace, "virtualmachines", name)
