"""The orchestration section: N snapshots at once against bare Temporal runs of their shape."""

from __future__ import annotations

import dataclasses
import statistics
from typing import TYPE_CHECKING, Any

from bench.aims import ORCHESTRATION_AIM_RATIO, within
from bench.records import Record, RecordSet
from bench.render.common import (
    TIMES,
    Plot,
    Section,
    Verdict,
    aim_line,
    compose,
    plural,
    provenance,
    table,
)
from bench.render.plots import AIM_STYLE, count_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KEY, SPREAD_KEY = "orchestration", "orchestration-spread"
TITLE = "Orchestration cost against bare Temporal"
BUCKETS = ("activity queued", "activity running", "workflow task queued",
           "workflow task running")


def ratios_by_size(figures: dict[str, Any]) -> dict[int, list[float]]:
    """Each N's ratios (vmsnap wall ÷ bare wall), in the order measured."""
    ratios: dict[int, list[float]] = {}
    for pair in figures["pairs"]:
        ratios.setdefault(pair["n"], []).append(pair["ratio"])
    return ratios


def pairs_table(figures: dict[str, Any]) -> str:
    def cpu(wave: dict[str, Any], *names: str) -> str:
        return " / ".join(f"{wave['cpu_s'][name]:.0f}" for name in names) + " s"

    return table(
        ["N", "vmsnap wall", "bare wall", "ratio", "vmsnap p50 / p95", "bare p50 / p95",
         "CPU, vmsnap wave: worker / simulator / server", "CPU, bare wave: worker / server"],
        ([pair["n"], f"{pair['vmsnap']['wall_s']:.1f} s", f"{pair['bare']['wall_s']:.1f} s",
          f"**{pair['ratio']:.2f}**",
          f"{pair['vmsnap']['p50_s']:.2f} / {pair['vmsnap']['p95_s']:.2f} s",
          f"{pair['bare']['p50_s']:.2f} / {pair['bare']['p95_s']:.2f} s",
          cpu(pair["vmsnap"], "worker", "simulator", "dev server"),
          cpu(pair["bare"], "bare worker", "dev server")] for pair in figures["pairs"]))


def breakdown_table(figures: dict[str, Any]) -> str:
    return table(["workflow", "N", *BUCKETS],
                 ([kind, pair["n"], *(f"{pair[kind]['breakdown_s'].get(b, 0.0):.2f} s"
                                      for b in BUCKETS)]
                  for pair in figures["pairs"] for kind in ("vmsnap", "bare")))


def verdict(figures: dict[str, Any], aim: str) -> Verdict:
    """Met when the median ratio of every N is within the aim."""
    medians = {n: statistics.median(r) for n, r in ratios_by_size(figures).items()}
    figure = ", ".join(f"N={n} {m:.2f}" for n, m in medians.items())
    return Verdict(aim, figure + " (median ratio per N)",
                   all(within(m, ORCHESTRATION_AIM_RATIO) for m in medians.values()))


def medians_lines(figures: dict[str, Any]) -> str:
    lines = []
    for n, ratios in ratios_by_size(figures).items():
        count = f"{len(ratios)} pair" + ("s" if len(ratios) > 1 else "")
        lines.append(f"- N = {n}: median ratio **{statistics.median(ratios):.2f}** of {count} "
                     f"({', '.join(f'{r:.2f}' for r in ratios)})")
    return "\n".join(lines)


def figures_part(record: Record, judged: Verdict) -> str:
    figures = record.figures
    return compose(
        f"Stack: {figures['layout']}; {figures['worker']}.",
        pairs_table(figures),
        f"Where a run's time goes (mean of {figures['history_sample']} histories per wave, "
        "from the server's event times: schedule to start and start to close, summed per "
        "run):",
        breakdown_table(figures),
        medians_lines(figures),
        aim_line(judged),
        provenance(record))


def draw(records: list[Record]) -> Plot:
    def on(figure: Figure) -> None:
        axes = figure.subplots()
        sizes: set[int] = set()
        for record, colour in zip(records, ("tab:blue", "tab:green"), strict=False):
            ratios = ratios_by_size(record.figures)
            sizes.update(ratios)
            label = record.figures["layout"]
            axes.plot([n for n, r in ratios.items() for _ in r],
                      [x for r in ratios.values() for x in r], "o", color=colour, alpha=0.35,
                      label=f"each pair, {label}")
            axes.plot(list(ratios), [statistics.median(r) for r in ratios.values()], "o-",
                      color=colour, label=f"median, {label}")
        axes.axhline(ORCHESTRATION_AIM_RATIO, **AIM_STYLE,
                     label=f"aim: {ORCHESTRATION_AIM_RATIO}")
        axes.axhline(1.0, color="grey", linewidth=0.8)
        count_axis(axes, sorted(sizes), "snapshots started at once (N)")
        axes.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
        axes.set_ylim(bottom=0.9)
        axes.set_ylabel("vmsnap wall ÷ bare Temporal wall")
        axes.set_title("Orchestration cost against bare Temporal")
        figure.legend(loc="outside lower center", ncol=3)

    return Plot("orchestration.png", "vmsnap's wall time ÷ bare Temporal's against N", on)


def section(records: RecordSet) -> Section:
    record = records.get(KEY)
    spread = records.optional(SPREAD_KEY)
    shape = record.figures["shape"]
    aim = (f"N snapshots at once take at most {ORCHESTRATION_AIM_RATIO} {TIMES} as long as "
           "N bare runs")
    judged = verdict(record.figures, aim)
    about = (
        "What vmsnap's workflow costs on top of Temporal itself. For each N, N runs of a bare "
        "workflow start at once, then N snapshots of N different VMs "
        f"({record.figures['vm_disks']} disks each, on storage that cuts at once). The bare "
        "workflow issues the commands of a real snapshot's history "
        f"({plural(shape['workflow_tasks'], 'workflow task')}, "
        f"{plural(shape['activities'], 'activity', 'activities')} and "
        f"{plural(shape['local_activities'], 'local activity', 'local activities')} one "
        "after the other, the deadline timer, the search-attribute upserts) with "
        "activities that do nothing, on a worker "
        "with the same settings. The ratio of the two waves' wall times (first start to "
        "last result) is vmsnap's overhead over Temporal's floor on the same host.\n\n"
        "Each N runs its pairs one after the other (bare wave, then vmsnap wave) and its "
        f"median ratio is the figure that counts: on a shared {record.machine.cpus}-CPU host "
        "the same wave's wall time varies from one pair to the next, as the bare walls in "
        "the table show.")
    parts = [figures_part(record, judged)]
    verdicts = [judged]
    if spread is not None:
        heading = f"VMs spread over {spread.figures['namespaces']} namespaces"
        spread_verdict = dataclasses.replace(
            verdict(spread.figures, f"{aim}, with the VMs spread over "
                                    f"{spread.figures['namespaces']} namespaces"),
            heading=heading)
        parts += [f"### {heading}",
                  "The same benchmark with the VMs spread over many namespaces "
                  "(`--namespaces`): the worker then keeps a watch-fed copy of the "
                  "PersistentVolumeClaims of each namespace it snapshots in (one LIST and "
                  "one long watch per namespace).",
                  figures_part(spread, spread_verdict)]
        verdicts.append(spread_verdict)
    plotted = [record] if spread is None else [record, spread]
    return Section(TITLE, about, compose(*parts), tuple(verdicts), (draw(plotted),))
