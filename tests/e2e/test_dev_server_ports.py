"""A dev server whose picked port is taken before it binds starts again on new ports.

The suite starts stacks in parallel: a port `free_port` picked can be taken by another
process before `temporal server start-dev` binds it (seen once: the UI port, in CI).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import starter.local_stack as local_stack
from starter.local_stack import StackError, start_dev_server


@pytest.fixture()
def taken_port() -> Iterator[int]:
    """A port some other process holds (bound and listening) while the test runs."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_taken_ui_port_is_picked_again(tmp_path: Path, taken_port: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = local_stack.free_port
    picks = iter([real_free_port(), taken_port])  # frontend free, UI port taken

    def pick() -> int:
        return next(picks, None) or real_free_port()

    monkeypatch.setattr(local_stack, "free_port", pick)
    server = start_dev_server(tmp_path, timeout=60)
    try:
        assert not server.ui_url.endswith(f":{taken_port}")
        assert "address already in use" in (tmp_path / "temporal.log").read_text()
    finally:
        server.stop()


def test_ports_given_are_not_changed(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(StackError, match="address already in use"):
        start_dev_server(tmp_path, port=local_stack.free_port(), ui_port=taken_port,
                         timeout=60)


def test_an_internal_port_taken_retries_the_ports_given_and_nothing_else_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev server picks its internal services' ports itself: one found taken is not
    the caller's port, so the same ports are tried again; a given port taken is final."""
    tried: list[tuple[int, int]] = []
    failures = [f"time=… level=ERROR msg=\"{local_stack.INTERNAL_BIND_FAILURE}\" error=\"listen "
                "tcp 127.0.0.1:46625: bind: address already in use\" service=worker"]

    def once(state_dir: Path, port: int, ui_port: int, *_: object) -> str:
        tried.append((port, ui_port))
        if failures:
            raise StackError(f"temporal could not bind an internal port:\n{failures.pop()}")
        return "started"

    monkeypatch.setattr(local_stack, "_start_dev_server_once", once)
    assert start_dev_server(tmp_path, port=7233, ui_port=8233) == "started"
    assert tried == [(7233, 8233), (7233, 8233)]
    failures.append("listen tcp 127.0.0.1:7233: bind: address already in use")
    tried.clear()
    with pytest.raises(StackError, match="7233"):
        start_dev_server(tmp_path, port=7233, ui_port=8233)
    assert tried == [(7233, 8233)]
