"""The store's cheap paths change nothing a client sees.

Reads hand out the stored objects themselves (never changed in place) and their JSON
cached per version; an update validates only the top-level properties it changes. Each
test pins one way that could go wrong: a stale cached answer, a caller's change leaking
into the store, bytes that differ from a plain encoding, an error missed or reordered.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from simulator.context import SimulatorContext
from simulator.errors import ApiError
from simulator.registry import Kind
from simulator.resource_types import ResourceType
from simulator.runtime import Options, build_context
from simulator.schemas import KindSchema
from simulator.seeding import DEFAULT_NAMESPACES, ensure_namespace
from simulator.selectors import label_matcher
from simulator.server import Server
from simulator.store import Store
from tests.support.schemas import crd_schema, reference_definitions, whole_document_errors

PVCS = "/api/v1/namespaces/views/persistentvolumeclaims"
SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1/namespaces/views/volumesnapshots"


class Api:
    """HTTP against an in-process simulator (its real server and middleware)."""

    def __init__(self, server: TestServer, session: ClientSession, ctx: SimulatorContext) -> None:
        self.server, self.session, self.ctx = server, session, ctx

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.ctx.token}", "Content-Type": content_type}
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, str(self.server.make_url(path)),
                                        data=data, headers=headers) as answer:
            return answer.status, await answer.read()

    async def ok(self, method: str, path: str, body: Any = None,
                 content_type: str = "application/json") -> Any:
        status, raw = await self.call(method, path, body, content_type)
        assert status in (200, 201), raw
        return json.loads(raw)

    def kind(self, group: str, plural: str) -> Kind:
        found = self.ctx.registry.find(group, plural)
        assert found is not None
        return found


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    ctx = build_context(Options())
    server = TestServer(Server(ctx).app(), host="127.0.0.1")
    try:
        for namespace in (*DEFAULT_NAMESPACES, "views"):
            ensure_namespace(ctx.writer, ctx.registry, namespace)
        await server.start_server()
        async with ClientSession() as session:
            yield Api(server, session, ctx)
    finally:
        await server.close()
        await ctx.behaviours.stop()
        ctx.watches.shutdown()
        ctx.registry.close()


def _pvc(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def _snapshot(name: str, claim: str) -> dict[str, Any]:
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "labels": {"vm": claim}},
            "spec": {"source": {"persistentVolumeClaimName": claim}}}


def _plain_list(api: Api, group: str, plural: str, metadata: dict[str, Any],
                items: list[dict[str, Any]]) -> bytes:
    """What the LIST answer was before the cache: json.dumps of the whole list."""
    kind = api.kind(group, plural)
    if kind.builtin:
        items = [{k: v for k, v in item.items() if k not in ("apiVersion", "kind")}
                 for item in items]
    return json.dumps({"kind": kind.list_kind, "apiVersion": kind.resource.api_version,
                       "metadata": metadata, "items": items}).encode()


async def test_list_answers_are_the_plain_encoding_byte_for_byte(api: Api) -> None:
    for index in range(4):
        await api.ok("POST", PVCS, _pvc(f"disk-{index}", tier="gold" if index % 2 else "bronze"))
        await api.ok("POST", SNAPSHOTS, _snapshot(f"snap-{index}", f"disk-{index}"))
    store = api.ctx.store
    for group, plural, path in (("", "persistentvolumeclaims", PVCS),
                                ("snapshot.storage.k8s.io", "volumesnapshots", SNAPSHOTS)):
        status, raw = await api.call("GET", path)
        assert status == 200
        items, rv = store.list(api.kind(group, plural).resource, "views")
        assert raw == _plain_list(api, group, plural, {"resourceVersion": rv}, items)
    # Built-in items carry no type meta in a LIST, but a GET of the same object does.
    listed = json.loads((await api.call("GET", PVCS))[1])["items"][0]
    got = await api.ok("GET", f"{PVCS}/{listed['metadata']['name']}")
    assert "kind" not in listed and got["kind"] == "PersistentVolumeClaim"
    assert {k: v for k, v in got.items() if k not in ("apiVersion", "kind")} == listed
    # Selectors and pages select from the same cached items.
    status, raw = await api.call("GET", f"{PVCS}?labelSelector=tier%3Dgold")
    gold, rv = store.list(api.kind("", "persistentvolumeclaims").resource, "views",
                          label_selector="tier=gold")
    assert [i["metadata"]["name"] for i in gold] == ["disk-1", "disk-3"]
    assert raw == _plain_list(api, "", "persistentvolumeclaims", {"resourceVersion": rv}, gold)
    page = await api.ok("GET", f"{PVCS}?limit=3")
    assert [i["metadata"]["name"] for i in page["items"]] == ["disk-0", "disk-1", "disk-2"]
    assert page["metadata"]["remainingItemCount"] == 1
    rest = await api.ok("GET", f"{PVCS}?limit=3&continue={page['metadata']['continue']}")
    assert [i["metadata"]["name"] for i in rest["items"]] == ["disk-3"]


async def test_a_list_or_get_after_a_write_shows_the_new_version(api: Api) -> None:
    await api.ok("POST", PVCS, _pvc("disk-a"))
    await api.ok("POST", PVCS, _pvc("disk-b"))
    before = await api.ok("GET", PVCS)  # fills the cache
    await api.ok("GET", f"{PVCS}/disk-a")
    patched = await api.ok("PATCH", f"{PVCS}/disk-a", {"metadata": {"labels": {"new": "yes"}}},
                           "application/merge-patch+json")
    after = await api.ok("GET", PVCS)
    changed = next(i for i in after["items"] if i["metadata"]["name"] == "disk-a")
    assert changed["metadata"]["labels"] == {"new": "yes"}
    assert changed["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    got = await api.ok("GET", f"{PVCS}/disk-a")
    assert got["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    # Deleted and created again under the same name: the old bytes must not come back.
    await api.ok("DELETE", f"{PVCS}/disk-a")
    recreated = await api.ok("POST", PVCS, _pvc("disk-a", again="1"))
    listed = await api.ok("GET", PVCS)
    names = {i["metadata"]["name"]: i for i in listed["items"]}
    assert names["disk-a"]["metadata"]["uid"] == recreated["metadata"]["uid"]
    assert names["disk-a"]["metadata"]["labels"] == {"again": "1"}
    gone = await api.ok("DELETE", f"{PVCS}/disk-b")
    assert gone["metadata"]["name"] == "disk-b"
    assert [i["metadata"]["name"] for i in (await api.ok("GET", PVCS))["items"]] == ["disk-a"]


async def test_a_list_by_label_follows_label_changes_deletes_and_namespaces(api: Api) -> None:
    """Equality terms narrow a LIST through the store's label index: it must follow every
    change of labels, every removal, and still apply the rest of the selector."""

    async def names(selector: str, path: str = PVCS) -> list[str]:
        answer = await api.ok("GET", f"{path}?labelSelector={selector}")
        return [i["metadata"]["name"] for i in answer["items"]]

    ensure_namespace(api.ctx.writer, api.ctx.registry, "elsewhere")
    other = "/api/v1/namespaces/elsewhere/persistentvolumeclaims"
    for name, tier in (("d-1", "gold"), ("d-2", "gold"), ("d-3", "bronze")):
        await api.ok("POST", PVCS, _pvc(name, tier=tier, app="db"))
    await api.ok("POST", other, _pvc("d-9", tier="gold", app="db"))
    assert await names("tier%3Dgold") == ["d-1", "d-2"]
    assert await names("tier%3D%3Dgold,app%3Ddb") == ["d-1", "d-2"]
    assert await names("tier%3Dgold,app!%3Ddb") == []
    assert await names("tier%3Dgold,app%20in%20(db)") == ["d-1", "d-2"]
    assert await names("tier%3Dnone") == []
    all_gold = await api.ok("GET", "/api/v1/persistentvolumeclaims?labelSelector=tier%3Dgold")
    # Across namespaces, in the collection's order (namespace, then name).
    assert [i["metadata"]["name"] for i in all_gold["items"]] == ["d-9", "d-1", "d-2"]
    await api.ok("PATCH", f"{PVCS}/d-1", {"metadata": {"labels": {"tier": "bronze"}}},
                 "application/merge-patch+json")
    await api.ok("PATCH", f"{PVCS}/d-3", {"metadata": {"labels": {"tier": "gold"}}},
                 "application/merge-patch+json")
    assert await names("tier%3Dgold") == ["d-2", "d-3"]
    assert await names("tier%3Dbronze") == ["d-1"]
    await api.ok("PATCH", f"{PVCS}/d-2", {"metadata": {"labels": {"tier": None}}},
                 "application/merge-patch+json")
    assert await names("tier%3Dgold") == ["d-3"]
    await api.ok("DELETE", f"{PVCS}/d-3")
    assert await names("tier%3Dgold") == []
    assert await names("app%3Ddb") == ["d-1", "d-2"]
    await api.ok("POST", PVCS, _pvc("d-3", tier="gold"))
    assert await names("tier%3Dgold") == ["d-3"]
    # The same answers as a scan of the whole collection.
    store = api.ctx.store
    resource = api.kind("", "persistentvolumeclaims").resource
    for selector in ("tier=gold", "app=db", "tier=bronze,app=db", "tier=gold,app!=db"):
        indexed, _ = store.list_view(resource, "views", selector)
        matches = label_matcher(selector)
        scanned = [o for o in store.list_view(resource, "views")[0] if matches(o)]
        assert indexed == scanned, selector


async def test_what_a_caller_holds_never_changes_the_store(api: Api) -> None:
    store = api.ctx.store
    resource = api.kind("", "persistentvolumeclaims").resource
    await api.ok("POST", PVCS, _pvc("disk-c"))
    got = store.get(resource, "views", "disk-c")
    got["metadata"]["labels"] = {"changed": "by-caller"}
    got["spec"]["resources"]["requests"]["storage"] = "9Gi"
    listed, _ = store.list(resource, "views")
    listed[0]["spec"]["accessModes"].append("ReadOnlyMany")
    answer = await api.ok("GET", f"{PVCS}/disk-c")
    assert answer["metadata"]["labels"] == {}
    assert answer["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert answer["spec"]["accessModes"] == ["ReadWriteOnce"]
    # A view handed out before a delete keeps the version it showed.
    view = store.view(resource, "views", "disk-c")
    shown = copy.deepcopy(view)
    store.delete(resource, "views", "disk-c")
    assert view == shown
    # A status write shares the unchanged spec with the version before: still no leak.
    snapshots = api.kind("snapshot.storage.k8s.io", "volumesnapshots").resource
    await api.ok("POST", SNAPSHOTS, _snapshot("snap-c", "disk-c"))
    first = store.view(snapshots, "views", "snap-c")
    first_copy = copy.deepcopy(first)
    written = store.get(snapshots, "views", "snap-c")
    written["status"] = {"readyToUse": False}
    result = store.update(snapshots, "views", "snap-c", written, subresource="status")
    result["spec"]["source"]["persistentVolumeClaimName"] = "mutated"
    assert first == first_copy
    assert store.view(snapshots, "views", "snap-c")["spec"] == first_copy["spec"]


async def test_status_only_writes_answer_the_same_errors(api: Api) -> None:
    await api.ok("POST", SNAPSHOTS, _snapshot("snap-d", "disk-d"))
    path = f"{SNAPSHOTS}/snap-d/status"
    bad_status = {"status": {"restoreSize": True, "readyToUse": "yes",
                             "error": {"message": 5}}}
    status, raw = await api.call("PATCH", path, bad_status, "application/merge-patch+json")
    assert status == 422
    causes = [(c["field"], c["message"]) for c in json.loads(raw)["details"]["causes"]]
    kind = api.kind("snapshot.storage.k8s.io", "volumesnapshots")
    stored = api.ctx.store.get(kind.resource, "views", "snap-d")
    full = kind.validate({**stored, "status": bad_status["status"]})  # no shortcut
    assert causes == full
    assert [f for f, _ in causes] == ["status.error.message", "status.readyToUse",
                                      "status.restoreSize"]
    # A valid status write goes through and shows up; an invalid one changed nothing.
    ok = await api.ok("PATCH", path, {"status": {"readyToUse": True, "restoreSize": 7}},
                      "application/merge-patch+json")
    assert (ok["status"]["readyToUse"], ok["status"]["restoreSize"]) == (True, 7)


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return reference_definitions()


@pytest.fixture(scope="module")
def content_schema(definitions: dict[str, Any]) -> KindSchema:
    return crd_schema("snapshot.storage.k8s.io_volumesnapshotcontents.yaml", definitions)


def _content() -> dict[str, Any]:
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": "c"},
            "spec": {"deletionPolicy": "Delete", "driver": "d", "source": {"volumeHandle": "h"},
                     "volumeSnapshotRef": {"name": "s", "namespace": "n"}},
            "status": {"readyToUse": True, "restoreSize": 1}}


@pytest.mark.parametrize("changed", [
    {"status": {"readyToUse": True, "restoreSize": True}},  # == the old value, not the same type
    {"status": {"readyToUse": 1, "restoreSize": 1}},
    {"status": {"readyToUse": True, "restoreSize": 1.0}},
    {"spec": {"deletionPolicy": "Delete", "driver": "d", "source": {"volumeHandle": "h"},
              "volumeSnapshotRef": {"name": "s", "namespace": "n"}, "sourceVolumeMode": 1}},
    {"spec": {"deletionPolicy": "Keep", "driver": "d", "source": {}}},
])
def test_equal_is_not_enough_to_skip_a_property(content_schema: KindSchema,
                                                changed: dict[str, Any]) -> None:
    valid = _content()
    assert content_schema.validate(valid) == []
    new = {**valid, **changed}
    expected = content_schema.validate(copy.deepcopy(new))
    assert expected, "each case is invalid"
    assert content_schema.validate(new, valid) == expected


def _stored_content() -> dict[str, Any]:
    content = _content()
    content["metadata"] = {
        "name": "c", "uid": "5b0f7c1e-1111-4222-8333-944455556666", "resourceVersion": "7",
        "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z",
        "labels": {"vm": "a"}, "finalizers": ["snapshot.storage.kubernetes.io/bound"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u"}]}
    return content


@pytest.mark.parametrize("metadata", [
    {"finalizers": ["a", 3]},
    {"finalizers": "one"},
    {"labels": {"vm": 1}, "annotations": {"x": None}},
    {"ownerReferences": [{"apiVersion": "v1", "kind": "X"}]},
    {"generation": True, "resourceVersion": 8},  # True == 1 for ==, not for the schema
    {"creationTimestamp": 5, "deletionGracePeriodSeconds": "0"},
    {"finalizers": ["snapshot.storage.kubernetes.io/bound", "more"], "labels": {"vm": "b"}},
])
def test_changed_metadata_fields_answer_the_whole_documents_errors(
        content_schema: KindSchema, metadata: dict[str, Any]) -> None:
    valid = _stored_content()
    assert content_schema.validate(valid) == []
    new = {**valid, "metadata": {**valid["metadata"], **metadata}}
    expected = whole_document_errors(content_schema, copy.deepcopy(new))
    assert content_schema.validate(new, valid) == expected
    assert content_schema.validate(new, valid) == expected  # and again, from the memo
    if metadata.get("labels") == {"vm": "b"}:
        assert expected == []
    else:
        assert expected


def test_a_changed_object_is_still_checked_as_a_whole(definitions: dict[str, Any]) -> None:
    """Below the top level too, skipping unchanged fields keeps the object's own rules."""
    schema = KindSchema.for_crd_version({
        "type": "object",
        "properties": {"status": {
            "type": "object", "required": ["phase"], "maxProperties": 2,
            "properties": {"phase": {"type": "string"}, "count": {"type": "integer"}}}},
    }, definitions)
    valid = {"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"},
             "status": {"phase": "Ready", "count": 1}}
    assert schema.validate(valid) == []
    for status in ({"count": 2}, {"phase": "Ready", "count": 2, "extra": 1}, {"phase": 3}):
        new = {**valid, "status": status}
        expected = whole_document_errors(schema, copy.deepcopy(new))
        assert expected
        assert schema.validate(new, valid) == expected


def test_rules_at_the_root_still_see_unchanged_properties(definitions: dict[str, Any]) -> None:
    schema = KindSchema.for_crd_version({
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.spec.size <= self.status.limit", "message": "over the limit"}],
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"limit": {"type": "integer"}}},
        },
    }, definitions)
    valid = {"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"},
             "spec": {"size": 5}, "status": {"limit": 10}}
    assert schema.validate(valid) == []
    lowered = {**valid, "status": {"limit": 3}}  # spec is the very same object
    over = [("<root>", 'Invalid value: "object": over the limit')]
    assert schema.validate(lowered, valid) == over
    assert schema.validate(lowered, valid) == schema.validate(copy.deepcopy(lowered))


def test_only_what_the_current_validator_passed_is_trusted() -> None:
    seen: list[dict[str, Any] | None] = []

    def permissive(obj: dict[str, Any], valid: dict[str, Any] | None) -> list[tuple[str, str]]:
        return []

    def strict(obj: dict[str, Any], valid: dict[str, Any] | None) -> list[tuple[str, str]]:
        seen.append(valid)
        bad = (obj.get("spec") or {}).get("size", 0) > 3
        skip = valid is not None and obj.get("spec") == valid.get("spec")
        return [("spec.size", "Invalid value: too big")] if bad and not skip else []

    def kind(validator: Any) -> ResourceType:
        return ResourceType("x.io", "v1", "things", "thing", "Thing", True,
                            subresources=("status",), validator=validator)

    namespaces = ResourceType("", "v1", "namespaces", "namespace", "Namespace", False)
    store = Store([namespaces, kind(permissive)])
    store.create(namespaces, None, {"metadata": {"name": "ns"}})
    store.create(kind(permissive), "ns", {"metadata": {"name": "t"}, "spec": {"size": 5}})
    store.register(kind(strict))  # a new schema: what the old one passed proves nothing
    with pytest.raises(ApiError) as refused:
        store.update(kind(strict), "ns", "t",
                     {"metadata": {"name": "t"}, "status": {"phase": "x"}}, subresource="status")
    assert refused.value.code == 422 and seen == [None]
    store.update(kind(strict), "ns", "t", {"metadata": {"name": "t"}, "spec": {"size": 2}})
    seen.clear()
    store.update(kind(strict), "ns", "t",
                 {"metadata": {"name": "t"}, "status": {"phase": "y"}}, subresource="status")
    assert seen and seen[0] is not None and seen[0]["spec"] == {"size": 2}
    # A write the store makes without validating (a delete held by finalizers) is not trusted.
    store.update(kind(strict), "ns", "t", {"metadata": {"name": "t", "finalizers": ["hold"]},
                                           "spec": {"size": 2}})
    store.delete(kind(strict), "ns", "t")
    seen.clear()
    store.update(kind(strict), "ns", "t",
                 {"metadata": {"name": "t", "finalizers": ["hold"]}, "status": {"phase": "z"}},
                 subresource="status")
    assert seen == [None]


async def test_watch_lines_are_the_plain_encoding_of_the_stored_version(api: Api) -> None:
    await api.ok("POST", PVCS, _pvc("disk-w", tier="gold"))
    headers = {"Authorization": f"Bearer {api.ctx.token}"}
    url = str(api.server.make_url(f"{PVCS}?watch=1&labelSelector=tier%3Dgold&timeoutSeconds=5"))
    async with api.session.get(url, headers=headers) as stream:
        added = json.loads(await stream.content.readline())
        assert added["type"] == "ADDED"
        patch = {"metadata": {"labels": {"tier": "gold", "n": "1"}}}
        changed = await api.ok("PATCH", f"{PVCS}/disk-w", patch, "application/merge-patch+json")
        line = await stream.content.readline()
        assert line == json.dumps({"type": "MODIFIED", "object": changed}).encode() + b"\n"
        # Leaving the selector arrives as DELETED, carrying the new version.
        gone = await api.ok("PATCH", f"{PVCS}/disk-w", {"metadata": {"labels": {"tier": "x"}}},
                            "application/merge-patch+json")
        line = await stream.content.readline()
        assert line == json.dumps({"type": "DELETED", "object": gone}).encode() + b"\n"
    got = await api.ok("GET", f"{PVCS}/disk-w")  # the bytes the watch cached
    assert got == gone
