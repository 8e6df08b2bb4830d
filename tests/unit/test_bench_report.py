"""The benchmarks page keeps each benchmark's section apart from the others."""

from pathlib import Path

import pytest

from bench.report import record_section


def test_sections_are_replaced_in_place_and_others_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nIntro prose.\n")
    record_section("freeze", "| a | 1 |", doc)
    record_section("history", "events: 60", doc)
    record_section("freeze", "| a | 2 |", doc)
    text = doc.read_text()
    assert "Intro prose." in text
    assert "| a | 2 |" in text and "| a | 1 |" not in text
    assert text.index("bench:freeze") < text.index("bench:history")
    assert text.count("<!-- bench:freeze -->") == 1


def test_bad_key_refused_and_nothing_written(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    with pytest.raises(ValueError):
        record_section("Bad Key", "x", doc)
    assert not doc.exists()
