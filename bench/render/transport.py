"""The request transport section: urllib3 against libcurl, CPU per request and GIL waits."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from bench.records import RecordSet
from bench.render.common import (
    Plot,
    Section,
    Verdict,
    aim_line,
    compose,
    plural,
    provenance,
    table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KEY = "request-transport"
TRANSPORTS = ("urllib3", "libcurl")
COLOURS = {"urllib3": "tab:orange", "libcurl": "tab:blue"}


def mean_of_rounds(rows: list[dict[str, Any]], transport: str, threads: int,
                   field: str) -> float:
    return statistics.fmean(r[field] for r in rows
                            if r["transport"] == transport and r["threads"] == threads)


def thread_counts(rows: list[dict[str, Any]]) -> list[int]:
    return sorted({r["threads"] for r in rows})


def figures_table(rows: list[dict[str, Any]]) -> str:
    return table(["transport", "threads", "client CPU per request", "requests/s",
                  "probe late p50 / p90"],
                 ([r["transport"], r["threads"], f"{r['cpu_ms_per_request']:.3f} ms",
                   f"{r['requests_per_second']:.0f}",
                   f"{r['probe_p50_ms']:.2f} / {r['probe_p90_ms']:.2f} ms"] for r in rows))


def headline(rows: list[dict[str, Any]]) -> str:
    most = thread_counts(rows)[-1]
    cpu = " / ".join(f"{mean_of_rounds(rows, t, most, 'cpu_ms_per_request'):.2f}"
                     for t in TRANSPORTS)
    late = " / ".join(f"{mean_of_rounds(rows, t, most, 'probe_p90_ms'):.2f}"
                      for t in TRANSPORTS)
    return (f"{most} threads, urllib3 / libcurl: CPU per request {cpu} ms, probe late at "
            f"p90 {late} ms")


def draw(rows: list[dict[str, Any]]) -> Plot:
    panels = (("cpu_ms_per_request", "client CPU per request (ms)"),
              ("probe_p90_ms", "probe thread late, p90 (ms)"))

    def on(figure: Figure) -> None:
        counts = thread_counts(rows)
        width = 0.38
        for axes, (field, label) in zip(figure.subplots(1, 2), panels, strict=True):
            for offset, transport in zip((-width / 2, width / 2), TRANSPORTS, strict=True):
                axes.bar([i + offset for i in range(len(counts))],
                         [mean_of_rounds(rows, transport, n, field) for n in counts],
                         width, color=COLOURS[transport], label=transport)
            axes.set_xticks(range(len(counts)), [plural(n, "thread") for n in counts])
            axes.set_ylabel(label)
            axes.grid(axis="x", visible=False)
            axes.legend(loc="upper left")
        figure.suptitle("Request transport: urllib3 against libcurl (mean of rounds)")

    return Plot("request-transport.png", "CPU per request and probe lateness by transport", on)


def section(records: RecordSet) -> Section:
    record = records.get(KEY)
    rows = record.figures["rows"]
    judged = Verdict("the figures compare the adapter's two transports (vmsnap uses "
                     "libcurl unless the configuration needs urllib3: a proxy, "
                     "`tls_server_name`, `assert_hostname`)", headline(rows), None)
    about = (
        "A worker sends its Kubernetes requests from activity threads while its asyncio "
        "event loop, which drives every Temporal task, waits for the same GIL: the CPU a "
        "request holds the GIL for delays everything else. This benchmark sends GETs of "
        "one VM to the simulator through `KubeApis.request_json` with each transport, from "
        f"1 and from 16 threads, {record.figures['rounds']} rounds alternating, "
        f"{record.figures['requests']} requests per measurement. It counts this "
        "process's CPU only (not the simulator's), and runs a probe thread that sleeps "
        "1 ms in a loop and records how late it wakes: its wait for the GIL.")
    return Section("Request transport: urllib3 against libcurl", about,
                   compose(figures_table(rows), aim_line(judged), provenance(record)),
                   (judged,), (draw(rows),))
