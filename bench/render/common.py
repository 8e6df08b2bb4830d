"""What every section of the benchmarks report is made of, and the markdown helpers they share.

Why: seven benchmarks render seven sections; one layout (what it measures, plot, figures,
aim and verdict, command, machine) keeps the report readable as one document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.records import Record

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Plot:
    """One PNG next to the report: its file name, its alt text, and what draws it."""

    filename: str
    alt: str
    draw: Callable[[Figure], None]


@dataclass(frozen=True)
class Verdict:
    """An aim, the figure it is judged on, and whether the figure meets it (None: no aim)."""

    aim: str
    figure: str
    met: bool | None
    heading: str = ""  # the summary names this part of a section, not the whole section

    @property
    def word(self) -> str:
        return {True: "yes", False: "no", None: "-"}[self.met]


@dataclass(frozen=True)
class Section:
    """One benchmark's part of the report: its heading, what it measures and why (shown
    above its plots), its figures, aims and provenance (below them), its summary rows."""

    title: str
    about: str
    body: str
    verdicts: tuple[Verdict, ...]
    plots: tuple[Plot, ...] = ()


def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def anchor(title: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces dashed."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def plural(count: int, word: str, words: str = "") -> str:
    """'1 disk', '8 disks'; WORDS where adding an s is wrong ('activities')."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def disks(count: int) -> str:
    return plural(count, "disk")


def joined(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def aim_line(verdict: Verdict, detail: str = "") -> str:
    """The aim as a sentence and the verdict computed for it."""
    if verdict.met is None:
        return f"Aim: none; {verdict.aim}."
    return f"Aim: {verdict.aim}. Met: **{verdict.word}**: {detail or verdict.figure}."


def provenance(record: Record) -> str:
    """The exact command and the facts of the run the figures come from."""
    machine = record.machine
    facts = [f"{machine.cpus} CPUs", f"{machine.memory_gib} GiB of memory",
             f"Python {machine.python}"]
    if machine.load_start is not None and machine.load_end is not None:
        facts.append(f"load average {machine.load_start:.1f} at the start and "
                     f"{machine.load_end:.1f} at the end")
    code = f"commit {record.code}" if record.code else "not recorded"
    return "\n".join([
        "Command:", "", f"    {record.command}", "",
        f"Machine: {', '.join(facts)}. Date: {record.date}. Code: {code}.",
    ])


def compose(*parts: str) -> str:
    """Paragraphs, blank-line separated, empty ones left out."""
    return "\n\n".join(part.strip("\n") for part in parts if part.strip())
