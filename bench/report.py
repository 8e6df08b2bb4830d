"""Render docs/benchmarks.md and its plots from the figures stored in docs/benchmarks/*.json.

Why generated: the page is what a user reads to judge vmsnap's costs, so it must say what
the stored figures say and nothing else. Each benchmark stores its figures and renders
the whole page again (`record`); this module alone renders it from the stored figures,
measuring nothing:

    .venv/bin/python -m bench.report
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records import (
    RESULTS_DIR,
    Record,
    RecordError,
    RecordSet,
    new_record,
    path_of,
    rerun_hint,
    save,
)
from bench.render import economy, freeze, load, orchestration, takeover, transport, under_load
from bench.render.common import Plot, Section, anchor, compose, table

# The report's sections in order, each with the keys whose files it reads; a renderer
# answers None for a benchmark whose figures are not stored yet (its section is left out).
RENDERERS: tuple[tuple[tuple[str, ...], Callable[[RecordSet], Section | None]], ...] = (
    ((freeze.KEY,), freeze.section),
    ((takeover.KEY,), takeover.section),
    ((economy.HISTORY_KEY,), economy.history_section),
    ((economy.REQUESTS_KEY,), economy.requests_section),
    ((orchestration.KEY, orchestration.SPREAD_KEY), orchestration.section),
    ((load.WORKER_KEY,), load.worker_section),
    ((load.THROTTLED_KEY,), load.throttled_section),
    ((under_load.KEY,), under_load.section),
    ((transport.KEY,), transport.section),
)

NOTICE = ("<!-- Rendered by `.venv/bin/python -m bench.report` from docs/benchmarks/*.json: "
          "change those files or bench/render/, not this page. -->")
INTRO = """\
What a snapshot costs the guest (how long its filesystems stay frozen), Kubernetes (API
requests), Temporal (history events, and time against a bare workflow of the same shape)
and the worker (memory and CPU for a burst of snapshots), as measured by the benchmarks in
`bench/`.

Every benchmark starts a stack of its own on one host: the Temporal dev server (on
SQLite), the cluster simulator in place of Kubernetes, KubeVirt and the CSI driver, and
worker.py, each a separate process. They share the host's CPUs with the benchmark's
client, so the figures include their contention. The figures come from what the
simulator and the Temporal server record (the freeze log, the request log, each
VolumeSnapshot's `creationTime`, the workflow histories), not from what the workflow
reports about itself."""
HOW_TO = """\
Each section gives the command that measures it. A benchmark run with its record option
(on unless `--no-record` is given; `bench.request_transport` records with `--record`)
stores its figures in `docs/benchmarks/<name>.json` and renders this page and its plots
again; `.venv/bin/python -m bench.report` renders them from the stored figures without
measuring anything."""


@dataclass(frozen=True)
class Report:
    """The page's markdown and the plots it links to."""

    markdown: str
    plots: tuple[Plot, ...]


def doc_for(folder: Path) -> Path:
    """The page beside the folder of figures: docs/benchmarks/ -> docs/benchmarks.md."""
    return folder.with_suffix(".md")


def render_sections(records: RecordSet) -> list[Section]:
    """Every section, or RecordError naming the file whose figures do not fit."""
    sections = []
    for keys, render in RENDERERS:
        try:
            rendered = render(records)
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            files = ", ".join(str(path_of(k, records.folder)) for k in keys
                              if path_of(k, records.folder).exists())
            raise RecordError(f"{files}: the figures lack what the report needs "
                              f"({type(exc).__name__}: {exc}); {rerun_hint(keys[0])}") from exc
        if rendered is not None:
            sections.append(rendered)
    return sections


def machines_line(records: Sequence[Record]) -> str:
    """The hosts the figures come from, stated once when they are all alike."""
    hosts = sorted({(r.machine.cpus, r.machine.memory_gib, r.machine.python) for r in records})
    if len(hosts) != 1:
        return "The figures come from different hosts: each section names its own."
    cpus, memory, python = hosts[0]
    return (f"The figures below come from one host: {cpus} CPUs, {memory} GiB of memory, "
            f"Python {python}; each section gives its date and the commit measured.")


def summary(sections: Sequence[Section]) -> str:
    rows = [[f"[{v.heading or s.title}](#{anchor(v.heading or s.title)})",
             v.aim if v.met is not None else "none",
             v.figure, f"**{v.word}**" if v.met is not None else v.word]
            for s in sections for v in s.verdicts]
    return table(["benchmark", "aim", "figure", "met"], rows)


def build(folder: Path = RESULTS_DIR) -> Report:
    """The page and its plots from the records in FOLDER (nothing written)."""
    records = RecordSet(folder)
    sections = render_sections(records)
    parts = [NOTICE, "# Benchmarks", INTRO, machines_line(records.loaded()), HOW_TO,
             "## Summary", summary(sections)]
    for section in sections:
        links = "\n\n".join(f"![{p.alt}]({folder.name}/{p.filename})" for p in section.plots)
        parts += [f"## {section.title}", section.about, links, section.body]
    return Report(compose(*parts) + "\n", tuple(p for s in sections for p in s.plots))


def write(folder: Path = RESULTS_DIR) -> list[Path]:
    """Render the page and its plots from FOLDER's records; the files whose bytes changed."""
    from bench.render.plots import png

    report = build(folder)
    outputs: list[tuple[Path, bytes]] = []
    for plot in report.plots:
        try:
            outputs.append((folder / plot.filename, png(plot)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordError(f"{plot.filename} cannot be drawn from the figures in {folder} "
                              f"({type(exc).__name__}: {exc})") from exc
    outputs.append((doc_for(folder), report.markdown.encode()))
    changed = []
    for path, data in outputs:
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            changed.append(path)
    return changed


def record(key: str, command: str, figures: dict[str, Any], load_start: float | None = None,
           folder: Path = RESULTS_DIR) -> None:
    """Store a benchmark's figures measured just now, then render the page again. A page
    that cannot be rendered (another benchmark's file broken) leaves the figures stored."""
    path = save(new_record(key, command, figures, load_start), folder)
    print(f"figures stored in {path}")
    try:
        changed = write(folder)
    except RecordError as exc:
        print(f"{doc_for(folder)} not rendered: {exc}", file=sys.stderr)
        return
    for written in changed:
        print(f"rendered {written}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--folder", type=Path, default=RESULTS_DIR,
                        help="the folder of figures (the page is written beside it as "
                             "FOLDER.md; default docs/benchmarks)")
    args = parser.parse_args(argv)
    try:
        changed = write(args.folder)
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"rendered {path}")
    if not changed:
        print(f"{doc_for(args.folder)} and its plots already match the figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
