"""`vmsnap restore` / `vmsnap clone` input, checked before anything is contacted:
the pure parsers (MAC pairs, filters, patches) and the CLI's one-line exit-2 errors.
No kubeconfig and no Temporal exist here, so an error proves the check came first."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from contracts.clone import CloneVirtualMachineInput
from contracts.restore import RestoreVirtualMachineInput
from rules.clone_spec import check_mac
from starter.cli import app
from starter.cli_clone import parse_macs
from starter.sdk import InvalidRequest
from starter.sdk_checks import check_clone_input, check_restore_input


def test_mac_pairs() -> None:
    assert parse_macs(["eth0=02:00:00:00:00:01", "net1=02-AB-cd-00-00-02"]) == {
        "eth0": "02:00:00:00:00:01", "net1": "02-AB-cd-00-00-02"}
    assert parse_macs(None) == {}


@pytest.mark.parametrize(("value", "message"), [
    ("02:00:00:00:00:01", "expected IFACE=MAC"),
    ("=02:00:00:00:00:01", "expected IFACE=MAC"),
    ("eth0=", "expected IFACE=MAC"),
    ("eth0=02:00:00:00:00", "is not a MAC address"),
    ("eth0=02:00:00:00:00:0g", "is not a MAC address"),
    ("eth0=02:00-00:00:00:01", "is not a MAC address"),
    ("eth0=0200.0000.0001", "is not a MAC address"),
])
def test_bad_mac_pairs(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_macs([value])


def test_an_interface_given_twice() -> None:
    with pytest.raises(ValueError, match="given twice"):
        parse_macs(["eth0=02:00:00:00:00:01", "eth0=02:00:00:00:00:02"])


def test_check_mac_returns_the_mac() -> None:
    assert check_mac("eth0", "aa:bb:cc:dd:ee:ff") == "aa:bb:cc:dd:ee:ff"


def clone_input(**fields: object) -> CloneVirtualMachineInput:
    return CloneVirtualMachineInput.model_validate(
        {"namespace": "demo", "source_vm": "web-1", "target": "web-2", **fields})


def test_good_clone_input_passes() -> None:
    check_clone_input(clone_input(
        label_filters=["app*", "!app.kubernetes.io/managed-by"], annotation_filters=["*"],
        patches=['{"op": "add", "path": "/spec/runStrategy", "value": "Always"}',
                 '[{"op": "remove", "path": "/metadata/labels/x"}]'],
        new_mac_addresses={"default": "02:00:00:00:00:01"}))


@pytest.mark.parametrize(("fields", "message"), [
    ({"label_filters": ["a*b"]}, "bad label filter"),
    ({"annotation_filters": ["!"]}, "empty annotation filter"),
    ({"patches": ["{nope"]}, "not JSON"),
    ({"patches": ['{"op": "add", "path": "/spec/template/spec/volumes/-", "value": '
                  '{"name": "t", "serviceAccount": {"serviceAccountName": "admin"}}}']},
     "serviceAccount volume"),
    ({"patches": ['{"op": "add", "path": "/metadata/annotations/hooks.kubevirt.io~1x", '
                  '"value": "[]"}']}, "sidecar"),
    ({"patches": ['{"op": "copy", "from": "status", "path": "/spec/x"}']}, "JSON pointer"),
    ({"patches": ['{"op": "frob", "path": "/spec/x"}']}, "unknown operation"),
])
def test_bad_clone_input(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_clone_input(clone_input(**fields))


def test_a_path_outside_the_default_allowlist_is_left_to_the_worker() -> None:
    """The worker's operator may widen the allowlist: only what no policy allows is
    refused before the request leaves."""
    check_clone_input(clone_input(patches=['{"op": "add", "path": "/status/x", "value": 1}']))


@pytest.mark.parametrize(("fields", "message"), [
    ({"target": "Web_2"}, "target"),
    ({"target": "web.2"}, "target"),
    ({"source_vm": "-web"}, "source_vm"),
])
def test_bad_clone_names_are_refused_by_the_input_model(fields: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        clone_input(**fields)


def test_a_bad_mac_is_refused_by_the_input_model_itself() -> None:
    """The workflow's own input refuses it too, so the Temporal CLI gets the same answer."""
    with pytest.raises(ValidationError, match="is not a MAC address"):
        clone_input(new_mac_addresses={"eth0": "nope"})


def test_bad_restore_input() -> None:
    check_restore_input(RestoreVirtualMachineInput(namespace="demo", snapshot="s-1",
                                                   target="web-2"))
    with pytest.raises(ValidationError, match="target"):
        RestoreVirtualMachineInput(namespace="demo", snapshot="s-1", target="Web 2")
    with pytest.raises(InvalidRequest, match="target"):
        check_restore_input(RestoreVirtualMachineInput.model_construct(
            namespace="demo", snapshot="s-1", target="Web 2"))


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """No kubeconfig and no Temporal: any contact would fail with another message."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    return CliRunner()


@pytest.mark.parametrize(("args", "expected"), [
    (["clone", "--from-snapshot", "s-1", "--from-vm", "web-1", "x-1"],
     "error: give exactly one of --from-vm and --from-snapshot"),
    (["clone", "x-1"], "error: give exactly one of --from-vm and --from-snapshot"),
    (["clone", "--from-vm", "web-1", "--new-mac", "default=02:00:00:00:00", "x-1"],
     "is not a MAC address"),
    (["clone", "--from-vm", "web-1", "--new-mac", "02:00:00:00:00:01", "x-1"],
     "expected IFACE=MAC"),
    (["clone", "--from-vm", "web-1", "--patch",
      '{"op": "add", "path": "/spec/template/spec/volumes/0/hostDisk", "value": {}}', "x-1"],
     "is refused"),
    (["clone", "--from-vm", "web-1", "--label-filter", "a*b", "x-1"], "bad label filter"),
    (["clone", "--from-vm", "web-1", "Bad_Name"], "target"),
    (["clone", "--from-vm", "web-1", "--run-strategy", "Sometimes", "x-1"], "--run-strategy"),
    (["restore", "s-1", "--running-vm-policy", "kill"], "--running-vm-policy"),
    (["restore", "s-1", "--target", "Not_A_Name"], "--target"),
    (["restore", "Bad_Snap"], "snapshot"),
])
def test_cli_bad_input_is_one_line_and_exit_2(
    runner: CliRunner, args: list[str], expected: str
) -> None:
    result = runner.invoke(app, [*args, "-n", "demo"])
    stderr = getattr(result, "stderr")  # noqa: B009
    assert result.exit_code == 2, (result.stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert expected in lines[0], lines[0]
    assert result.stdout.strip() == ""
