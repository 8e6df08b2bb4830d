"""Scenarios that mostly wait, run on a thread of their own from the session's first test.

Why: a scenario that waits on activity timeouts or retry back-off for tens of seconds
costs the suite its whole wait when it runs in line. Registered scenarios of the selected
modules start with the session, on an event loop in their own thread (so they progress
while synchronous tests run too), each with the environment it registered (started once
per environment, e.g. a dev server and the stacks it hands out); their tests later await
the results on the session's loop. Assertions inside a scenario surface in its test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Scenario = Callable[[Any], Coroutine[Any, Any, Any]]
# Given a fresh directory, what a scenario is handed (entered once, exited at session end).
Environment = Callable[[Path], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Registered:
    module: str
    scenario: Scenario
    environment: Environment
    shared: bool  # one environment (and thread) for every scenario registered with it


_REGISTRY: dict[str, Registered] = {}


def register(
    module_file: str, environment: Environment, shared: bool = False
) -> Callable[[Scenario], Scenario]:
    """Register `scenario` (async, given what `environment` yields) to run in the background
    when `module_file` is selected: on a thread and in an environment of its own, or, when
    `shared`, with the other scenarios of that environment (they must then not block)."""

    def add(scenario: Scenario) -> Scenario:
        _REGISTRY[scenario.__name__] = Registered(
            str(Path(module_file).resolve()), scenario, environment, shared
        )
        return scenario

    return add


@dataclass
class Scratch:
    """What a scenario that starts its own processes gets: a directory, and stop functions
    it adds for them, called at session end even if its test never ran."""

    path: Path
    stops: list[Callable[[], object]] = field(default_factory=list)


@asynccontextmanager
async def scratch(state: Path) -> AsyncIterator[Scratch]:
    given = Scratch(state)
    try:
        yield given
    finally:
        for stop in reversed(given.stops):
            await asyncio.to_thread(stop)


def selected(modules: Iterable[str | Path]) -> list[Registered]:
    """The registered scenarios whose module is among `modules`."""
    wanted = {str(Path(m).resolve()) for m in modules}
    return [entry for entry in _REGISTRY.values() if entry.module in wanted]


def start(
    scenarios: list[Registered], state_dir: Path
) -> tuple[Background, list[BackgroundThread]]:
    """Start `scenarios`, one thread per shared environment and per unshared scenario."""
    groups: dict[object, list[Registered]] = {}
    for entry in scenarios:
        key = entry.environment if entry.shared else entry.scenario
        groups.setdefault(key, []).append(entry)
    threads = [BackgroundThread(group, state_dir / f"group-{index}")
               for index, group in enumerate(groups.values())]
    futures: dict[str, concurrent.futures.Future[Any]] = {}
    for thread in threads:
        futures.update(thread.start().futures)
    return Background(futures), threads


class Background:
    """The started scenarios' results, for tests to await on their own loop."""

    def __init__(self, futures: dict[str, concurrent.futures.Future[Any]]) -> None:
        self.futures = futures

    async def result(self, scenario: Scenario, timeout: float) -> Any:
        future = self.futures.get(scenario.__name__)
        if future is None:
            raise AssertionError(f"background scenario {scenario.__name__} was not started")
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)


class BackgroundThread:
    """Runs `scenarios` on an event loop in a daemon thread until `close()`."""

    def __init__(self, scenarios: list[Registered], state_dir: Path) -> None:
        self.scenarios = scenarios
        self.state_dir = state_dir
        self.futures: dict[str, concurrent.futures.Future[Any]] = {
            entry.scenario.__name__: concurrent.futures.Future() for entry in scenarios
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-scenarios",
                                        daemon=True)

    def start(self) -> Background:
        self._thread.start()
        self._ready.wait(10)
        return Background(self.futures)

    def request_stop(self) -> None:
        """Cancel what still runs and leave every environment (stopping its processes),
        without waiting: several threads' shutdowns then overlap (`join` waits)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                self._loop.call_soon_threadsafe(self._stop.set)

    def join(self, timeout: float = 60.0) -> None:
        """Wait for the thread to end (after `request_stop`)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"background scenarios did not stop within {timeout:.0f}s")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        tasks: list[asyncio.Task[None]] = []
        async with AsyncExitStack() as exits:
            try:
                entered: dict[Environment, Any] = {}
                for index, entry in enumerate(self.scenarios):
                    if entry.environment not in entered:
                        directory = self.state_dir / f"env-{index}"
                        directory.mkdir(parents=True, exist_ok=True)
                        entered[entry.environment] = await exits.enter_async_context(
                            entry.environment(directory))
                    tasks.append(asyncio.create_task(
                        self._settle(entry, entered[entry.environment]),
                        name=entry.scenario.__name__))
            except BaseException as err:  # no environment: every scenario fails with it
                for future in self.futures.values():
                    if not future.done():
                        future.set_exception(err)
                if not isinstance(err, Exception):
                    raise
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle(self, entry: Registered, environment: Any) -> None:
        future = self.futures[entry.scenario.__name__]
        try:
            result = await entry.scenario(environment)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
        else:
            future.set_result(result)
