"""The console in a real browser: list, VM page, actions followed to their end, refusals,
read-only mode, authentication and CSRF. One stack and two consoles for the module."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from starter.sdk import VmsnapClient
from tests.console.conftest import NS, TOKEN, Consoles, screenshot

pytestmark = pytest.mark.e2e

FOLLOW_TIMEOUT = 40_000  # ms: a snapshot, a restore or a clone on the simulator


async def test_vm_list_filters_and_searches(consoles: Consoles, page: Page) -> None:
    await page.goto(f"{consoles.acting.url}/vms")
    table = page.get_by_role("table", name="Virtual machines")
    for vm in ("web-1", "db-1", "batch-1", "legacy-1", "paused-1"):
        await expect(table.get_by_role("link", name=vm, exact=True)).to_be_visible()
    await expect(table.locator("tr[data-vm=batch-1]")).to_contain_text("Stopped")
    await screenshot(page, "vm-list")

    await page.get_by_label("Search").fill("web")  # htmx swaps the table as one types
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table.get_by_role("link", name="web-1")).to_be_visible()
    assert "q=web" in page.url  # the filter is in the address, to share or reload

    await page.get_by_label("Search").fill("")
    await page.get_by_label("Status").select_option("Paused")
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table.get_by_role("link", name="paused-1")).to_be_visible()


async def test_snapshot_now_followed_to_succeeded(consoles: Consoles, page: Page) -> None:
    await page.goto(f"{consoles.acting.url}/ns/{NS}/vms/web-1")
    await page.get_by_role("link", name="Snapshot now…").click()
    plan = page.get_by_test_id("plan")  # the pre-flight plan, before anything starts
    await expect(plan).to_contain_text("Running")
    await expect(page.get_by_role("table", name="Disks in the snapshot")).to_contain_text(
        "rootdisk")
    await screenshot(page, "snapshot-confirm")
    await page.get_by_label("Snapshot name").fill("web-1-console")
    await page.get_by_role("button", name="Start the snapshot").click()

    await expect(page).to_have_url(re.compile(r"/operations/snapshot\?id="))
    await expect(page.get_by_test_id("status")).to_have_text("Succeeded",
                                                              timeout=FOLLOW_TIMEOUT)
    await expect(page.get_by_test_id("result")).to_contain_text("web-1-console")
    temporal = page.get_by_role("link", name="this run in the Temporal UI")
    assert "/workflows/" in (await temporal.get_attribute("href") or "")
    await screenshot(page, "snapshot-operation")

    await page.get_by_role("link", name="Back to VM web-1").click()
    row = page.locator("tr[data-snapshot=web-1-console]")
    await expect(row).to_contain_text("Succeeded")
    await expect(row).to_contain_text("application")
    await expect(page.get_by_test_id("protection")).to_have_text("fresh")
    await screenshot(page, "vm-page")


async def test_restore_in_place_from_the_page(consoles: Consoles, page: Page,
                                              base_snapshot: str) -> None:
    await page.goto(f"{consoles.acting.url}/ns/{NS}/vms/db-1")
    await page.get_by_role("link", name=f"Restore from {base_snapshot}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Restore snapshot {base_snapshot}")
    await page.get_by_label("If VM db-1 is running").select_option("stop")
    await screenshot(page, "restore-confirm")
    await page.get_by_role("button", name="Start the restore").click()

    await expect(page).to_have_url(re.compile(r"/operations/restore\?id="))
    await expect(page.get_by_test_id("status")).to_have_text("Succeeded",
                                                              timeout=FOLLOW_TIMEOUT)
    result = page.get_by_test_id("result")
    await expect(result).to_contain_text("Succeeded")
    await expect(result).to_contain_text("stopped vm")  # the running-VM policy at work
    await screenshot(page, "restore-operation")


async def test_clone_from_the_page(consoles: Consoles, page: Page, base_snapshot: str,
                                   sdk: VmsnapClient) -> None:
    await page.goto(f"{consoles.acting.url}/ns/{NS}/snapshots/{base_snapshot}/clone")
    await page.get_by_label("New VM name").fill("db-1-copy")
    await page.get_by_role("button", name="Start the clone").click()

    await expect(page).to_have_url(re.compile(r"/operations/clone\?id="))
    await expect(page.get_by_test_id("status")).to_have_text("Succeeded",
                                                              timeout=FOLLOW_TIMEOUT)
    await screenshot(page, "clone-operation")
    await page.get_by_role("link", name="Open VM db-1-copy").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("VM db-1-copy")
    assert "db-1-copy" in [vm.name for vm in await sdk.list_vms(NS)]


async def test_refused_action_is_a_clear_message(consoles: Consoles, page: Page,
                                                 base_snapshot: str,
                                                 sdk: VmsnapClient) -> None:
    before = [vm.name for vm in await sdk.list_vms(NS)]
    await page.goto(f"{consoles.acting.url}/ns/{NS}/snapshots/{base_snapshot}/clone")
    await page.get_by_label("New VM name").fill("web-1")  # taken
    await page.get_by_role("button", name="Start the clone").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("VirtualMachine demo/web-1 already exists")
    await expect(alert).to_contain_text("Nothing was started")
    await expect(page.get_by_label("New VM name")).to_have_value("web-1")  # kept to correct
    await screenshot(page, "refused")
    assert [vm.name for vm in await sdk.list_vms(NS)] == before


async def test_forged_form_is_refused(consoles: Consoles, page: Page) -> None:
    """A POST without the session's CSRF token (another site's form) starts nothing."""
    await page.goto(f"{consoles.acting.url}/vms")
    answer = await page.request.post(f"{consoles.acting.url}/ns/{NS}/vms/web-1/snapshot",
                                     form={"name": "forged"})
    assert answer.status == 403
    assert "CSRF token" in await answer.text()
    answer = await page.request.post(
        f"{consoles.acting.url}/ns/{NS}/vms/web-1/snapshot", form={"name": "forged"},
        headers={"Origin": "http://evil.example"})
    assert answer.status == 403 and "another site" in await answer.text()


async def test_read_only_console_needs_sign_in_and_hides_actions(
        consoles: Consoles, page: Page) -> None:
    url = consoles.guarded.url
    await page.goto(f"{url}/ns/{NS}/vms/web-1")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.get_by_label("Console token").fill("not-the-token-at-all")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not this console's token")
    await page.get_by_label("Console token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()

    await expect(page.get_by_role("heading", level=1)).to_contain_text("VM web-1")
    await expect(page.get_by_test_id("mode")).to_have_text("read-only")
    await expect(page.get_by_role("link", name="Snapshot now…")).to_have_count(0)
    await expect(page.get_by_role("link", name=re.compile("^Restore"))).to_have_count(0)
    await screenshot(page, "read-only")
    await page.goto(f"{url}/ns/{NS}/vms/web-1/snapshot")
    await expect(page.get_by_role("alert")).to_contain_text("read-only")


async def test_trusted_proxy_header_and_the_fleet(consoles: Consoles, page: Page) -> None:
    await page.context.set_extra_http_headers({"X-Forwarded-User": "alice"})
    await page.goto(f"{consoles.guarded.url}/fleet")
    await expect(page.get_by_text("signed in as")).to_contain_text("alice")
    await expect(page.get_by_role("heading", name="Freeze window of usable snapshots")) \
        .to_be_visible()
    await expect(page.locator("svg.chart")).to_be_visible()
    await screenshot(page, "fleet")

    # Outside the console's namespaces: refused before anything is read.
    await page.goto(f"{consoles.guarded.url}/ns/kube-system/vms/web-1")
    await expect(page.get_by_role("alert")).to_contain_text(
        "namespace kube-system is outside this console's namespaces (demo, team-b)")
    await page.goto(f"{consoles.guarded.url}/vms?namespace=team-b")
    await expect(page.get_by_role("table", name="Virtual machines")).to_contain_text(
        "No VM matches")
