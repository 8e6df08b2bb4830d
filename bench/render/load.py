"""Sections for snapshots in bulk: one worker's memory and CPU, and a rate-limited client."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bench.records import RecordSet
from bench.render.common import TIMES, Plot, Section, Verdict, aim_line, compose, provenance, table
from bench.render.plots import AIM_STYLE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WORKER_KEY, THROTTLED_KEY = "worker-load", "throttled-client"


def worker_table(f: dict[str, Any]) -> str:
    rss = f["worker_rss_mib"]
    rows: list[list[object]] = [
        [f"wall time, {f['snapshots']} snapshots", f"{f['wall_s']:.1f} s"]]
    if f.get("succeeded") is not None:
        rows.append(["snapshots Succeeded", f"{f['succeeded']} of {f['snapshots']}"])
    rows += [
        ["worker resident memory idle / peak (VmHWM) / end",
         f"{rss['idle']:.0f} / {rss['peak']:.0f} / {rss['end']:.0f} MiB"],
        ["worker CPU (user + system)", f"{f['worker_cpu_s']:.1f} s "
         f"({f['worker_cores_average']:.2f} cores on average, "
         f"{f['worker_busiest_second']:.2f} in the busiest second)"],
        ["worker threads (most at once)", f["worker_threads_max"]],
        ["simulator CPU", f"{f['simulator_cpu_s']:.1f} s "
         f"({f['simulator_busiest_second']:.2f} in the busiest second)"],
        ["dev server CPU", f"{f['dev_server_cpu_s']:.1f} s "
         f"({f['dev_server_busiest_second']:.2f} in the busiest second)"],
    ]
    return table(["figure", "value"], rows)


def worker_section(records: RecordSet) -> Section:
    record = records.get(WORKER_KEY)
    f = record.figures
    judged = Verdict("these figures size a worker (its memory request and limit, its CPU)",
                     f"{f['wall_s']:.1f} s, peak resident memory "
                     f"{f['worker_rss_mib']['peak']:.0f} MiB, {f['worker_cpu_s']:.1f} CPU s",
                     None)
    about = (
        "How much memory and CPU one worker needs for a burst of snapshots: "
        f"{f['snapshots']} snapshots started at once ({f['snapshots']} running VMs of "
        f"{f['vm_disks']} disks, on storage that cuts at once) on one worker.py process. "
        f"The worker is sampled from /proc every {f['sample_interval_s']} s: resident "
        "memory (VmRSS, and the kernel's peak VmHWM), CPU (user + system) and threads; the "
        "simulator's and the dev server's CPU are given alongside, as they share the host.")
    return Section(f"Worker load: {f['snapshots']} concurrent snapshots", about,
                   compose(f"Worker: {f['worker']}.", worker_table(f), aim_line(judged),
                           provenance(record)),
                   (judged,))


def ordering(earliest_first: bool) -> str:
    return ("earliest snapshot first (request-priority interceptor)" if earliest_first
            else "in arrival order")


def throttled_table(f: dict[str, Any]) -> str:
    first_last = (f"{f['first_ready_s']:.1f} / {f['last_ready_s']:.1f} s"
                  if f["ready"] else "-")
    return table(["figure", "value"], [
        ["snapshots started at once",
         f"{f['snapshots']} ({f['disks']} disk each, {f['cut_ms']} ms cut)"],
        ["client limit", f"{f['qps']:g} requests/s, burst {f['burst']}"],
        ["waiting requests served", ordering(f["earliest_first"])],
        ["wall time, all done", f"{f['wall_s']:.1f} s"],
        ["Succeeded within the failure deadline, then ready to use",
         f"{f['ready']} of {f['snapshots']}"],
        ["first / last of those ready after", first_last],
        ["freeze window median / worst",
         f"{f['window_median_ms']:.0f} / {f['window_worst_ms']:.0f} ms"],
        [f"window ÷ nominal {f['cut_ms']} ms cut, median / worst",
         f"{f['window_ratio_median']:.2f} / {f['window_ratio_worst']:.2f}"],
    ])


def failures_list(f: dict[str, Any]) -> str:
    if not f["failures"]:
        return ""
    return "Why the others do not end ready:\n\n" + "\n".join(
        f"- {count} {TIMES} {reason}" for reason, count in f["failures"].items())


def seconds_of(duration: str) -> float | None:
    """'5m', '90s', '1h30m' in seconds; None for a form the plot does not know."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        return None
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def draw_ready(f: dict[str, Any]) -> Plot:
    def on(figure: Figure) -> None:
        from matplotlib.ticker import MaxNLocator

        axes = figure.subplots()
        times = sorted(f["ready_at_s"])
        end = max([f["wall_s"], *times])
        axes.step([0.0, *times, end], [0, *range(1, len(times) + 1), len(times)],
                  where="post", color="tab:blue", label="ready to use")
        axes.axhline(f["snapshots"], color="grey", linewidth=0.8, label="started")
        deadline = seconds_of(f["failure_deadline"])
        if deadline is not None:
            axes.axvline(deadline, **AIM_STYLE, label=f"failure deadline {f['failure_deadline']}")
        axes.set_xlim(0, max(end, deadline or 0) * 1.03)
        axes.set_ylim(0, f["snapshots"] * 1.08)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("seconds since the start")
        axes.set_ylabel("snapshots")
        axes.set_title(f"{f['snapshots']} snapshots at once, client limited to "
                       f"{f['qps']:g} requests/s")
        figure.legend(loc="outside lower center", ncol=3)

    return Plot("throttled-client.png", "Snapshots ready to use against time, throttled", on)


def throttled_section(records: RecordSet) -> Section:
    record = records.get(THROTTLED_KEY)
    f = record.figures
    judged = Verdict(f"every snapshot ends Succeeded and ready to use within its failure "
                     f"deadline ({f['failure_deadline']})",
                     f"{f['ready']} of {f['snapshots']}" + (
                         f", the last after {f['last_ready_s']:.1f} s" if f["ready"] else ""),
                     f["ready"] == f["snapshots"])
    slots = ("" if f.get("max_activities") is None
             else f" and `VMSNAP_MAX_CONCURRENT_ACTIVITIES={f['max_activities']}`")
    about = (
        "Many snapshots at once on a worker whose Kubernetes client is rate-limited "
        f"(`VMSNAP_KUBE_QPS={f['qps']:g}`, `VMSNAP_KUBE_BURST={f['burst']}`{slots}): do they "
        "still end within their failure deadline, and does the limit stretch the guests' "
        f"freeze? {f['snapshots']} VMs of {f['disks']} disk ({f['cut_ms']} ms cut), all "
        f"snapshotted at once, each with `failure_deadline` {f['failure_deadline']}. "
        "Requests made while a guest is frozen pass at once (their tokens are borrowed from "
        "the requests after them); the others wait, served "
        f"{ordering(f['earliest_first'])}. The windows are compared with the nominal "
        f"{f['cut_ms']} ms cut, as one request log cannot pair the creates of "
        f"{f['snapshots']} snapshots with their cuts.")
    plots = (draw_ready(f),) if f.get("ready_at_s") else ()
    return Section(f"Throttled client: {f['snapshots']} snapshots at {f['qps']:g} QPS", about,
                   compose(throttled_table(f), failures_list(f), aim_line(judged),
                           provenance(record)),
                   (judged,), plots)
