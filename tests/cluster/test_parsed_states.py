"""A watch's states are parsed once per resourceVersion of each object (cluster.waiting)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cluster.snapshots import volume_snapshot_state
from cluster.waiting import ParsedStates


def snapshot(name: str, version: str, cut: bool = False) -> dict[str, Any]:
    status = {"creationTime": "2026-01-01T00:00:00Z"} if cut else {}
    return {"metadata": {"name": name, "resourceVersion": version}, "status": status}


def test_a_state_is_parsed_again_only_when_its_object_changes() -> None:
    parsed: list[str] = []

    def parse(obj: Mapping[str, Any]) -> Any:
        parsed.append(f"{obj['metadata']['name']}@{obj['metadata'].get('resourceVersion')}")
        return volume_snapshot_state(obj)

    state_of = ParsedStates(parse)
    first = state_of(snapshot("a", "1"))
    assert state_of(snapshot("a", "1")) is first
    state_of(snapshot("b", "1"))
    later = state_of(snapshot("a", "2", cut=True))
    assert later.cut and not first.cut
    assert parsed == ["a@1", "b@1", "a@2"]


def test_an_object_without_a_version_is_parsed_every_time() -> None:
    calls: list[int] = []

    def parse(obj: Mapping[str, Any]) -> int:
        calls.append(1)
        return len(calls)

    state_of = ParsedStates(parse)
    unversioned = {"metadata": {"name": "a"}}
    assert (state_of(unversioned), state_of(unversioned)) == (1, 2)
