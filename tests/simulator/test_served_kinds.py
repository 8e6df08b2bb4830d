"""The kinds restore, clone and whole-VM snapshots meet besides VMs and PVCs.

`apps/v1` ControllerRevisions (a built-in kind, validated as the apps strategy
does), KubeVirt's `instancetype.kubevirt.io/v1beta1` kinds and its `KubeVirt`
CR (from the swagger), and CDI's `cdi.kubevirt.io/v1beta1` DataVolume (from
its vendored CRD), through the official client and kubectl's discovery.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.conftest import StartSim
from tests.support.sim import Sim

INSTANCETYPES = ("instancetype.kubevirt.io", "v1beta1")
CDI = ("cdi.kubevirt.io", "v1beta1")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
Api = Any


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(name="served-kinds")
    yield started
    started.process.stop()


def status_of(error: ApiException) -> dict[str, Any]:
    text = error.body if isinstance(error.body, str) else (error.body or b"").decode()
    decoded: dict[str, Any] = json.loads(text)
    return decoded


def raw(sim: Sim, method: str, path: str, body: Any = None, accept: str = "") -> tuple[int, Any]:
    """One request on the plain-HTTP side: (status, decoded body)."""
    headers = {"Authorization": f"Bearer {sim.token}", "Content-Type": "application/json"}
    if accept:
        headers["Accept"] = accept
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sim.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def revision(name: str, data: Any, number: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": name},
        "data": data,
        "revision": number,
    }


def test_controller_revisions_are_served_as_the_apps_group_serves_them(
    apps: Api, namespace: str
) -> None:
    created = apps.create_namespaced_controller_revision(
        namespace, revision("r1", {"spec": {"a": 1}}, 3)
    )
    assert created.revision == 3 and created.data == {"spec": {"a": 1}}
    listed = apps.list_namespaced_controller_revision(namespace).items
    assert [r.metadata.name for r in listed] == ["r1"]
    # The revision number may change; the data may not.
    body = apps.api_client.sanitize_for_serialization(created)
    body["revision"] = 4
    assert apps.replace_namespaced_controller_revision("r1", namespace, body).revision == 4
    body = apps.api_client.sanitize_for_serialization(
        apps.read_namespaced_controller_revision("r1", namespace)
    )
    body["data"] = {"spec": {"a": 2}}
    with pytest.raises(ApiException) as immutable:
        apps.replace_namespaced_controller_revision("r1", namespace, body)
    status = status_of(immutable.value)
    assert immutable.value.status == 422
    assert status["message"].startswith(
        'ControllerRevision.apps "r1" is invalid: data: Invalid value: runtime.RawExtension{'
    )
    assert status["message"].endswith(": field is immutable")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({k: v for k, v in revision("r2", {}).items() if k != "data"},
         "data: Required value: data is mandatory"),
        (revision("r3", {}, -1), "revision: Invalid value: -1: must be greater than or equal to 0"),
    ],
)
def test_controller_revisions_are_validated(
    sim: Sim, namespace: str, body: dict[str, Any], message: str
) -> None:
    # Raw: the generated client refuses a revision without data before sending it.
    status, answer = raw(
        sim, "POST", f"/apis/apps/v1/namespaces/{namespace}/controllerrevisions", body
    )
    assert status == 422
    assert answer["message"].endswith(message)


def test_controller_revision_table_names_the_controller(
    sim: Sim, apps: Api, namespace: str
) -> None:
    body = revision("r4", {"spec": {}})
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "name": "vm-1",
            "uid": str(uuid.uuid4()),
            "controller": True,
        }
    ]
    apps.create_namespaced_controller_revision(namespace, body)
    _, table = raw(
        sim, "GET", f"/apis/apps/v1/namespaces/{namespace}/controllerrevisions", accept=TABLE
    )
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Controller", "Revision", "Age"
    ]
    assert table["rows"][0]["cells"][:3] == ["r4", "virtualmachine.kubevirt.io/vm-1", 1]


def test_instancetypes_and_preferences_are_served(custom: Api, namespace: str) -> None:
    spec = {"cpu": {"guest": 2}, "memory": {"guest": "1Gi"}}
    created = custom.create_namespaced_custom_object(
        *INSTANCETYPES, namespace, "virtualmachineinstancetypes",
        {"kind": "VirtualMachineInstancetype", "metadata": {"name": "small"}, "spec": spec},
    )
    assert created["spec"] == spec and created["metadata"]["generation"] == 1
    custom.create_cluster_custom_object(
        *INSTANCETYPES, "virtualmachineclusterinstancetypes",
        {"kind": "VirtualMachineClusterInstancetype", "metadata": {"name": "u1.small"},
         "spec": spec},
    )
    custom.create_namespaced_custom_object(
        *INSTANCETYPES, namespace, "virtualmachinepreferences",
        {"kind": "VirtualMachinePreference", "metadata": {"name": "linux"},
         "spec": {"cpu": {"preferredCPUTopology": "cores"}}},
    )
    custom.create_cluster_custom_object(
        *INSTANCETYPES, "virtualmachineclusterpreferences",
        {"kind": "VirtualMachineClusterPreference", "metadata": {"name": "fedora"}, "spec": {}},
    )
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            *INSTANCETYPES, namespace, "virtualmachineinstancetypes",
            {"kind": "VirtualMachineInstancetype", "metadata": {"name": "bad"},
             "spec": {"cpu": {"guest": 1}}},
        )
    assert refused.value.status == 422 and "spec.memory" in status_of(refused.value)["message"]
    custom.delete_cluster_custom_object(*INSTANCETYPES, "virtualmachineclusterinstancetypes",
                                        "u1.small")
    custom.delete_cluster_custom_object(*INSTANCETYPES, "virtualmachineclusterpreferences",
                                        "fedora")


def test_discovery_lists_the_new_groups_with_kubevirt_and_cdi_names(sim: Sim) -> None:
    def resources(path: str) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in raw(sim, "GET", path)[1]["resources"]}

    instancetype = resources("/apis/instancetype.kubevirt.io/v1beta1")
    assert instancetype["virtualmachineinstancetypes"]["shortNames"] == [
        "vminstancetype", "vminstancetypes", "vmf", "vmfs"
    ]
    assert instancetype["virtualmachineclusterpreferences"]["namespaced"] is False
    assert "categories" not in instancetype["virtualmachineclusterpreferences"]
    cdi = resources("/apis/cdi.kubevirt.io/v1beta1")
    assert cdi["datavolumes"]["shortNames"] == ["dv", "dvs"]
    assert cdi["datavolumes"]["categories"] == ["all"]
    assert "datavolumes/status" in cdi
    assert "controllerrevisions" in resources("/apis/apps/v1")
    assert resources("/apis/kubevirt.io/v1")["kubevirts"]["shortNames"] == ["kv", "kvs"]


def test_data_volumes_are_validated_against_cdi_s_crd(custom: Api, namespace: str) -> None:
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            *CDI, namespace, "datavolumes",
            {"kind": "DataVolume", "metadata": {"name": "dv"},
             "spec": {"source": {"http": {}}, "storage": {}}},
        )
    assert refused.value.status == 422
    assert "spec.source.http.url: Required value" in status_of(refused.value)["message"]


def test_kubectl_gets_data_volumes_and_revisions_by_their_short_names(
    sim: Sim, custom: Api, apps: Api, namespace: str
) -> None:
    custom.create_namespaced_custom_object(
        *CDI, namespace, "datavolumes",
        {"kind": "DataVolume", "metadata": {"name": "disk"},
         "spec": {"source": {"blank": {}},
                  "storage": {"resources": {"requests": {"storage": "1Gi"}}}}},
    )
    apps.create_namespaced_controller_revision(namespace, revision("r1", {"spec": {}}, 2))
    table = sim.kubectl("get", "dv", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]
    assert table[1].split()[0] == "disk"
    revisions = sim.kubectl("get", "controllerrevisions", "-n", namespace).stdout.splitlines()
    assert revisions[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert revisions[1].split()[:3] == ["r1", "<none>", "2"]
