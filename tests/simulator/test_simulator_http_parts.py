"""Request naming, JSONPath, tables, patches and metadata rules of the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import jsonpath
from simulator.builtin_rules import parse_quantity, validate_persistent_volume_claim
from simulator.errors import ApiError
from simulator.metadata_validation import validate_metadata
from simulator.patches import apply_patch, patch_kind, strategic_merge
from simulator.request_paths import resolve
from simulator.tables import human_duration, wants_table


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        (
            "GET",
            "/api/v1/namespaces/ns/persistentvolumeclaims",
            {},
            ("list", "", "ns", "persistentvolumeclaims", "", ""),
        ),
        (
            "GET",
            "/api/v1/persistentvolumeclaims",
            {"watch": "true"},
            ("watch", "", "", "persistentvolumeclaims", "", ""),
        ),
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "ns", "namespaces", "ns", "")),
        (
            "PUT",
            "/api/v1/namespaces/ns/status",
            {},
            ("update", "", "ns", "namespaces", "ns", "status"),
        ),
        (
            "PATCH",
            "/apis/kubevirt.io/v1/namespaces/a/virtualmachines/vm/status",
            {},
            ("patch", "kubevirt.io", "a", "virtualmachines", "vm", "status"),
        ),
        (
            "PUT",
            "/apis/subresources.kubevirt.io/v1/namespaces/a/virtualmachineinstances/vm/freeze",
            {},
            ("update", "subresources.kubevirt.io", "a", "virtualmachineinstances", "vm", "freeze"),
        ),
        (
            "DELETE",
            "/apis/snapshot.storage.k8s.io/v1/namespaces/a/volumesnapshots",
            {},
            ("deletecollection", "snapshot.storage.k8s.io", "a", "volumesnapshots", "", ""),
        ),
        (
            "POST",
            "/apis/storage.k8s.io/v1/storageclasses",
            {},
            ("create", "storage.k8s.io", "", "storageclasses", "", ""),
        ),
        ("GET", "/api/v1/watch/namespaces/a/events", {}, ("watch", "", "a", "events", "", "")),
    ],
)
def test_requests_are_named_like_kube_apiserver(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    info, is_resource = resolve(method, path, query)
    assert is_resource
    assert (
        info.verb,
        info.group,
        info.namespace,
        info.resource,
        info.name,
        info.subresource,
    ) == expected


@pytest.mark.parametrize(
    "path", ["/version", "/api", "/apis/kubevirt.io/v1", "/openapi/v3", "/sim/requests"]
)
def test_non_resource_paths(path: str) -> None:
    info, is_resource = resolve("GET", path, {})
    assert not is_resource and info.verb == "get"


def test_jsonpath_subset() -> None:
    vmi = {
        "status": {
            "conditions": [
                {"type": "Paused", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "interfaces": [{"ipAddress": "10.0.0.1"}],
        }
    }
    assert jsonpath.evaluate(".status.conditions[?(@.type=='Ready')].status", vmi) == ["True"]
    assert jsonpath.evaluate(".status.interfaces[0].ipAddress", vmi) == ["10.0.0.1"]
    assert jsonpath.evaluate(".status.conditions[*].type", vmi) == ["Paused", "Ready"]
    assert jsonpath.evaluate(".status.nodeName", vmi) == []
    with pytest.raises(jsonpath.JsonPathError):
        jsonpath.evaluate(".status..x", vmi)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_table_negotiation() -> None:
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    assert wants_table(kubectl)
    assert not wants_table("application/json")
    assert not wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")


def test_strategic_merge_patch_directives() -> None:
    current: dict[str, Any] = {
        "metadata": {
            "finalizers": ["a"],
            "labels": {"x": "1", "y": "2"},
            "ownerReferences": [{"uid": "u1", "name": "one"}],
        },
        "spec": {"accessModes": ["ReadWriteOnce"]},
    }
    patched = strategic_merge(
        current,
        {
            "metadata": {
                "finalizers": ["b"],
                "labels": {"y": None},
                "ownerReferences": [{"uid": "u1", "name": "renamed"}, {"uid": "u2", "name": "two"}],
                "$setElementOrder/finalizers": ["a", "b"],
            },
            "spec": {"accessModes": ["ReadWriteMany"]},
        },
    )
    assert patched["metadata"]["finalizers"] == ["a", "b"]
    assert patched["metadata"]["labels"] == {"x": "1"}
    assert [r["name"] for r in patched["metadata"]["ownerReferences"]] == ["renamed", "two"]
    assert patched["spec"]["accessModes"] == ["ReadWriteMany"]
    removed = strategic_merge(patched, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]
    assert current["metadata"]["finalizers"] == ["a"]  # the input is left alone


def test_patch_content_types() -> None:
    assert patch_kind("application/merge-patch+json; charset=utf-8", builtin=False) == "merge"
    assert patch_kind("application/strategic-merge-patch+json", builtin=True) == "strategic"
    for media, builtin in [
        ("application/strategic-merge-patch+json", False),
        ("application/apply-patch+yaml", True),
    ]:
        with pytest.raises(ApiError) as raised:
            patch_kind(media, builtin=builtin)
        assert raised.value.code == 415


def test_failing_json_patch_test_is_422() -> None:
    with pytest.raises(ApiError) as raised:
        apply_patch("json", {"spec": {"a": 1}}, [{"op": "test", "path": "/spec/a", "value": 2}])
    assert raised.value.code == 422
    assert apply_patch(
        "json", {"spec": {"a": 1}}, [{"op": "replace", "path": "/spec/a", "value": 2}]
    ) == {"spec": {"a": 2}}


def test_metadata_rules() -> None:
    assert validate_metadata({"name": "ok", "labels": {"app.kubernetes.io/name": "vm-1"}}) == []
    errors = validate_metadata(
        {"labels": {"time": "12:00", "x" * 64: "v"}, "annotations": {"Bad Key": "v"}}
    )
    assert [f for f, _ in errors] == ["metadata.labels", "metadata.labels", "metadata.annotations"]
    assert validate_metadata({"name": "a.b"}, namespace_kind=True)[0][0] == "metadata.name"
    owners = {
        "ownerReferences": [
            {"apiVersion": "v1", "kind": kind, "name": kind, "uid": kind, "controller": True}
            for kind in ("A", "B")
        ]
    }
    assert any("Only one reference" in m for _, m in validate_metadata(owners))


def test_quantities() -> None:
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("500M") == 500e6
    assert parse_quantity("100m") == pytest.approx(0.1)
    assert parse_quantity(3) == 3
    assert parse_quantity("1e3") == 1000
    with pytest.raises(ValueError):
        parse_quantity("1 GB")


def test_pvc_strategy() -> None:
    pvc = {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }
    assert validate_persistent_volume_claim(pvc, None) == []
    assert [f for f, _ in validate_persistent_volume_claim({"spec": {}}, None)] == [
        "spec.accessModes",
        "spec.resources[storage]",
    ]
    grown = {
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}},
            "volumeName": "pv-1",
        }
    }
    assert validate_persistent_volume_claim(grown, pvc) == []  # binding and growing are allowed
    changed = {
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}
    }
    assert validate_persistent_volume_claim(changed, pvc)[0][0] == "spec"
