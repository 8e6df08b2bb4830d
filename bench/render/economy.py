"""What one snapshot costs Temporal (history events) and Kubernetes (API requests), by disks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.aims import history_budget, request_budget
from bench.records import RecordSet
from bench.render.common import (
    TIMES,
    Plot,
    Section,
    Verdict,
    aim_line,
    compose,
    disks,
    joined,
    provenance,
    table,
)
from bench.render.plots import AIM_STYLE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HISTORY_KEY, REQUESTS_KEY = "history-events", "kubernetes-requests"
HISTORY_AIM, REQUESTS_AIM = f"30 + 6 {TIMES} disks", f"8 + 3 {TIMES} disks"


def _against_budget(counts: list[tuple[int, int]], budget: Callable[[int], int],
                    aim: str, unit: str) -> tuple[Verdict, str]:
    """The verdict over (disks, count) pairs, and a sentence naming where it is missed."""
    over = [(d, n) for d, n in counts if n > budget(d)]
    figure = ", ".join(f"{disks(d)} {n} (aim {budget(d)})" for d, n in counts)
    if len({n for _, n in counts}) == 1:
        figure = f"{counts[0][1]} {unit} at {joined([str(d) for d, _ in counts])} disks"
    if not over:
        return Verdict(aim, figure, True), f"{figure}: within the aim at every disk count"
    kept = [str(d) for d, n in counts if n <= budget(d)]
    detail = "over the aim at " + joined([f"{disks(d)} ({n} against {budget(d)})"
                                          for d, n in over])
    if kept:
        detail += f"; within it at {joined(kept)} disks"
    return Verdict(aim, figure, False), detail


def _per_disk_plot(filename: str, alt: str, title: str, ylabel: str,
                   counts: list[tuple[int, int]], budget: Callable[[int], int],
                   budget_label: str) -> Plot:
    def on(figure: Figure) -> None:
        axes = figure.subplots()
        measured = [d for d, _ in counts]
        ends = [0, max(measured)]
        axes.plot(ends, [budget(d) for d in ends], **AIM_STYLE, label=budget_label)
        axes.plot(measured, [n for _, n in counts], "o-", color="tab:blue", label="measured")
        axes.set_xticks(measured, [str(d) for d in measured])
        axes.set_xlim(0, max(measured) * 1.05)
        axes.set_xlabel("disks per VM")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.set_title(title)
        axes.legend(loc="upper left")

    return Plot(filename, alt, on)


def history_section(records: RecordSet) -> Section:
    record = records.get(HISTORY_KEY)
    rows = record.figures["disks"]
    counts = [(row["disks"], row["events"]) for row in rows]
    judged, detail = _against_budget(
        counts, history_budget, f"at most {HISTORY_AIM} events per snapshot workflow, "
        "at every disk count", "events")
    failed = [row["disks"] for row in rows if not row["succeeded"]]
    if failed:
        judged = Verdict(judged.aim, judged.figure, False)
        detail += "; the snapshot failed at " + joined([disks(d) for d in failed])
    about = (
        "Temporal stores every event of a workflow's history: a history's length and size "
        "bound how many snapshots one Temporal server keeps in its retention period, and "
        "how much a worker replays when it picks a workflow up again. This benchmark takes "
        f"one snapshot of each VM ({record.figures['cut_ms']} ms cut per disk) and counts "
        "the events in its workflow's history, and the history's size in bytes.")
    body = table(["disks", "events", f"aim {HISTORY_AIM}", "history bytes", "succeeded"],
                 ([row["disks"], f"**{row['events']}**", history_budget(row["disks"]),
                   f"{row['history_bytes']:,}", "yes" if row["succeeded"] else "no"]
                  for row in rows))
    plot = _per_disk_plot("history-events.png", "History events against disks per VM",
                          "History events per snapshot workflow", "events", counts,
                          history_budget, f"aim: {HISTORY_AIM}")
    return Section("History events per snapshot", about,
                   compose(body, aim_line(judged, detail), provenance(record)),
                   (judged,), (plot,))


def requests_table(rows: list[dict[str, Any]]) -> str:
    """One row per kind of request (verb and resource), one column per disk count."""
    kinds = sorted({kind for row in rows for kind in row["requests"]})
    body = [[kind, *(row["requests"].get(kind, 0) for row in rows)] for kind in kinds]
    body.append(["**total**", *(f"**{sum(row['requests'].values())}**" for row in rows)])
    body.append([f"aim {REQUESTS_AIM}", *(request_budget(row["disks"]) for row in rows)])
    return table(["request", *(disks(row["disks"]) for row in rows)], body)


def requests_section(records: RecordSet) -> Section:
    record = records.get(REQUESTS_KEY)
    rows = record.figures["disks"]
    counts = [(row["disks"], sum(row["requests"].values())) for row in rows]
    judged, detail = _against_budget(counts, request_budget,
                                     f"at most {REQUESTS_AIM} Kubernetes requests per snapshot",
                                     "requests")
    about = (
        "Every request a worker sends loads the Kubernetes API server, and a worker whose "
        "client is rate-limited (`VMSNAP_KUBE_QPS`) waits for each one. This benchmark "
        "takes one snapshot at a time, after a warm-up snapshot of the same VM, and counts "
        "the requests in the simulator's request log by verb and resource (the "
        "simulator's own endpoints left out).")
    plot = _per_disk_plot("kubernetes-requests.png",
                          "Kubernetes requests per snapshot against disks per VM",
                          "Kubernetes requests per snapshot", "requests", counts,
                          request_budget, f"aim: {REQUESTS_AIM}")
    return Section("Kubernetes requests per snapshot", about,
                   compose(requests_table(rows), aim_line(judged, detail),
                           provenance(record)),
                   (judged,), (plot,))
