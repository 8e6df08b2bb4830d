"""Pure decisions of the snapshot workflow: deterministic names, and whether to freeze."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from rules import naming
from rules.models import VmState
from starter.local_stack import REPO_ROOT
from workflows.quiesce import MESSAGES, consistency, plan_quiesce


def vm(*, vmi: bool = True, running: bool = True, agent: bool = True,
       paused: bool = False) -> VmState:
    return VmState(namespace="demo", name="web", uid="u", run_strategy="Always",
                   vmi_exists=vmi, running=running, paused=paused, agent_connected=agent,
                   fs_freeze_status=None, printable_status=None,
                   vmi_phase="Running" if running else "Scheduling" if vmi else None)


def test_names_are_deterministic_and_readable() -> None:
    assert naming.snapshot_workflow_id("east", "demo", "web-1") == "snapshot/east/demo/web-1"
    assert naming.delete_snapshot_workflow_id("east", "demo", "web-1") == \
        "delete-snapshot/east/demo/web-1"
    assert naming.restore_workflow_id("east", "demo", "web-2") == "restore/east/demo/web-2"
    assert naming.clone_workflow_id("east", "demo", "web-3") == "clone/east/demo/web-3"
    # The IDs of runs started before clusters were named, which replays derive again.
    assert naming.snapshot_workflow_id("", "demo", "web-1") == "snapshot/demo/web-1"
    at = datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert naming.generated_snapshot_name("web", at) == "web-20300102-030405"
    assert naming.volume_snapshot_name("web-1", "rootdisk") == "web-1-rootdisk"
    assert naming.content_name("web-1") == "web-1-content"
    assert naming.snapshot_labels("web-1", "web", {"team": "a"}) == {
        "team": "a", "vmsnap.io/snapshot": "web-1", "vmsnap.io/vm": "web"}
    assert naming.snapshot_labels("web-1", "web", {}, "east") == {
        "vmsnap.io/snapshot": "web-1", "vmsnap.io/vm": "web", "vmsnap.io/cluster": "east"}
    assert naming.snapshot_selector("web-1") == "vmsnap.io/snapshot=web-1"


def test_too_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    long_a, long_b = "a" * 250 + "x", "a" * 250 + "y"
    first = naming.volume_snapshot_name(long_a, "disk")
    assert len(first) == 253 and first == naming.volume_snapshot_name(long_a, "disk")
    assert first != naming.volume_snapshot_name(long_b, "disk")
    value = naming.label_value("v" * 100)
    assert len(value) == 63 and value[-11] == "-"
    assert naming.bounded("short", 63) == "short"


@pytest.mark.parametrize(
    ("state", "quiesce", "freeze", "indications", "refused"),
    [
        (vm(), "auto", True, ["Online", "GuestAgent"], False),
        (vm(), "required", True, ["Online", "GuestAgent"], False),
        (vm(), "skip", False, ["Online", "GuestAgent", "QuiesceSkipped"], False),
        (vm(agent=False), "auto", False, ["Online", "NoGuestAgent"], False),
        (vm(agent=False), "required", False, ["Online", "NoGuestAgent"], True),
        (vm(agent=False), "skip", False, ["Online", "NoGuestAgent"], False),
        (vm(paused=True), "auto", False, ["Online", "GuestAgent", "Paused"], False),
        (vm(paused=True), "required", False, ["Online", "GuestAgent", "Paused"], True),
        (vm(running=False), "auto", False, ["Online", "GuestAgent"], False),
        (vm(running=False), "required", False, ["Online", "GuestAgent"], True),
        (vm(vmi=False, running=False, agent=False), "auto", False, [], False),
        (vm(vmi=False, running=False, agent=False), "required", False, [], False),
    ],
    ids=["agent-auto", "agent-required", "agent-skip", "no-agent-auto", "no-agent-required",
         "no-agent-skip", "paused-auto", "paused-required", "starting-auto",
         "starting-required", "stopped-auto", "stopped-required"],
)
def test_quiesce_plan(state: VmState, quiesce: str, freeze: bool, indications: list[str],
                      refused: bool) -> None:
    plan = plan_quiesce(state, quiesce)  # type: ignore[arg-type]
    assert plan.freeze is freeze
    assert plan.indications == indications
    assert (plan.refusal is not None) is refused
    assert all(i in MESSAGES for i in plan.indications)


def test_a_refusal_says_why() -> None:
    assert "the VM is paused" in (plan_quiesce(vm(paused=True), "required").refusal or "")
    assert "not running (phase Scheduling)" in (
        plan_quiesce(vm(running=False), "required").refusal or "")


def test_consistency_says_what_the_cut_holds() -> None:
    assert consistency(vm(), quiesced=True) == "application"
    assert consistency(vm(), quiesced=False) == "crash"  # thawed early, failed, skipped
    assert consistency(vm(paused=True), quiesced=False) == "crash"
    assert consistency(vm(vmi=False, running=False, agent=False), quiesced=False) == "filesystem"


def test_every_indication_the_workflow_explains_is_one_the_record_schema_accepts() -> None:
    crd = yaml.safe_load((REPO_ROOT / "deploy" / "crds" / "vmsnap.io_vmsnapsnapshots.yaml")
                         .read_text())
    [version] = [v for v in crd["spec"]["versions"] if v.get("storage")]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["indications"]["items"]["enum"]) == set(MESSAGES)
