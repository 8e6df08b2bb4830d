"""SIGTERM stops a benchmark the way Ctrl-C does: its stack's processes are stopped.

Without this, `timeout 300 python -m bench.api_economy` killed the benchmark and left
its dev server, simulator and worker running (their parent gone), loading the machine
for every later measurement.
"""

from __future__ import annotations

import signal


def stop_on_sigterm_as_on_ctrl_c() -> None:
    """Raise KeyboardInterrupt on SIGTERM (main thread), so `finally` blocks stop the stack."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
