"""The under-load section: how long guests stay frozen when many VMs are snapshotted at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.aims import (
    UNDER_LOAD_AIM_CELLS,
    UNDER_LOAD_AIM_RATIO,
    UNDER_LOAD_AIM_THAW_MS,
    within,
)
from bench.records import RecordSet
from bench.render.common import TIMES, Plot, Section, Verdict, aim_line, compose, provenance, table
from bench.render.plots import AIM_STYLE, count_axis

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

KEY = "under-load"
TITLE = "Under load"
MODE_WORDS = {"per-disk": "per disk", "group": "group"}
MODE_COLOURS = {"per-disk": "tab:blue", "group": "tab:green"}
DISK_STYLES = ("o-", "s--", "^:", "d-.")


def setting_label(worker_env: Mapping[str, str]) -> str:
    """How a row of worker settings is named: its variables, or the defaults."""
    if not worker_env:
        return "worker.py's defaults"
    return ", ".join(f"{name}={value}" for name, value in worker_env.items())


def _three(figures: Mapping[str, float] | None, form: str) -> str:
    if figures is None:
        return "-"
    return " / ".join(format(figures[k], form) for k in ("median", "p95", "max"))


def cells_table(cells: Sequence[Mapping[str, Any]]) -> str:
    """One row per wave: mode, size, outcome, and the guests' figures."""
    rows = []
    for cell in cells:
        succeeded = f"{cell['succeeded']} of {cell['guests']}"
        if cell["mode"] == "group":
            succeeded += f" ({cell['group_cuts']} cut as a group)"
        cpu = cell["worker_cpu_per_snapshot_ms"]
        rows.append([MODE_WORDS.get(cell["mode"], cell["mode"]),
                     f"{cell['vms']} {TIMES} {cell['disks']}", succeeded,
                     _three(cell["frozen_ms"], ".0f"),
                     _three(cell["frozen_per_cut"], ".2f"),
                     _three(cell.get("storage_cut_ms"), ".0f"),
                     _three(cell.get("frozen_per_storage_cut"), ".2f"),
                     _three(cell["thaw_after_last_cut_ms"], ".0f"),
                     f"{cell['wall_s']:.1f} s", "-" if cpu is None else f"{cpu:.0f} ms"])
    return table(["mode", f"VMs {TIMES} disks", "Succeeded", "frozen ms (median / p95 / max)",
                  "frozen ÷ the class's cut (median / p95 / max)",
                  "storage's own cut ms (median / p95 / max)",
                  "frozen ÷ the storage's own cut (median / p95 / max)",
                  "thaw after the last cut ms (median / p95 / max)", "wall time",
                  "worker CPU per snapshot"], rows)


def find_cell(cells: Sequence[Mapping[str, Any]], mode: str, vms: int,
              disks: int) -> Mapping[str, Any] | None:
    return next((c for c in cells if (c["mode"], c["vms"], c["disks"]) == (mode, vms, disks)),
                None)


def _name(mode: str, vms: int, disks: int) -> str:
    return f"{vms}{TIMES}{disks} {MODE_WORDS.get(mode, mode)}"


def ratio_verdict(cells: Sequence[Mapping[str, Any]], suffix: str = "") -> Verdict:
    """Met when, in each aim cell, every snapshot Succeeded (a group cell: each cut as a
    group) and the p95 of frozen ÷ the storage's own cut is within the aim."""
    aim = (f"p95 of frozen ÷ the storage's own cut at most {UNDER_LOAD_AIM_RATIO} at "
           + " and ".join(_name(*c) for c in UNDER_LOAD_AIM_CELLS) + suffix)
    parts, met = [], True
    for mode, vms, disks in UNDER_LOAD_AIM_CELLS:
        name = _name(mode, vms, disks)
        cell = find_cell(cells, mode, vms, disks)
        if cell is None or cell.get("frozen_per_storage_cut") is None:
            parts.append(f"{name} not measured" if cell is None else f"{name}: none frozen")
            met = False
            continue
        p95 = cell["frozen_per_storage_cut"]["p95"]
        note = ""
        if cell["succeeded"] < cell["guests"]:
            note = f" ({cell['succeeded']} of {cell['guests']} Succeeded)"
        elif mode == "group" and cell["group_cuts"] < cell["guests"]:
            note = f" (only {cell['group_cuts']} of {cell['guests']} cut as a group)"
        parts.append(f"{name} {p95:.2f}{note}")
        met = met and not note and within(p95, UNDER_LOAD_AIM_RATIO)
    return Verdict(aim, "; ".join(parts), met)


def thaw_verdict(cells: Sequence[Mapping[str, Any]], suffix: str = "") -> Verdict:
    """Met when every wave's p95 thaw after the last cut is within the aim."""
    aim = (f"p95 of the thaw after the last cut at most {UNDER_LOAD_AIM_THAW_MS:.0f} ms in "
           f"every wave{suffix}")
    measured = [c for c in cells if c["thaw_after_last_cut_ms"] is not None]
    if not measured:
        return Verdict(aim, "no thaw measured", False)
    worst = max(measured, key=lambda c: c["thaw_after_last_cut_ms"]["p95"])
    over = [c for c in measured
            if not within(c["thaw_after_last_cut_ms"]["p95"], UNDER_LOAD_AIM_THAW_MS, 0)]
    figure = (f"worst p95 {worst['thaw_after_last_cut_ms']['p95']:.0f} ms at "
              f"{_name(worst['mode'], worst['vms'], worst['disks'])}")
    if over:
        figure += f"; {len(over)} of {len(measured)} waves over"
    return Verdict(aim, figure, not over and len(measured) == len(cells))


def verdicts(figures: Mapping[str, Any]) -> list[Verdict]:
    """The two aims for each worker setting measured (named when there are several)."""
    settings = figures["settings"]
    judged = []
    for setting in settings:
        suffix = (f" (worker: {setting_label(setting['worker_env'])})"
                  if len(settings) > 1 else "")
        judged += [ratio_verdict(setting["cells"], suffix),
                   thaw_verdict(setting["cells"], suffix)]
    return judged


def _draw_against_n(figures: Mapping[str, Any], key: str, aim: float, aim_label: str,
                    ylabel: str, title: str, floor: float) -> Any:
    """p95 of `key` against N, a line per mode and disk count, a panel per worker
    setting; `floor` is what the storage alone would give (a grey line)."""
    settings = figures["settings"]

    def on(figure: Figure) -> None:
        panels: list[Axes] = list(figure.subplots(1, len(settings), sharey=True,
                                                  squeeze=False)[0])
        for axes, setting in zip(panels, settings, strict=True):
            cells = setting["cells"]
            for mode in dict.fromkeys(c["mode"] for c in cells):
                for index, disks in enumerate(sorted({c["disks"] for c in cells})):
                    line = sorted((c["vms"], c[key]["p95"]) for c in cells
                                  if c["mode"] == mode and c["disks"] == disks
                                  and c.get(key) is not None)
                    if line:
                        axes.plot([n for n, _ in line], [v for _, v in line],
                                  DISK_STYLES[index % len(DISK_STYLES)],
                                  color=MODE_COLOURS.get(mode, "tab:grey"),
                                  label=f"{MODE_WORDS.get(mode, mode)}, {disks} disk"
                                        + ("" if disks == 1 else "s"))
            axes.axhline(aim, **AIM_STYLE, label=aim_label)
            axes.axhline(floor, color="grey", linewidth=0.8)
            count_axis(axes, sorted({c["vms"] for c in cells}), "VMs snapshotted at once")
            if len(settings) > 1:
                axes.set_title(setting_label(setting["worker_env"]), fontsize=8)
        panels[0].set_ylabel(ylabel)
        panels[0].set_ylim(bottom=floor * 0.9)
        figure.suptitle(title)
        handles, labels = panels[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=3)

    return on


def draw_ratio(figures: Mapping[str, Any]) -> Plot:
    return Plot("under-load-ratio.png",
                "p95 of frozen ÷ the storage's own cut against VMs snapshotted at once",
                _draw_against_n(figures, "frozen_per_storage_cut", UNDER_LOAD_AIM_RATIO,
                                f"aim: {UNDER_LOAD_AIM_RATIO}", "p95 frozen ÷ own cut",
                                "Frozen ÷ the storage's own cut (class: "
                                f"{figures['cut_ms']} ms), p95 per wave", floor=1.0))


def draw_thaw(figures: Mapping[str, Any]) -> Plot:
    return Plot("under-load-thaw.png",
                "p95 of the thaw after the last cut against VMs snapshotted at once",
                _draw_against_n(figures, "thaw_after_last_cut_ms", UNDER_LOAD_AIM_THAW_MS,
                                f"aim: {UNDER_LOAD_AIM_THAW_MS:.0f} ms", "p95 thaw after the "
                                "last cut (ms)", "Thaw after the last cut, p95 per wave",
                                floor=0.0))


def section(records: RecordSet) -> Section | None:
    """The section, once the benchmark has stored figures (until then, none)."""
    record = records.optional(KEY)
    if record is None:
        return None
    figures = record.figures
    judged = verdicts(figures)
    about = (
        "Many VMs snapshotted at once: how far does the load stretch each guest's freeze "
        "beyond what its storage needs? Waves of N running VMs of D disks each (a guest "
        "agent in each), all started at once through the client SDK, one wave after the "
        "other on one stack per worker setting (each setting starts from the same "
        "cluster), in two modes: `per disk` (`group_snapshot: never`, one "
        "VolumeSnapshot per disk) and `group` (`group_snapshot: auto`, with a default "
        "VolumeGroupSnapshotClass of the same driver: one VolumeGroupSnapshot cuts all of a "
        f"VM's disks at once). The storage cuts {figures['cut_ms']} ms after each "
        "VolumeSnapshot or VolumeGroupSnapshot is created.\n\n"
        "Per guest, from the simulator's records: the time it stayed frozen (its freeze "
        "log: the freeze call to the unfreeze call), that time against the class's cut "
        "latency, the storage's own cut (its slowest VolumeSnapshot or VolumeGroupSnapshot, "
        "from the create's arrival in the request log to its `creationTime`: the simulator "
        "shares the machine, so its cuts come late under load, and that lateness is the "
        "storage's, not the worker's), that time against the storage's own cut (1.00 is "
        "the floor; the aim judges this one), and its thaw after the last "
        "cut of its disks (the unfreeze against the last VolumeSnapshot's or the "
        "VolumeGroupSnapshot's `creationTime`). Per wave: its wall time (first start to "
        "last result), the snapshots that Succeeded, and the worker's CPU (user + system, "
        "from /proc, its freeze process's included) per snapshot.\n\n"
        "The worker runs every cut that freezes in its freeze process, with "
        "`VMSNAP_MAX_FREEZES_IN_FLIGHT` activity slots (0: one per activity slot, 32); "
        "the other snapshots wait in the freeze task queue before their freeze "
        "(docs/production.md, \"Freeze admission: the freeze process\").")
    parts = []
    for setting in figures["settings"]:
        parts += [f"Worker: {setting_label(setting['worker_env'])}.",
                  cells_table(setting["cells"])]
    parts += [aim_line(v) for v in judged]
    parts.append(provenance(record))
    return Section(TITLE, about, compose(*parts), tuple(judged),
                   (draw_ratio(figures), draw_thaw(figures)))
