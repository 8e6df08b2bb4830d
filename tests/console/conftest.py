"""The console's browser tests: a real headless Chromium (Debian's `chromium`) driven by
Playwright, against `vmsnap console` processes on a stack of the session's dev server.

Chromium is installed with apt when it is missing (the machine's user is root, as on CI);
only when that is impossible are the tests skipped, saying why. Screenshots of every page
visited go to `.artifacts/console/` (git-ignored), for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from cluster.client import Cluster
from contracts.snapshot import SnapshotVirtualMachineInput
from starter.local_stack import REPO_ROOT, ConsoleProcess, DevServerProcess, start_console
from starter.sdk import VmsnapClient
from tests.conftest import Stack, StartStack

ARTIFACTS = REPO_ROOT / ".artifacts" / "console"
TOKEN = "console-test-token-0123456789"
NS = "demo"


def _install_chromium() -> str | None:
    """The chromium executable, installed with apt when missing; None with the reason
    printed when it cannot be had."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                    ["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        subprocess.run(command, env=env, capture_output=True, check=False, timeout=900)
        found = shutil.which("chromium")
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _install_chromium()
    if found is None:
        pytest.skip("no chromium: `apt-get install chromium` is not possible here (needs root "
                    "and Debian's package index)")
    return found


@dataclass
class Consoles:
    stack: Stack
    acting: ConsoleProcess
    """--allow-actions, no authentication (loopback)."""
    guarded: ConsoleProcess
    """Read-only, a token and a trusted proxy header, namespaces demo and team-b."""


@pytest.fixture(scope="module")
def consoles(start_stack: StartStack, dev_server: DevServerProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consoles]:
    stack = start_stack()
    state = tmp_path_factory.mktemp("console")
    acting = start_console(state, dev_server.address, stack.sim.kubeconfig,
                           task_queue=stack.task_queue, temporal_ui=dev_server.ui_url,
                           options=["--allow-actions"], name="console-acting")
    guarded = start_console(state, dev_server.address, stack.sim.kubeconfig,
                            task_queue=stack.task_queue, temporal_ui=dev_server.ui_url,
                            options=["--trusted-user-header", "X-Forwarded-User",
                                     "--namespaces", f"{NS},team-b"],
                            extra_env={"VMSNAP_CONSOLE_TOKEN": TOKEN}, name="console-guarded")
    yield Consoles(stack, acting, guarded)
    for process in (guarded, acting, stack.worker, stack.sim.process):
        process.stop()


@pytest.fixture(scope="module")
async def sdk(consoles: Consoles) -> AsyncIterator[VmsnapClient]:
    cluster = Cluster.from_environment(str(consoles.stack.sim.kubeconfig))
    async with VmsnapClient(consoles.stack.client, cluster=cluster,
                            task_queue=consoles.stack.task_queue) as client:
        yield client
    cluster.close()


@pytest.fixture(scope="module")
async def base_snapshot(sdk: VmsnapClient) -> str:
    """A ready snapshot of db-1, taken through the SDK, for the restore and the clone."""
    result = await sdk.snapshot(SnapshotVirtualMachineInput(namespace=NS, vm="db-1",
                                                            name="db-1-base"))
    assert result.ready_to_use
    return result.name


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    opened = await context.new_page()
    yield opened
    await context.close()


async def screenshot(page: Page, name: str) -> Path:
    """The whole page as `.artifacts/console/NAME.png`."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
