"""Each benchmark's figures as one JSON file in docs/benchmarks/, the report's only source.

Why: docs/benchmarks.md and its plots are rendered from these files (bench/report.py), so
the wording and the plots can change without a rerun, and a rerun replaces its own
figures whole. A file holds the figures, the command that measured them, the machine
facts and the date; its `figures` are the benchmark's own (bench/render/ reads them).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "docs" / "benchmarks"
FORMAT = 1

# Each stored key and the command that measures it at full size (named in errors).
COMMANDS: dict[str, str] = {
    "freeze-window": ".venv/bin/python -m bench.freeze_window --runs 20 --disks 1 8 32",
    "freeze-takeover": ".venv/bin/python -m bench.freeze_takeover --kills 20",
    "history-events": ".venv/bin/python -m bench.history_economy --disks 1 8 64",
    "kubernetes-requests": ".venv/bin/python -m bench.api_economy --disks 1 8 32 --throttled 0",
    "orchestration": ".venv/bin/python -m bench.orchestration --sizes 100 500 --repeat 3",
    "orchestration-spread":
        ".venv/bin/python -m bench.orchestration --sizes 100 500 --namespaces 500",
    "worker-load": ".venv/bin/python -m bench.worker_load --snapshots 500",
    "throttled-client": ".venv/bin/python -m bench.api_economy --disks --throttled 80 "
                        "--qps 5 --burst 5 --failure-deadline 5m",
    "request-transport": ".venv/bin/python -m bench.request_transport --record",
    "under-load": ".venv/bin/python -m bench.under_load",
}


class RecordError(Exception):
    """A figures file is missing, unreadable, or not shaped as its benchmark writes it."""


@dataclass(frozen=True)
class Machine:
    """What the figures depend on besides the code: CPUs, memory, Python, and how busy
    the host was (the 1-minute load average at the start and the end, when known)."""

    cpus: int
    memory_gib: int
    python: str
    load_start: float | None = None
    load_end: float | None = None


@dataclass(frozen=True)
class Record:
    """One benchmark's stored figures and where they come from."""

    key: str
    command: str
    date: str  # YYYY-MM-DD, UTC
    machine: Machine
    code: str | None  # the commit measured, "<sha> with uncommitted changes", or unknown
    figures: dict[str, Any]


def path_of(key: str, folder: Path = RESULTS_DIR) -> Path:
    return folder / f"{key}.json"


def rerun_hint(key: str) -> str:
    command = COMMANDS.get(key)
    return f"run `{command}` to measure it" if command else "no benchmark stores this key"


def machine_now(load_start: float | None = None) -> Machine:
    """This host's facts now; LOAD_START is the load average the benchmark saw at its start."""
    return Machine(cpus=os.cpu_count() or 0, memory_gib=_memory_gib(),
                   python=platform.python_version(),
                   load_start=None if load_start is None else round(load_start, 2),
                   load_end=None if load_start is None else round(os.getloadavg()[0], 2))


def _memory_gib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1024 * 1024))
    except OSError:
        pass
    return 0


def code_now(repo: Path = REPO_ROOT) -> str | None:
    """The commit checked out, marked when tracked files outside docs/ differ from it (the
    figures then measure code that no commit holds); None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      ":(exclude)docs")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit} with uncommitted changes" if changed else commit


def new_record(key: str, command: str, figures: dict[str, Any],
               load_start: float | None = None) -> Record:
    """A record of figures measured just now on this host."""
    if key not in COMMANDS:
        raise ValueError(f"unknown benchmark key {key!r}; known: {', '.join(COMMANDS)}")
    return Record(key=key, command=command, date=datetime.now(UTC).date().isoformat(),
                  machine=machine_now(load_start), code=code_now(), figures=figures)


def save(record: Record, folder: Path = RESULTS_DIR) -> Path:
    """Write RECORD as folder/KEY.json, whole or not at all (a new file moved into place)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "benchmark": record.key, "command": record.command,
            "date": record.date, "code": record.code, "machine": asdict(record.machine),
            "figures": record.figures}
    path = path_of(record.key, folder)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path)
    return path


def load(key: str, folder: Path = RESULTS_DIR) -> Record:
    """The record stored under KEY, or RecordError saying what is wrong and how to fix it."""
    path = path_of(key, folder)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path} is missing: {rerun_hint(key)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path} cannot be read ({exc}): {rerun_hint(key)}") from exc
    try:
        if data["format"] != FORMAT or data["benchmark"] != key:
            raise ValueError(f"format {data['format']!r} of benchmark {data['benchmark']!r}, "
                             f"expected format {FORMAT} of {key!r}")
        machine = Machine(**data["machine"])
        figures = data["figures"]
        if not isinstance(figures, dict):
            raise ValueError("its figures are not an object")
        return Record(key=key, command=str(data["command"]), date=str(data["date"]),
                      machine=machine, code=data.get("code"), figures=figures)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{path} is not a benchmark record ({type(exc).__name__}: {exc}): "
                          f"{rerun_hint(key)}") from exc


class RecordSet:
    """The records of one folder, each read once, for the renderers."""

    def __init__(self, folder: Path = RESULTS_DIR) -> None:
        self.folder = folder
        self._read: dict[str, Record | None] = {}

    def get(self, key: str) -> Record:
        """KEY's record; RecordError when it is missing or broken."""
        if key not in self._read:
            self._read[key] = load(key, self.folder)
        found = self._read[key]
        if found is None:
            raise RecordError(f"{path_of(key, self.folder)} is missing: {rerun_hint(key)}")
        return found

    def optional(self, key: str) -> Record | None:
        """KEY's record, or None when the benchmark has not stored one; broken is an error."""
        if key not in self._read and not path_of(key, self.folder).exists():
            self._read[key] = None
        return self._read[key] if key in self._read else self.get(key)

    def loaded(self) -> list[Record]:
        """The records read so far, in the order first asked for."""
        return [found for found in self._read.values() if found is not None]
