"""Write a benchmark's figures into docs/benchmarks.md, in its own marked section.

Each benchmark owns one section between `<!-- bench:KEY -->` and
`<!-- /bench:KEY -->`; a rerun replaces only that section, so figures from
different benchmarks (and the prose around them) survive each other's runs.
"""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def record_section(key: str, markdown: str, doc: Path = BENCHMARKS_DOC) -> None:
    """Replace (or append) the section KEY of the benchmarks page with MARKDOWN."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", key):
        raise ValueError(f"section key {key!r} must be lower-case letters, digits and dashes")
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
