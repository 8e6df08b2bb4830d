"""Watch streams and load, against a simulator started in this test's event loop.

In-process (the same code `python -m simulator` runs) so that the watch
history can be made short enough to expire, and so hundreds of concurrent
requests cost no process start-up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import simulator.store
from simulator.runtime import Options, RunningSimulator, start

PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def pvc(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
        },
    }


@pytest.fixture
async def running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningSimulator]:
    monkeypatch.setattr(simulator.store, "_HISTORY_LIMIT", 50)
    sim = await start(Options(port=0, kubeconfig=tmp_path / "kubeconfig", token="t0ken"))
    sim.ctx.bookmark_interval = 0.2
    yield sim
    await sim.stop()


@pytest.fixture
async def http(running: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        running.url, headers={"Authorization": "Bearer t0ken"}, connector=connector
    ) as session:
        yield session


async def read_events(
    response: aiohttp.ClientResponse, count: int, timeout: float = 5
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = await response.content.readline()
            if not line:
                break
            events.append(json.loads(line))
    return events


async def test_a_watch_from_an_expired_version_gets_410_as_an_error_event(
    running: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(PVCS) as answer:
        start_version = (await answer.json())["metadata"]["resourceVersion"]
    for index in range(60):  # more changes than the (shortened) history keeps
        async with http.post(PVCS, json=pvc(f"p{index}")) as answer:
            assert answer.status == 201
    async with http.get(PVCS, params={"watch": "1", "resourceVersion": start_version}) as stream:
        assert stream.status == 200
        events = await read_events(stream, 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_watch_filters_times_out_and_sends_bookmarks(
    running: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    params = {
        "watch": "true",
        "labelSelector": "app=a",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "1",
    }
    began = time.monotonic()
    async with http.get(PVCS, params=params) as stream:
        for name, app in (("x", "b"), ("y", "a")):
            async with http.post(PVCS, json=pvc(name, app=app)) as answer:
                assert answer.status == 201
        events = await read_events(stream, 100, timeout=5)
    elapsed = time.monotonic() - began
    assert 0.9 < elapsed < 4, elapsed  # timeoutSeconds ends the stream
    names = {e["object"]["metadata"]["name"] for e in events if e["type"] != "BOOKMARK"}
    assert names == {"y"}  # the selector keeps x out (y may be MODIFIED by the PV binder)
    assert events[0]["type"] == "ADDED"
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) > 0


async def test_table_watches_render_rows(
    running: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with http.post(PVCS, json=pvc("t1")) as answer:
        assert answer.status == 201
    async with http.get(
        PVCS, params={"watch": "1", "timeoutSeconds": "1"}, headers=accept
    ) as stream:
        events = await read_events(stream, 1)
    table = events[0]["object"]
    assert table["kind"] == "Table"
    assert table["rows"][0]["cells"][0] == "t1"
    assert table["columnDefinitions"][1]["name"] == "Status"


async def test_a_stopping_server_ends_its_watches(tmp_path: Path) -> None:
    sim = await start(Options(port=0, kubeconfig=tmp_path / "kc", token="t"))
    async with (
        aiohttp.ClientSession(sim.url, headers={"Authorization": "Bearer t"}) as session,
        session.get(PVCS, params={"watch": "1"}) as stream,
    ):
        assert sim.ctx.watches.open_count == 1
        began = time.monotonic()
        await sim.stop()
        assert await stream.content.read() == b""
        assert time.monotonic() - began < 3


async def test_hundreds_of_concurrent_requests_and_watches(
    running: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    watches = 100
    streams = [
        await http.get(
            PVCS, params={"watch": "1", "labelSelector": f"w={index % 10}", "timeoutSeconds": "30"}
        )
        for index in range(watches)
    ]
    try:
        began = time.monotonic()

        async def create(index: int) -> int:
            async with http.post(PVCS, json=pvc(f"load-{index}", w=str(index % 10))) as answer:
                return answer.status

        async def read(index: int) -> int:
            async with http.get(f"{PVCS}/load-{index}") as answer:
                return answer.status

        created = await asyncio.gather(*(create(index) for index in range(300)))
        assert created == [201] * 300
        fetched = await asyncio.gather(*(read(index) for index in range(300)))
        assert fetched == [200] * 300
        # Each watch selects one tenth of the objects: 30 ADDED events each.
        received = await asyncio.gather(
            *(read_events(stream, 30, timeout=20) for stream in streams)
        )
        assert all(len(events) == 30 for events in received)
        assert time.monotonic() - began < 30
        assert running.ctx.watches.open_count == watches
    finally:
        for stream in streams:
            stream.close()


async def test_objects_entering_and_leaving_a_selector_are_added_and_deleted(
    running: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    # Events: a kind no simulated controller writes, so every change here is the test's.
    events_path = "/api/v1/namespaces/default/events"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "moving", "labels": {"app": "in"}},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Test",
        "message": "moves in and out of a selector",
    }
    merge = {"Content-Type": "application/merge-patch+json"}
    async with http.post(events_path, json=event) as answer:
        assert answer.status == 201
    params = {"watch": "1", "labelSelector": "app=in", "timeoutSeconds": "5"}
    async with http.get(events_path, params=params) as stream:
        for app in ("out", "in"):
            body = json.dumps({"metadata": {"labels": {"app": app}}})
            async with http.patch(f"{events_path}/moving", data=body, headers=merge) as answer:
                assert answer.status == 200
        events = await read_events(stream, 3)
    assert [(e["type"], e["object"]["metadata"]["labels"]["app"]) for e in events] == [
        ("ADDED", "in"),
        ("DELETED", "out"),
        ("ADDED", "in"),
    ]
