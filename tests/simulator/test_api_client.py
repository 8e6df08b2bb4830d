"""The simulator's REST semantics through the official `kubernetes` client (and raw HTTP).

One simulator process (no seed) for the module; each test works in its own
namespace so the tests stay independent.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.conftest import REFERENCE_EXAMPLES, StartSim
from tests.support.sim import Sim

SNAPSHOTS = ("snapshot.storage.k8s.io", "v1")
KUBEVIRT = ("kubevirt.io", "v1")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
# The generated client's signatures ask for pydantic models, but it takes plain dicts (what
# the adapter sends) at run time; tests use dicts, so its APIs are typed loosely here.
Api = Any


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Iterator[Sim]:
    started = start_sim(name="api-client")
    yield started
    started.process.stop()


def raw(
    sim: Sim,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, list[str]], Any]:
    """One HTTP request on the simulator's plain-HTTP side: (status, headers, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is None:
        token = sim.token
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(sim.url + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer, raw_body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer, raw_body = error.code, error.headers, error.read()
    found: dict[str, list[str]] = {}
    for key, value in answer.items():
        found.setdefault(key.lower(), []).append(value)
    if not raw_body:
        return status, found, None
    try:
        return status, found, json.loads(raw_body)
    except ValueError:
        return status, found, raw_body.decode()


def body_of(error: ApiException) -> str:
    """The Status the server answered, as text."""
    return error.body if isinstance(error.body, str) else (error.body or b"").decode()


def pvc(name: str, storage: str = "1Gi", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, **metadata},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
    }


def volume_snapshot(name: str, source: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": {"source": source},
    }


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REFERENCE_EXAMPLES / name).read_text())
    return loaded


# ---- authentication, discovery, OpenAPI ------------------------------------------------


def test_requests_without_the_token_are_401_statuses(sim: Sim) -> None:
    for path in ("/api/v1/namespaces", "/version", "/sim/requests", "/apis"):
        for token in ("", "wrong-token"):
            status, _, body = raw(sim, "GET", path, token=token)
            assert status == 401, (path, token)
            assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
    status, _, _ = raw(sim, "GET", "/healthz", token="")
    assert status == 200


def test_kubeconfig_speaks_tls_with_its_own_authority(sim: Sim) -> None:
    kubeconfig = yaml.safe_load(sim.kubeconfig.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://")
    assert kubeconfig["contexts"][0]["context"]["namespace"] == "default"
    # Without the CA the certificate is not trusted: the client really verifies it.
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(cluster["server"] + "/healthz", timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_discovery_lists_the_kinds_with_short_names_and_subresources(
    api: client.ApiClient,
) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.32")
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    for group in (
        "storage.k8s.io",
        "snapshot.storage.k8s.io",
        "kubevirt.io",
        "subresources.kubevirt.io",
        "apiextensions.k8s.io",
        "vmsnap.io",
    ):
        assert group in groups, group
    resources = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert resources["persistentvolumeclaims"].short_names == ["pvc"]
    assert "persistentvolumeclaims/status" in resources
    assert resources["namespaces"].namespaced is False
    kubevirt = {
        r.name: r for r in client.CustomObjectsApi(api).get_api_resources(*KUBEVIRT).resources
    }
    assert kubevirt["virtualmachines"].short_names == ["vm", "vms"]
    assert kubevirt["virtualmachines"].categories == ["all"]
    assert "virtualmachines/status" in kubevirt
    assert "virtualmachineinstances/status" not in kubevirt  # KubeVirt has none for VMIs
    snapshots = {
        r.name: r for r in client.CustomObjectsApi(api).get_api_resources(*SNAPSHOTS).resources
    }
    assert snapshots["volumesnapshots"].short_names == ["vs"]
    assert snapshots["volumesnapshotclasses"].namespaced is False
    subresources = {
        r.name
        for r in client.CustomObjectsApi(api)
        .get_api_resources("subresources.kubevirt.io", "v1")
        .resources
    }
    assert {
        "virtualmachineinstances/freeze",
        "virtualmachineinstances/unfreeze",
        "virtualmachines/start",
        "virtualmachines/stop",
    } <= subresources


def test_openapi_v3_hands_validation_to_the_server(sim: Sim) -> None:
    status, _, index = raw(sim, "GET", "/openapi/v3")
    assert status == 200
    url = index["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"]
    assert "?hash=" in url
    status, _, document = raw(sim, "GET", url)
    path = document["paths"]["/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}"]
    patch = path["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "kubevirt.io",
        "version": "v1",
        "kind": "VirtualMachine",
    }
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert "v1.VirtualMachine" in document["components"]["schemas"]
    assert raw(sim, "GET", "/openapi/v3/apis/nothing.example/v1")[0] == 404


# ---- reads and writes ------------------------------------------------------------------


def test_create_get_list_with_selectors(core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(namespace, pvc("a", labels={"tier": "db"}))
    core.create_namespaced_persistent_volume_claim(namespace, pvc("b", labels={"tier": "web"}))
    created = core.read_namespaced_persistent_volume_claim("a", namespace)
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.spec.volume_mode == "Filesystem"  # defaulted, as a real server does
    names = lambda items: sorted(i.metadata.name for i in items)  # noqa: E731
    assert names(core.list_namespaced_persistent_volume_claim(namespace).items) == ["a", "b"]
    assert names(
        core.list_namespaced_persistent_volume_claim(namespace, label_selector="tier=db").items
    ) == ["a"]
    assert names(
        core.list_namespaced_persistent_volume_claim(
            namespace, label_selector="tier in (db,web),tier!=web"
        ).items
    ) == ["a"]
    assert names(
        core.list_namespaced_persistent_volume_claim(
            namespace, field_selector="metadata.name=b"
        ).items
    ) == ["b"]
    everywhere = core.list_persistent_volume_claim_for_all_namespaces(label_selector="tier")
    assert {(i.metadata.namespace, i.metadata.name) for i in everywhere.items} >= {
        (namespace, "a"),
        (namespace, "b"),
    }
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_persistent_volume_claim(namespace, field_selector="spec.volumeName=x")
    assert refused.value.status == 400 and "field label not supported" in body_of(refused.value)


def test_resource_versions_grow_and_stale_writes_conflict(core: Api, namespace: str) -> None:
    first = core.create_namespaced_persistent_volume_claim(namespace, pvc("c"))
    stale = core.read_namespaced_persistent_volume_claim("c", namespace)
    stale.metadata.labels = {"x": "1"}
    updated = core.replace_namespaced_persistent_volume_claim("c", namespace, stale)
    assert int(updated.metadata.resource_version) > int(first.metadata.resource_version)
    stale.metadata.labels = {"x": "2"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_persistent_volume_claim("c", namespace, stale)
    assert conflict.value.status == 409
    assert json.loads(body_of(conflict.value))["reason"] == "Conflict"
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_persistent_volume_claim(namespace, pvc("c"))
    assert exists.value.status == 409
    assert json.loads(body_of(exists.value))["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_persistent_volume_claim("nope", namespace)
    assert missing.value.status == 404 and json.loads(body_of(missing.value))["kind"] == "Status"


def test_generate_name_dry_run_and_unknown_namespace(core: Api, namespace: str) -> None:
    made = core.create_namespaced_persistent_volume_claim(namespace, pvc("", generateName="gen-"))
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) > 4
    core.create_namespaced_persistent_volume_claim(namespace, pvc("dry"), dry_run="All")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_persistent_volume_claim("dry", namespace)
    assert missing.value.status == 404
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_persistent_volume_claim("no-such-namespace", pvc("x"))
    assert no_namespace.value.status == 404
    assert json.loads(body_of(no_namespace.value))["details"]["kind"] == "namespaces"


def test_merge_and_json_patches(custom: Api, namespace: str) -> None:
    custom.create_namespaced_custom_object(
        *KUBEVIRT, namespace, "virtualmachines", example("vm-cirros.yaml")
    )
    patched = custom.patch_namespaced_custom_object(
        *KUBEVIRT,
        namespace,
        "virtualmachines",
        "vm-cirros",
        {"metadata": {"labels": {"p": "merge"}}},
    )
    assert patched["metadata"]["labels"]["p"] == "merge"
    api_client = custom.api_client
    json_patch = [
        {"op": "test", "path": "/metadata/labels/p", "value": "merge"},
        {"op": "replace", "path": "/metadata/labels/p", "value": "json"},
    ]
    patched = custom.patch_namespaced_custom_object(
        *KUBEVIRT,
        namespace,
        "virtualmachines",
        "vm-cirros",
        json_patch,
        _content_type="application/json-patch+json",
    )
    assert patched["metadata"]["labels"]["p"] == "json"
    with pytest.raises(ApiException) as failed_test:
        custom.patch_namespaced_custom_object(
            *KUBEVIRT,
            namespace,
            "virtualmachines",
            "vm-cirros",
            json_patch,
            _content_type="application/json-patch+json",
        )
    assert failed_test.value.status == 422
    with pytest.raises(ApiException) as strategic:
        custom.patch_namespaced_custom_object(
            *KUBEVIRT,
            namespace,
            "virtualmachines",
            "vm-cirros",
            {"metadata": {}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert strategic.value.status == 415  # custom resources take no strategic merge patch
    assert api_client is not None


def test_strategic_merge_patch_of_a_builtin_kind(core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace, pvc("smp", finalizers=["example.com/a"])
    )
    # The client sends a dict as application/strategic-merge-patch+json: finalizers merge.
    patched = core.patch_namespaced_persistent_volume_claim(
        "smp", namespace, {"metadata": {"finalizers": ["example.com/b"], "labels": {"l": "v"}}}
    )
    assert patched.metadata.finalizers == ["example.com/a", "example.com/b"]
    assert patched.metadata.labels == {"l": "v"}
    core.patch_namespaced_persistent_volume_claim(
        "smp", namespace, {"metadata": {"finalizers": None}}
    )


def test_status_subresource_separates_spec_and_status(custom: Api, namespace: str) -> None:
    snapshot = volume_snapshot("st", {"persistentVolumeClaimName": "missing"})
    snapshot["status"] = {"readyToUse": True}
    created = custom.create_namespaced_custom_object(
        *SNAPSHOTS, namespace, "volumesnapshots", snapshot
    )
    assert created.get("status", {}).get("readyToUse") is not True  # status is dropped on create
    current = custom.get_namespaced_custom_object(*SNAPSHOTS, namespace, "volumesnapshots", "st")
    current["status"] = {"readyToUse": True, "restoreSize": "1Gi"}
    current["metadata"]["labels"] = {"ignored": "on-status-writes"}
    updated = custom.replace_namespaced_custom_object_status(
        *SNAPSHOTS, namespace, "volumesnapshots", "st", current
    )
    assert updated["status"]["readyToUse"] is True
    assert "labels" not in updated["metadata"]
    patched = custom.patch_namespaced_custom_object_status(
        *SNAPSHOTS, namespace, "volumesnapshots", "st", {"status": {"restoreSize": "2Gi"}}
    )
    # (the simulated snapshot controller may add status.error: the PVC does not exist)
    assert (patched["status"]["readyToUse"], patched["status"]["restoreSize"]) == (True, "2Gi")
    main = custom.patch_namespaced_custom_object(
        *SNAPSHOTS, namespace, "volumesnapshots", "st", {"status": {"readyToUse": False}}
    )
    assert main["status"]["readyToUse"] is True  # the main resource ignores status


def test_invalid_volume_snapshots_are_422_naming_the_field(custom: Api, namespace: str) -> None:
    for source in ({}, {"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}):
        with pytest.raises(ApiException) as refused:
            custom.create_namespaced_custom_object(
                *SNAPSHOTS, namespace, "volumesnapshots", volume_snapshot("bad", source)
            )
        assert refused.value.status == 422
        status = json.loads(body_of(refused.value))
        assert status["reason"] == "Invalid"
        assert [c["field"] for c in status["details"]["causes"]] == ["spec.source"]
        assert "exactly one of" in status["message"]
    custom.create_namespaced_custom_object(
        *SNAPSHOTS,
        namespace,
        "volumesnapshots",
        volume_snapshot("good", {"persistentVolumeClaimName": "a"}),
    )
    with pytest.raises(ApiException) as immutable:
        custom.patch_namespaced_custom_object(
            *SNAPSHOTS,
            namespace,
            "volumesnapshots",
            "good",
            {"spec": {"source": {"persistentVolumeClaimName": "b"}}},
        )
    assert immutable.value.status == 422
    assert "spec.source.persistentVolumeClaimName" in body_of(immutable.value)


def test_field_validation_strict_warn_ignore(sim: Sim, namespace: str) -> None:
    path = f"/apis/snapshot.storage.k8s.io/v1/namespaces/{namespace}/volumesnapshots"
    body = volume_snapshot("fv", {"persistentVolumeClaimName": "a"})
    body["spec"]["sourcee"] = {}
    status, _, answer = raw(sim, "POST", path + "?fieldValidation=Strict", body)
    assert status == 400
    assert 'unknown field "spec.sourcee"' in answer["message"]
    assert raw(sim, "GET", f"{path}/fv")[0] == 404  # refused writes change nothing
    status, headers, answer = raw(sim, "POST", path, body)  # default: Warn
    assert status == 201
    assert "sourcee" not in answer["spec"]
    assert any('unknown field \\"spec.sourcee\\"' in w for w in headers.get("warning", []))
    body["metadata"]["name"] = "fv2"
    status, headers, answer = raw(sim, "POST", path + "?fieldValidation=Ignore", body)
    assert status == 201 and "warning" not in headers and "sourcee" not in answer["spec"]
    assert raw(sim, "POST", path + "?fieldValidation=Sloppy", body)[0] == 400


def test_kubevirt_objects_are_checked_against_the_swagger(custom: Api, namespace: str) -> None:
    vm = example("vm-cirros.yaml")
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = 7
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(*KUBEVIRT, namespace, "virtualmachines", vm)
    assert refused.value.status == 422
    assert "spec.template.spec.domain.devices.disks[0].disk.bus" in body_of(refused.value)
    vm = example("vm-cirros.yaml")
    vm["spec"]["running"] = False
    with pytest.raises(ApiException) as webhook:
        custom.create_namespaced_custom_object(*KUBEVIRT, namespace, "virtualmachines", vm)
    assert webhook.value.status == 422 and "mutually exclusive" in body_of(webhook.value)


def test_labels_are_validated_like_a_real_server(core: Api, namespace: str) -> None:
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_persistent_volume_claim(
            namespace, pvc("l", labels={"when": "12:00"})
        )
    assert refused.value.status == 422 and "metadata.labels" in body_of(refused.value)


# ---- deletion: finalizers, garbage collection ------------------------------------------


def test_finalizers_hold_deletion_until_removed(core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace, pvc("held", finalizers=["example.com/hold"])
    )
    core.delete_namespaced_persistent_volume_claim("held", namespace)
    held = core.read_namespaced_persistent_volume_claim("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_persistent_volume_claim(
        "held", namespace, {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_persistent_volume_claim("held", namespace)
    assert gone.value.status == 404


def test_owner_deletion_removes_dependents_unless_orphaned(
    core: Api, custom: Api, namespace: str
) -> None:
    owner = custom.create_namespaced_custom_object(
        *KUBEVIRT, namespace, "virtualmachines", example("vm-cirros.yaml")
    )
    reference = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    core.create_namespaced_persistent_volume_claim(
        namespace, pvc("dependent", ownerReferences=[reference])
    )
    custom.delete_namespaced_custom_object(*KUBEVIRT, namespace, "virtualmachines", "vm-cirros")
    with pytest.raises(ApiException) as collected:
        core.read_namespaced_persistent_volume_claim("dependent", namespace)
    assert collected.value.status == 404

    owner = custom.create_namespaced_custom_object(
        *KUBEVIRT, namespace, "virtualmachines", example("vm-cirros.yaml")
    )
    reference["uid"] = owner["metadata"]["uid"]
    core.create_namespaced_persistent_volume_claim(
        namespace, pvc("orphan", ownerReferences=[reference])
    )
    custom.delete_namespaced_custom_object(
        *KUBEVIRT, namespace, "virtualmachines", "vm-cirros", propagation_policy="Orphan"
    )
    kept = core.read_namespaced_persistent_volume_claim("orphan", namespace)
    assert not kept.metadata.owner_references


def test_delete_collection_by_label(core: Api, namespace: str) -> None:
    for name, tier in (("d1", "x"), ("d2", "x"), ("d3", "y")):
        core.create_namespaced_persistent_volume_claim(namespace, pvc(name, labels={"tier": tier}))
    core.delete_collection_namespaced_persistent_volume_claim(namespace, label_selector="tier=x")
    left = core.list_namespaced_persistent_volume_claim(namespace).items
    assert [p.metadata.name for p in left] == ["d3"]


# ---- watch -----------------------------------------------------------------------------


def test_watch_from_a_resource_version(core: Api, namespace: str) -> None:
    start = core.list_namespaced_persistent_volume_claim(namespace).metadata.resource_version
    core.create_namespaced_persistent_volume_claim(namespace, pvc("w1"))
    core.patch_namespaced_persistent_volume_claim(
        "w1", namespace, {"metadata": {"labels": {"a": "b"}}}
    )
    core.delete_namespaced_persistent_volume_claim("w1", namespace)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_persistent_volume_claim,
        namespace,
        resource_version=start,
        timeout_seconds=1,
    ):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen[0] == ("ADDED", "w1")
    assert ("DELETED", "w1") in seen
    assert all(kind in ("ADDED", "MODIFIED", "DELETED") for kind, _ in seen)


def test_watch_without_a_version_starts_with_the_current_state(core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(namespace, pvc("now", labels={"w": "1"}))
    core.create_namespaced_persistent_volume_claim(namespace, pvc("other"))
    events = list(
        watch.Watch().stream(
            core.list_namespaced_persistent_volume_claim,
            namespace,
            label_selector="w=1",
            timeout_seconds=1,
        )
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "now")]


# ---- other verbs, tables, CRDs, the admin side -----------------------------------------


def test_unsupported_verbs_are_405(sim: Sim, namespace: str) -> None:
    assert raw(sim, "DELETE", "/api/v1/namespaces")[0] == 405  # no deletecollection of namespaces
    assert (
        raw(sim, "POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/x", pvc("x"))[0]
        == 405
    )
    assert (
        raw(sim, "POST", "/apis/kubevirt.io/v1/virtualmachines", example("vm-cirros.yaml"))[0]
        == 405
    )
    status, _, body = raw(
        sim,
        "GET",
        f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/x/freeze",
    )
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    assert raw(sim, "GET", "/apis/kubevirt.io/v1/namespaces/x/virtualmachines/y/nosuch")[0] == 404


def test_tables_carry_the_printer_columns(sim: Sim, core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(namespace, pvc("tab"))
    status, _, table = raw(
        sim,
        "GET",
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        headers={"Accept": TABLE},
    )
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:6] == [
        "Name",
        "Status",
        "Volume",
        "Capacity",
        "Access Modes",
        "StorageClass",
    ]
    assert table["rows"][0]["cells"][0] == "tab"
    assert table["rows"][0]["object"]["metadata"]["name"] == "tab"
    status, _, table = raw(
        sim,
        "GET",
        f"/apis/snapshot.storage.k8s.io/v1/namespaces/{namespace}/volumesnapshots",
        headers={"Accept": TABLE},
    )
    assert [c["name"] for c in table["columnDefinitions"]][:3] == [
        "Name",
        "ReadyToUse",
        "SourcePVC",
    ]


def test_paging_with_limit_and_continue(core: Api, namespace: str) -> None:
    for index in range(5):
        core.create_namespaced_persistent_volume_claim(namespace, pvc(f"page-{index}"))
    names, token = [], None
    while True:
        page = core.list_namespaced_persistent_volume_claim(namespace, limit=2, _continue=token)
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"page-{index}" for index in range(5)]


def test_a_crd_created_through_the_api_serves_its_kind(
    api: client.ApiClient, namespace: str
) -> None:
    extensions: Api = client.ApiextensionsV1Api(api)
    custom: Api = client.CustomObjectsApi(api)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1, "default": 3}
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    created = extensions.create_custom_resource_definition(crd)
    assert {c.type for c in created.status.conditions} >= {"Established", "NamesAccepted"}
    widget = custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        namespace,
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}},
    )
    assert widget["spec"]["size"] == 3  # structural defaulting
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(
            "example.com",
            "v1",
            namespace,
            "widgets",
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "z"},
                "spec": {"size": 0},
            },
        )
    assert invalid.value.status == 422 and "spec.size" in body_of(invalid.value)
    extensions.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as gone:
        custom.list_namespaced_custom_object("example.com", "v1", namespace, "widgets")
    assert gone.value.status == 404
    assert any(
        c.metadata.name == "volumesnapshots.snapshot.storage.k8s.io"
        for c in extensions.list_custom_resource_definition().items
    )


def test_the_request_log_names_each_call(sim: Sim, core: Api, namespace: str) -> None:
    _, _, mark = raw(sim, "GET", "/sim/requests?since=999999999")
    core.create_namespaced_persistent_volume_claim(namespace, pvc("logged"))
    core.read_namespaced_persistent_volume_claim("logged", namespace)
    core.patch_namespaced_persistent_volume_claim(
        "logged", namespace, {"metadata": {"labels": {"a": "b"}}}
    )
    core.list_namespaced_persistent_volume_claim(namespace)
    core.delete_namespaced_persistent_volume_claim("logged", namespace)
    with pytest.raises(ApiException):
        core.read_namespaced_persistent_volume_claim("logged", namespace)
    _, _, answer = raw(sim, "GET", f"/sim/requests?since={mark['next']}")
    entries = [e for e in answer["items"] if e["namespace"] == namespace]
    assert [(e["verb"], e["name"], e["status"]) for e in entries] == [
        ("create", "", 201),
        ("get", "logged", 200),
        ("patch", "logged", 200),
        ("list", "", 200),
        ("delete", "logged", 200),
        ("get", "logged", 404),
    ]
    assert all(e["resource"] == "persistentvolumeclaims" and e["group"] == "" for e in entries)
    # The create names its object as an audit event's objectRef does; no other verb does.
    assert [e["created"] for e in entries] == ["logged", "", "", "", "", ""]
    assert not any(e["path"].startswith("/sim") for e in answer["items"])


def test_faults_are_wired_in_before_handling(sim: Sim, core: Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(namespace, pvc("faulty"))
    rule = {
        "verb": "get",
        "resource": "persistentvolumeclaims",
        "namespace": namespace,
        "error": 500,
    }
    status, _, _ = raw(sim, "PUT", "/sim/faults", {"rules": [rule]})
    assert status == 200
    try:
        with pytest.raises(ApiException) as injected:
            core.read_namespaced_persistent_volume_claim("faulty", namespace)
        assert injected.value.status == 500
        core.list_namespaced_persistent_volume_claim(namespace)  # other verbs are untouched
    finally:
        assert raw(sim, "DELETE", "/sim/faults")[0] == 200
    assert (
        core.read_namespaced_persistent_volume_claim("faulty", namespace).metadata.name == "faulty"
    )
    status, _, body = raw(sim, "PUT", "/sim/faults", {"rules": [{"error": "no-such-error"}]})
    assert status == 400 and body["kind"] == "Status"


def test_a_claim_without_a_class_gets_the_default_class(
    api: client.ApiClient, core: Api, namespace: str
) -> None:
    storage: Api = client.StorageV1Api(api)
    name = f"default-{namespace}"
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"}
    storage.create_storage_class(
        {"metadata": {"name": name, "annotations": annotations}, "provisioner": "example.com/csi"}
    )
    try:
        made = core.create_namespaced_persistent_volume_claim(namespace, pvc("defaulted"))
        assert made.spec.storage_class_name == name
        explicit = pvc("explicit")
        explicit["spec"]["storageClassName"] = ""  # an explicit "" means no class at all
        kept = core.create_namespaced_persistent_volume_claim(namespace, explicit)
        assert kept.spec.storage_class_name == ""
    finally:
        assert storage.delete_storage_class(name).metadata.name == name


def test_kubevirt_subresources_reach_the_simulated_kubevirt(sim: Sim, namespace: str) -> None:
    base = f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}"
    status, _, body = raw(
        sim, "PUT", f"{base}/virtualmachineinstances/ghost/freeze", {"unfreezeTimeout": "1m"}
    )
    assert status == 404 and body["kind"] == "Status"  # answered by the guest agent simulation
    status, _, body = raw(sim, "PUT", f"{base}/virtualmachines/ghost/start", {})
    assert status == 404 and body["kind"] == "Status"
    assert raw(sim, "PUT", f"{base}/virtualmachineinstances/ghost/vnc", {})[0] == 404  # not routed
    _, _, log = raw(sim, "GET", "/sim/requests")
    freeze = [
        e for e in log["items"] if e["subresource"] == "freeze" and e["namespace"] == namespace
    ]
    assert freeze[0]["verb"] == "update" and freeze[0]["group"] == "subresources.kubevirt.io"
