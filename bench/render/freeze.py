"""The freeze window section: how long the guest stays frozen against the storage's own cut."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.aims import FREEZE_AIM_DISKS, FREEZE_AIM_RATIO, within
from bench.records import RecordSet
from bench.render.common import TIMES, Plot, Section, Verdict, aim_line, compose, provenance, table
from bench.render.plots import AIM_STYLE, count_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KEY = "freeze-window"
TITLE = "Freeze window"


def figures_table(figures: dict[str, Any]) -> str:
    """One row per disk count: the window, the slowest cut, their ratio, what else it cost."""
    return table(
        ["disks", "window median / worst", "slowest cut median",
         "window ÷ slowest cut median / worst", "thaw after the last cut, median",
         "Kubernetes requests", "history events"],
        ([row["disks"], f"{row['window_median_ms']:.0f} / {row['window_worst_ms']:.0f} ms",
          f"{row['slowest_cut_median_ms']:.0f} ms",
          f"**{row['ratio_median']:.2f}** / **{row['ratio_worst']:.2f}**",
          f"{row['thaw_after_last_cut_median_ms']:.0f} ms", row["requests"],
          row["history_events"]] for row in figures["disks"]))


def verdict(figures: dict[str, Any]) -> Verdict:
    """Met when every run at the aim's disk count stays within the ratio (its worst does)."""
    aim = (f"at {FREEZE_AIM_DISKS} disks, the window is at most {FREEZE_AIM_RATIO} {TIMES} the "
           "slowest disk's cut, in every run")
    rows = [row for row in figures["disks"] if row["disks"] == FREEZE_AIM_DISKS]
    if not rows:
        return Verdict(aim, f"not measured at {FREEZE_AIM_DISKS} disks", False)
    row = rows[0]
    figure = (f"median {row['ratio_median']:.2f}, worst {row['ratio_worst']:.2f} of "
              f"{figures['runs']} runs")
    return Verdict(aim, figure, within(row["ratio_worst"], FREEZE_AIM_RATIO))


def draw(figures: dict[str, Any]) -> Plot:
    rows = figures["disks"]

    def on(figure: Figure) -> None:
        axes = figure.subplots()
        counts = [row["disks"] for row in rows]
        axes.plot(counts, [row["ratio_worst"] for row in rows], "o--", color="tab:orange",
                  label=f"worst of {figures['runs']} runs")
        axes.plot(counts, [row["ratio_median"] for row in rows], "o-", color="tab:blue",
                  label="median")
        axes.axhline(FREEZE_AIM_RATIO, **AIM_STYLE,
                     label=f"aim at {FREEZE_AIM_DISKS} disks: {FREEZE_AIM_RATIO}")
        axes.axhline(1.0, color="grey", linewidth=0.8)
        count_axis(axes, counts, "disks per VM")
        axes.set_ylabel("freeze window ÷ slowest cut")
        axes.set_ylim(bottom=0.9)
        axes.set_title(f"Freeze window against disk count ({figures['cut_ms']} ms cut per disk)")
        axes.legend(loc="upper left")

    return Plot("freeze-window.png", "Freeze window ÷ slowest cut against disks per VM", on)


def section(records: RecordSet) -> Section:
    record = records.get(KEY)
    figures = record.figures
    judged = verdict(figures)
    about = (
        "While vmsnap cuts a VM's disks, the guest's filesystems are frozen: every "
        "application that writes to disk stalls until the thaw. The storage sets the "
        "floor (the time its CSI driver takes to cut the slowest disk); this benchmark "
        "measures how far above that floor the guest stays frozen, and how that grows "
        "with the number of disks.\n\n"
        f"One running VM with a guest agent per disk count, snapshotted {figures['runs']} "
        f"times one after the other. The simulated CSI driver cuts each VolumeSnapshot "
        f"{figures['cut_ms']} ms after its creation and marks it ready "
        f"{figures['ready_ms']} ms after. The window comes from the simulator's freeze log "
        "(frozen to thawed), each disk's cut from its VolumeSnapshot's creationTime against "
        f"its create request; a slowest cut above {figures['cut_ms']} ms is the simulator's "
        "own lag. `--timeline` prints the last run of each disk count as the simulator "
        "sees it.")
    return Section(TITLE, about, compose(figures_table(figures), aim_line(judged),
                                         provenance(record)),
                   (judged,), (draw(figures),))
