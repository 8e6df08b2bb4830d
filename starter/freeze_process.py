"""The worker's freeze process: the cuts that freeze a guest run in a process of their own.

Why a process: a frozen guest waits for its cut's freeze call, creates, watch and
thaw, and in the worker's process those compete with every other workflow task and
activity for one interpreter. Measured with 50 VMs of 8 disks at once, a cut's last
create left 30-60 ms after the freeze, and cuts that waited for a freeze slot inside
their activity missed their heartbeats and were retried behind other waiting cuts.
Here the freeze process polls only the freeze task queue
(contracts.common.freeze_task_queue), with one activity slot per guest it may hold
frozen: a snapshot waits in the queue, not frozen, and nothing else runs beside a cut.

The worker (worker.py) starts it, waits until it polls, stops it with SIGTERM when it
stops (its running cuts finish within the grace period), and stops itself if the freeze
process ends on its own: a worker that cannot freeze must not look healthy. The freeze
process dies with the worker (Linux's parent-death signal, else a check of its parent
every second): a worker killed is a worker gone, its frozen guests are taken over by
the next attempt (activities/cut.py) on another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
from collections.abc import Sequence

log = logging.getLogger("vmsnap.worker")

READY = b"1"
READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 20.0  # past the worker's graceful shutdown: then it is killed
PARENT_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


class FreezeProcessError(RuntimeError):
    """The freeze process did not start, or ended while the worker served."""


class FreezeProcess:
    """The worker's side: start the freeze process, wait for it to poll, watch, stop it."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._argv = list(argv)
        self._process: asyncio.subprocess.Process | None = None
        self._ready_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """`spawn`, then `ready`."""
        await self.spawn()
        await self.ready(timeout)

    async def spawn(self) -> None:
        """Start it: it imports, connects and starts polling while the caller sets up."""
        read_end, write_end = os.pipe()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv, "--parent-pid", str(os.getpid()), "--ready-fd", str(write_end),
                pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._ready_fd = read_end

    async def ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Return once it polls; FreezeProcessError if it ends or stays silent for
        `timeout` (it is stopped then)."""
        if self._process is None or self._ready_fd is None:
            raise FreezeProcessError("the freeze process was not started")
        read_end, self._ready_fd = self._ready_fd, None
        try:
            answer = await asyncio.wait_for(asyncio.to_thread(os.read, read_end, 1), timeout)
        except TimeoutError:
            await self.stop()
            raise FreezeProcessError(
                f"the freeze process did not start polling within {timeout:.0f}s") from None
        finally:
            with contextlib.suppress(OSError):
                os.close(read_end)
        if answer != READY:
            code = await self._process.wait()
            raise FreezeProcessError(f"the freeze process ended before it polled (exit {code})")

    async def ended(self) -> int:
        """Wait until it ends; its exit code."""
        if self._process is None:
            raise FreezeProcessError("the freeze process was not started")
        return await self._process.wait()

    def terminate(self) -> None:
        """SIGTERM: it stops polling and finishes its running cuts (see `stop`)."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM (it finishes its running cuts), then SIGKILL after `grace`; its exit code."""
        if self._ready_fd is not None:  # stopped before it was waited for
            with contextlib.suppress(OSError):
                os.close(self._ready_fd)
            self._ready_fd = None
        process = self._process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("the freeze process did not stop within %.0fs: killed", grace)
            process.kill()
            return await process.wait()


def die_with_parent(parent_pid: int, stop: asyncio.Event) -> asyncio.Task[None]:
    """In the freeze process: be killed when the worker dies (SIGKILL on Linux, as the
    worker was), and in any case set `stop` once the parent is gone (checked every
    PARENT_CHECK_SECONDS); the task that checks."""
    library = ctypes.util.find_library("c")
    if library is not None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(library, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    async def check() -> None:
        while os.getppid() == parent_pid:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        log.error("the worker (pid %d) is gone: the freeze process stops", parent_pid)
        stop.set()

    return asyncio.create_task(check())


def signal_ready(ready_fd: int | None) -> None:
    """In the freeze process: tell the worker it polls."""
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, READY)
    finally:
        os.close(ready_fd)
