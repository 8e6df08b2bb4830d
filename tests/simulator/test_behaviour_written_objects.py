"""Everything the simulated controllers write is a valid object of its kind.

In-process (no HTTP): the simulator's own context on the demo and
storage-faults seeds, driven through snapshots, restores, a freeze, a pause
and a stop; then every stored object must pass its kind's schema with no
unknown field, as a real API server would demand of a controller's writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from simulator.context import SimulatorContext
from simulator.runtime import Options, build_context
from simulator.seeding import DEFAULT_NAMESPACES, ensure_namespace, load_seed_files
from tests.simulator.behaviour_support import BEHAVIOUR_SEEDS


def _create(
    ctx: SimulatorContext, group: str, plural: str, namespace: str | None, body: dict[str, Any]
) -> None:
    kind = ctx.registry.find(group, plural)
    assert kind is not None
    ctx.writer.create(kind, namespace, body, validation="Strict")


async def _until(probe: Any, timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {probe}"
        await asyncio.sleep(0.01)


async def test_every_object_the_controllers_write_is_valid() -> None:
    ctx = build_context(Options())
    try:
        for namespace in DEFAULT_NAMESPACES:
            ensure_namespace(ctx.writer, ctx.registry, namespace)
        load_seed_files(ctx.writer, ctx.registry, BEHAVIOUR_SEEDS)
        assert await ctx.behaviours.settle()
        snapshots = ctx.registry.find("snapshot.storage.k8s.io", "volumesnapshots")
        assert snapshots is not None
        for name, pvc, snapshot_class in (
            ("root", "web-1-root", None),
            ("data", "web-1-data-1", "csi-hostpath-snapclass"),
            ("broken", "web-1-data-2", "missing-class"),
        ):
            spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": pvc}}
            if snapshot_class:
                spec["volumeSnapshotClassName"] = snapshot_class
            _create(ctx, "snapshot.storage.k8s.io", "volumesnapshots", "demo",
                    {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                     "metadata": {"name": name}, "spec": spec})  # fmt: skip
        await ctx.behaviours.subresource(
            "demo", "virtualmachineinstances", "web-1", "freeze", {"unfreezeTimeout": "1m"}
        )
        await ctx.behaviours.subresource(
            "demo", "virtualmachineinstances", "legacy-1", "pause", None
        )
        await ctx.behaviours.subresource("demo", "virtualmachines", "db-1", "stop", None)
        await ctx.behaviours.subresource("demo", "virtualmachines", "batch-1", "start", None)

        def ready() -> bool:
            found = ctx.store.find(snapshots.resource, "demo", "root")
            return bool(found and (found.get("status") or {}).get("readyToUse"))

        await _until(ready)
        _create(ctx, "", "persistentvolumeclaims", "demo",
                {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": "restored"},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": "10Gi"}},
                          "dataSource": {"apiGroup": "snapshot.storage.k8s.io",
                                         "kind": "VolumeSnapshot", "name": "root"}}})  # fmt: skip
        await ctx.behaviours.subresource(
            "demo", "virtualmachineinstances", "web-1", "unfreeze", None
        )
        assert await ctx.behaviours.settle()
        await asyncio.sleep(0.5)

        checked = 0
        for kind in ctx.registry.kinds():
            items, _ = ctx.store.list(kind.resource)
            for obj in items:
                where = (
                    f"{kind.kind} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
                )
                assert kind.validate(obj) == [], where
                if kind.schema is not None:
                    assert kind.schema.unknown_fields(obj, prune=False) == [], where
                checked += 1
        kinds_written = {k.kind for k in ctx.registry.kinds() if ctx.store.list(k.resource)[0]}
        assert {"VolumeSnapshotContent", "VirtualMachineInstance", "Event"} <= kinds_written
        assert checked > 40
    finally:
        await ctx.behaviours.stop()
        ctx.registry.close()
