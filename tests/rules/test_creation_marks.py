"""The creation mark's text: written once, read back exactly, and nothing else is a mark."""

from __future__ import annotations

import pytest

from rules.creation_marks import CreationMark, read_mark


def test_a_mark_reads_back_as_written() -> None:
    mark = CreationMark(cluster="east", workflow_id="restore/east/ns/web", run_id="r-1")
    assert mark.text() == ('{"cluster":"east","run_id":"r-1",'
                           '"workflow_id":"restore/east/ns/web"}')
    assert read_mark(mark.text()) == mark


@pytest.mark.parametrize("value", [
    None, "", "east/restore/east/ns/web/r-1", "{}", '{"cluster": "east"}',
    '{"cluster": "", "workflow_id": "w"}', '{"cluster": "e", "workflow_id": "w", "x": 1}',
    "[1, 2]",
])
def test_anything_else_is_no_mark(value: str | None) -> None:
    assert read_mark(value) is None
