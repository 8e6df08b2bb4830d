"""Controllers read the stored objects themselves (no copies): they must never change them.

A stored object is shared with every reader (GET and LIST answers, watch events, the
JSON cache), so a controller that changed one in place would change what clients see
without a new resourceVersion. A watcher keeps a deep copy of every committed version;
after a scenario that runs every controller (a VM started, frozen, paused, snapshotted,
restored from, stopped) each version must still equal its copy.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from simulator.documents import copy_document
from simulator.runtime import Options, build_context
from simulator.seeding import DEFAULT_NAMESPACES, ensure_namespace, load_seed_files
from simulator.server import Server
from simulator.store import Store, WatchEvent
from starter.local_stack import REPO_ROOT
from tests.simulator.test_read_views import Api

DEMO_SEED = REPO_ROOT / "simulator" / "seeds" / "demo.yaml"
KUBEVIRT = "/apis/kubevirt.io/v1/namespaces/demo"
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1/namespaces/demo"
SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1/namespaces/demo/volumesnapshots"
PVCS = "/api/v1/namespaces/demo/persistentvolumeclaims"


class VersionKeeper:
    """Deep copies of every committed version, to find one changed after the fact."""

    def __init__(self, store: Store) -> None:
        self.kept: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.unsubscribe = store.subscribe(self._keep)

    def _keep(self, event: WatchEvent) -> None:
        self.kept.append((event.object, copy_document(event.object)))

    def changed(self) -> list[str]:
        return [
            f"{obj.get('kind')} {obj['metadata'].get('name')} "
            f"rv {kept['metadata'].get('resourceVersion')}"
            for obj, kept in self.kept
            if obj != kept
        ]


@pytest.fixture
async def demo() -> AsyncIterator[tuple[Api, VersionKeeper]]:
    ctx = build_context(Options())
    keeper = VersionKeeper(ctx.store)
    server = TestServer(Server(ctx).app(), host="127.0.0.1")
    try:
        for namespace in DEFAULT_NAMESPACES:
            ensure_namespace(ctx.writer, ctx.registry, namespace)
        load_seed_files(ctx.writer, ctx.registry, [DEMO_SEED])
        await server.start_server()
        async with ClientSession() as session:
            yield Api(server, session, ctx), keeper
    finally:
        keeper.unsubscribe()
        await server.close()
        await ctx.behaviours.stop()
        ctx.watches.shutdown()
        ctx.registry.close()


async def _until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _get(api: Api, path: str) -> Any:
    status, raw = await api.call("GET", path)
    return None if status == 404 else json.loads(raw)


async def test_no_controller_changes_a_stored_object(
    demo: tuple[Api, VersionKeeper],
) -> None:
    api, keeper = demo

    async def phase(name: str) -> str:
        vmi = await _get(api, f"{KUBEVIRT}/virtualmachineinstances/{name}")
        return str(((vmi or {}).get("status") or {}).get("phase") or "")

    async def running() -> bool:
        return await phase("web-1") == "Running"

    await _until(running, "web-1 running")
    vmi_path = f"{SUBRESOURCES}/virtualmachineinstances/web-1"
    for action, body in (("freeze", {"unfreezeTimeout": "60s"}), ("unfreeze", {}),
                         ("pause", {}), ("unpause", {})):
        status, raw = await api.call("PUT", f"{vmi_path}/{action}", body)
        assert status == 200, (action, raw)
        assert keeper.changed() == [], action  # after each: a later step could undo a change
    await api.ok("POST", SNAPSHOTS, {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "web-1-root-snap"},
        "spec": {"source": {"persistentVolumeClaimName": "web-1-root"}}})

    async def ready() -> bool:
        found = await _get(api, f"{SNAPSHOTS}/web-1-root-snap")
        return bool(((found or {}).get("status") or {}).get("readyToUse"))

    await _until(ready, "the snapshot ready")
    assert keeper.changed() == []
    await api.ok("POST", PVCS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "web-1-root-restored"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "csi-hostpath-sc",
                 "resources": {"requests": {"storage": "10Gi"}},
                 "dataSource": {"apiGroup": "snapshot.storage.k8s.io",
                                "kind": "VolumeSnapshot", "name": "web-1-root-snap"}}})

    async def bound() -> bool:
        found = await _get(api, f"{PVCS}/web-1-root-restored")
        return ((found or {}).get("status") or {}).get("phase") == "Bound"

    await _until(bound, "the restored claim bound")
    assert keeper.changed() == []
    await api.ok("DELETE", f"{SNAPSHOTS}/web-1-root-snap")

    async def snapshot_gone() -> bool:
        return await _get(api, f"{SNAPSHOTS}/web-1-root-snap") is None

    await _until(snapshot_gone, "the snapshot deleted")
    assert keeper.changed() == []
    status, raw = await api.call("PUT", f"{SUBRESOURCES}/virtualmachines/web-1/stop", {})
    assert status == 200, raw

    async def stopped() -> bool:
        return await _get(api, f"{KUBEVIRT}/virtualmachineinstances/web-1") is None

    await _until(stopped, "web-1 stopped")
    assert len(keeper.kept) > 50
    assert keeper.changed() == []


async def test_the_keeper_sees_a_version_changed_in_place(
    demo: tuple[Api, VersionKeeper],
) -> None:
    api, keeper = demo
    pvcs = api.kind("", "persistentvolumeclaims").resource
    stored = api.ctx.store.view(pvcs, "demo", "web-1-root")
    stored["metadata"]["labels"] = {"changed": "in-place"}
    assert keeper.changed() == ["PersistentVolumeClaim web-1-root rv "
                                f"{stored['metadata']['resourceVersion']}"]


async def test_no_group_snapshot_controller_changes_a_stored_object(
    demo: tuple[Api, VersionKeeper],
) -> None:
    api, keeper = demo
    groups = "/apis/groupsnapshot.storage.k8s.io/v1/namespaces/demo/volumegroupsnapshots"
    await api.ok("POST", groups, {
        "apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot",
        "metadata": {"name": "web"},
        "spec": {"source": {"selector": {"matchLabels": {"app": "web"}}}}})

    async def ready() -> Any:
        found = await _get(api, f"{groups}/web")
        return found if ((found or {}).get("status") or {}).get("readyToUse") else None

    group = await _until(ready, "the group ready")
    # The demo seed's default class for the hostpath driver is the one found.
    assert group["spec"]["volumeGroupSnapshotClassName"] == "csi-hostpath-groupsnapclass"
    assert keeper.changed() == []
    await api.ok("DELETE", f"{groups}/web")

    async def members_gone() -> bool:
        found = await _get(api, SNAPSHOTS)
        return await _get(api, f"{groups}/web") is None and not found["items"]

    await _until(members_gone, "the group and its members deleted")
    assert keeper.changed() == []
