"""Writes whose documents the store keeps without a copy (`owned`) change no stored version.

A create, an update and a patch build their own document (decoded body, patch result),
prune it, default it and hand it to the store; a merge patch result is built without a
second copy. If any of those documents shared a part with a stored version, pruning or
stamping it would change that version in place: the keeper of every committed version
(see `test_controller_reads`) finds that. Each answer must also be what a GET then shows.
"""

from __future__ import annotations

import json
from typing import Any

from tests.simulator.test_controller_reads import (
    KUBEVIRT,
    PVCS,
    SNAPSHOTS,
    VersionKeeper,
    _get,
    demo,
)
from tests.simulator.test_read_views import Api

__all__ = ["demo"]  # the fixture, used by name

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


async def _write(api: Api, keeper: VersionKeeper, method: str, path: str, body: Any,
                 content_type: str = "application/json") -> dict[str, Any]:
    status, raw = await api.call(method, path, body, content_type)
    assert status in (200, 201), raw
    answer = json.loads(raw)
    assert keeper.changed() == [], (method, path)
    shown = await _get(api, path if method != "POST" else f"{path}/{answer['metadata']['name']}")
    if shown is not None and shown["metadata"]["resourceVersion"] == \
            answer["metadata"]["resourceVersion"]:
        assert shown == answer
    return answer


async def test_handed_over_documents_share_nothing_with_stored_versions(
    demo: tuple[Api, VersionKeeper],
) -> None:
    api, keeper = demo
    # The seeded VMs started (their DataVolumes adopted first): the PUT below names the
    # version of the write before it, which start-up work would otherwise overtake.
    assert await api.ctx.behaviours.settle()
    vm_path = f"{KUBEVIRT}/virtualmachines/web-1"
    before = await _get(api, vm_path)
    assert before is not None
    for round_ in range(3):
        patched = await _write(api, keeper, "PATCH", vm_path, {
            "metadata": {"annotations": {"vmsnap.io/round": str(round_)},
                         "unknownMeta": {"x": 1}},
            "spec": {"template": {"metadata": {"labels": {"round": str(round_)}}},
                     "unknownSpec": [1, 2]}}, MERGE)
        assert patched["metadata"]["annotations"]["vmsnap.io/round"] == str(round_)
        assert "unknownMeta" not in patched["metadata"] and "unknownSpec" not in patched["spec"]
        assert patched["spec"]["template"]["spec"] == before["spec"]["template"]["spec"]
    removed = await _write(api, keeper, "PATCH", vm_path,
                           {"metadata": {"annotations": {"vmsnap.io/round": None}}}, MERGE)
    assert "vmsnap.io/round" not in (removed["metadata"].get("annotations") or {})
    put = dict(removed)
    put["metadata"] = {**removed["metadata"], "labels": {"put": "yes"}}
    put["spec"] = {**removed["spec"], "unknownTop": True}
    answer = await _write(api, keeper, "PUT", vm_path, put)
    assert answer["metadata"]["labels"] == {"put": "yes"} and "unknownTop" not in answer["spec"]
    claim = f"{PVCS}/web-1-root"
    await _write(api, keeper, "PATCH", claim,
                 {"metadata": {"labels": {"a": "b"}, "finalizers": ["x.io/y"]}}, STRATEGIC)
    await _write(api, keeper, "PATCH", claim,
                 [{"op": "add", "path": "/metadata/labels/c", "value": "d"},
                  {"op": "remove", "path": "/metadata/finalizers"}], JSON_PATCH)
    created = await _write(api, keeper, "POST", SNAPSHOTS, {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "handed-over", "labels": {"k": "v"}, "unknownMeta": 1},
        "spec": {"source": {"persistentVolumeClaimName": "web-1-root"}, "unknown": {}}})
    assert "unknownMeta" not in created["metadata"] and "unknown" not in created["spec"]
    status = await _write(api, keeper, "PATCH", f"{vm_path}/status",
                          {"status": {"printableStatus": "Custom"}}, MERGE)
    assert status["metadata"]["resourceVersion"] != answer["metadata"]["resourceVersion"]
    assert len(keeper.kept) > 10
    assert keeper.changed() == []
