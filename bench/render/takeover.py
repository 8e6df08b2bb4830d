"""The freeze takeover section: what a worker killed mid-freeze costs the guest."""

from __future__ import annotations

from typing import Any

from bench.aims import TAKEOVER_AIM_SECONDS, within
from bench.records import RecordSet
from bench.render.common import Section, Verdict, aim_line, compose, provenance, table

KEY = "freeze-takeover"
TITLE = "Freeze takeover"


def figures_table(figures: dict[str, Any]) -> str:
    """One row: kills, the extra frozen time (median and worst), how the snapshots ended."""
    return table(
        ["kills", "cut", "extra frozen time median / worst", "succeeded",
         "application-consistent"],
        [[figures["kills"], f"{figures['cut_s']:.0f} s",
          f"**{figures['extra_median_ms']:.0f}** / **{figures['extra_worst_ms']:.0f}** ms",
          f"{figures['succeeded']} of {figures['kills']}",
          f"{figures['quiesced']} of {figures['kills']}"]])


def verdict(figures: dict[str, Any]) -> Verdict:
    """Met when the worst kill kept the guest frozen at most the aim past the cut."""
    aim = (f"a worker killed at any point of the freeze costs the guest at most "
           f"{TAKEOVER_AIM_SECONDS:.0f} s of extra freeze, every time")
    figure = (f"median {figures['extra_median_ms'] / 1000:.2f} s, worst "
              f"{figures['extra_worst_ms'] / 1000:.2f} s of {figures['kills']} kills")
    return Verdict(aim, figure, within(figures["extra_worst_ms"] / 1000, TAKEOVER_AIM_SECONDS))


def section(records: RecordSet) -> Section:
    record = records.get(KEY)
    figures = record.figures
    judged = verdict(figures)
    about = (
        "A worker that dies while the guest is frozen leaves the thaw to another worker: "
        "the guest stays frozen until the server notices (the cut's heartbeat timeout, "
        "1.5 s: it heartbeats from a thread of its own), retries the cut on a worker "
        "already polling, and that worker takes the frozen guest over and thaws it at "
        "the cut. The timeout and the retry are server timers, fired no sooner than the "
        "server's timer floor (`history.timerProcessorMaxTimeShift`): 100 ms on the "
        "benchmark's dev server as in the local stack; at the server's default, 1 s, "
        "the retry alone waits a second more.\n\n"
        f"One running VM whose disk takes {figures['cut_s']:.0f} s to cut, snapshotted "
        f"{figures['kills']} times with two workers polling; each time the worker "
        "running the cut is killed (`kill -9`) at a random point of the freeze and "
        "replaced. The extra frozen time is the freeze as the simulator's guest agent "
        "logged it (frozen to thawed) minus the cut.")
    return Section(TITLE, about, compose(figures_table(figures), aim_line(judged),
                                         provenance(record)), (judged,))
