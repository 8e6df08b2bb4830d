"""History economy: events in one snapshot workflow's history against the VM's disks.

One snapshot at a time of VMs with 1, 8 and 64 disks (200 ms cut) on a fresh stack;
the events counted from each workflow's history, split by event type.

    .venv/bin/python -m bench.history_economy --disks 1 8 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter

from temporalio.api.enums.v1 import EventType

from bench import aims
from bench.freeze_window import (
    BENCH_CLUSTER,
    CUT_MS,
    NS,
    bench_stack,
    seed_documents,
    snapshot_once,
)
from bench.render.economy import HISTORY_KEY
from bench.report import record
from bench.stopping import stop_on_sigterm_as_on_ctrl_c
from rules.naming import snapshot_workflow_id


def budget(disks: int) -> int:
    """The aim: at most 30 + 6 x disks events per snapshot workflow."""
    return aims.history_budget(disks)


def event_name(event_type: int) -> str:
    return EventType.Name(event_type).removeprefix("EVENT_TYPE_")  # type: ignore[arg-type]


async def main(disk_counts: list[int], record_figures: bool) -> None:
    rows = []
    load_before = os.getloadavg()[0]
    async with bench_stack(seed_documents(disk_counts)) as stack:
        for disks in disk_counts:
            name = f"hist-{disks}"
            run = await snapshot_once(stack, disks, name)
            history = await stack.client.get_workflow_handle(
                snapshot_workflow_id(BENCH_CLUSTER, NS, name)).fetch_history()
            kinds = Counter(event_name(e.event_type) for e in history.events)
            size = sum(e.ByteSize() for e in history.events)
            print(f"{disks} disks: {run.history_events} events (aim {budget(disks)}), "
                  f"{size} bytes: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
                  flush=True)
            rows.append((disks, run.history_events, size, run.succeeded))
    lines = ["| disks | events | aim 30 + 6 x disks | history bytes | succeeded |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {d} | **{n}** | {budget(d)} | {b:,} | {ok} |" for d, n, b, ok in rows]
    text = "\n".join(lines)
    print(text)
    if record_figures:
        counts = " ".join(str(d) for d in disk_counts)
        record(HISTORY_KEY, f".venv/bin/python -m bench.history_economy --disks {counts}",
               {"cut_ms": CUT_MS,
                "disks": [{"disks": d, "events": n, "history_bytes": b, "succeeded": ok}
                          for d, n, b, ok in rows]},
               load_start=load_before)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--disks", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/benchmarks/ and its report alone")
    args = parser.parse_args()
    stop_on_sigterm_as_on_ctrl_c()
    asyncio.run(main(args.disks, not args.no_record))
