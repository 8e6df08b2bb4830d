"""The `vmsnap` CLI on bad input and unreachable servers, through typer's CliRunner.

Every error is one line on stderr, never a traceback, with a non-zero exit:
2 for bad input (checked before anything is contacted), 1 when a server
cannot be reached. The unreachable Temporal is a real closed port.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starter.cli import app


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """No kubeconfig, no Temporal profile: nothing from this machine leaks in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(_empty_toml(tmp_path)))
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_PROFILE",
                 "TEMPORAL_API_KEY", "VMSNAP_CODEC_KEY", "VMSNAP_CODEC_KEY_FILE",
                 "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _empty_toml(tmp_path: Path) -> Path:
    path = tmp_path / "temporal.toml"
    path.write_text("")
    return path


def one_line_error(result: object, code: int) -> str:
    """The single stderr line of a failed command (and nothing on stdout)."""
    exit_code = getattr(result, "exit_code")  # noqa: B009
    stderr = getattr(result, "stderr")  # noqa: B009
    stdout = getattr(result, "stdout")  # noqa: B009
    assert exit_code == code, (exit_code, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines
    assert stdout.strip() == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["snapshot", "create", "web-1", "-n", "demo", "--deadline", "5x"],
         "error: --deadline: invalid duration '5x'"),
        (["snapshot", "create", "web-1", "-n", "demo", "--ready-deadline", "-1m"],
         "error: --ready-deadline: invalid duration '-1m': negative"),
        (["snapshot", "create", "Web_1", "-n", "demo"], "error: vm 'Web_1' is not a valid name"),
        (["snapshot", "create", "web-1", "-n", "demo", "--name", "Bad Name"],
         "error: --name: name 'Bad Name' is not a valid name"),
        (["snapshot", "create", "web-1", "-n", "Demo"],
         "error: namespace 'Demo' is not a valid name"),
        (["snapshot", "create", "web-1", "-n", "demo", "--quiesce", "sometimes"],
         "error: --quiesce 'sometimes': use auto, required or skip"),
        (["snapshot", "create", "web-1", "-n", "demo", "--deletion-policy", "Keep"],
         "error: --deletion-policy 'Keep': use Delete or Retain"),
        (["snapshot", "create", "web-1", "-n", "demo", "--label", "novalue"],
         "error: --label 'novalue': expected key=value"),
        (["snapshot", "create", "web-1", "-n", "demo", "--label", "vmsnap.io/vm=x"],
         "error: --label: label key 'vmsnap.io/vm': keys under vmsnap.io are reserved"),
        (["snapshot", "create", "-n", "demo"], "error: Missing argument 'VM'."),
        (["snapshot", "create", "web-1", "--bogus"], "error: No such option: --bogus"),
        # -l selects on the list verbs; labels to set are --label
        (["snapshot", "create", "web-1", "-n", "demo", "-l", "a=b"],
         "error: No such option: -l"),
        (["snapshot", "list", "-n", "demo", "-l", "tier in (a"],
         "error: --selector: label selector 'tier in (a': 'tier in (a' is not a requirement"),
        (["snapshot", "get", "UPPER", "-n", "demo"],
         "error: snapshot name 'UPPER' is not a valid name"),
        (["snapshot", "plan", "web-1", "-n", "demo", "--quiesce", "x"],
         "error: --quiesce 'x': use auto, required or skip"),
    ],
)
def test_bad_snapshot_input_is_one_line_and_exit_2(
    runner: CliRunner, args: list[str], expected: str
) -> None:
    line = one_line_error(runner.invoke(app, args), 2)
    assert line.startswith(expected), line


SCHEDULE = ["schedule", "create", "nightly", "-n", "demo"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--vm", "web-1", "--cron", "0 25 * * *", "--keep", "7"],
         "error: --cron: cron expression '0 25 * * *': hour '25' is out of range 0-23"),
        (["--vm", "web-1", "--cron", "0 2 * *", "--keep", "7"],
         "error: --cron: cron expression '0 2 * *' must have 5 fields"),
        (["--vm", "web-1", "--cron", "0 2 * * funday", "--keep", "7"],
         "error: --cron: cron expression '0 2 * * funday': day of week 'funday' is not a number"),
        (["--vm", "web-1", "--cron", "*/0 * * * *", "--keep", "7"],
         "error: --cron: cron expression '*/0 * * * *': minute '*/0' has an invalid step"),
        (["--vm", "web-1", "--every", "6x", "--keep", "7"],
         "error: --every: invalid duration '6x'"),
        (["--vm", "web-1", "--every", "500ms", "--keep", "7"],
         "error: --every: the interval must be at least 1s"),
        (["--vm", "web-1", "--every", "1h", "--jitter", "2h", "--keep", "7"],
         "error: the jitter must be shorter than the interval"),
        (["--vm", "web-1", "--cron", "0 2 * * *", "--time-zone", "Mars/Base", "--keep", "7"],
         "error: --time-zone: unknown time zone 'Mars/Base'"),
        (["--vm", "web-1", "--cron", "0 2 * * *", "--every", "6h", "--keep", "7"],
         "error: give exactly one of --cron and --every"),
        (["--vm", "web-1", "--cron", "0 2 * * *"], "error: --keep is required"),
        (["--vm", "web-1", "--cron", "0 2 * * *", "--keep", "0"],
         "error: --keep: Input should be greater than or equal to 1"),
        (["--cron", "0 2 * * *", "--keep", "7"], "error: give exactly one of --vm and --selector"),
        (["--vm", "web-1", "--selector", "app=web", "--every", "6h", "--keep", "7"],
         "error: give exactly one of --vm and --selector"),
        (["--selector", "app==", "--every", "6h", "--keep", "7", "--selector", "a=(b"],
         "error: --selector: label selector 'a=(b'"),
        (["--vm", "web-1", "--every", "6h", "--keep", "3", "--label",
          "schedule.vmsnap.io/name=other"],
         "error: --label: label key 'schedule.vmsnap.io/name': keys under vmsnap.io are reserved"),
    ],
)
def test_bad_schedule_input_is_one_line_and_exit_2(
    runner: CliRunner, args: list[str], expected: str
) -> None:
    line = one_line_error(runner.invoke(app, [*SCHEDULE, *args]), 2)
    assert line.startswith(expected), line


def test_bad_schedule_name_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["schedule", "create", "Nightly.1", "--vm", "web-1",
                                 "--every", "6h", "--keep", "2", "-n", "demo"])
    line = one_line_error(result, 2)
    assert line.startswith("error: schedule name 'Nightly.1' is not a valid name")


def test_unreachable_temporal_names_the_address(runner: CliRunner, closed_port: int) -> None:
    address = f"127.0.0.1:{closed_port}"
    result = runner.invoke(app, ["--address", address, "snapshot", "create", "web-1",
                                 "-n", "demo", "--no-check"])
    line = one_line_error(result, 1)
    assert line == f"error: Temporal unreachable at {address}: connection refused " \
                   "(is the server running?)"


def test_unreachable_temporal_for_schedules_too(runner: CliRunner, closed_port: int) -> None:
    address = f"127.0.0.1:{closed_port}"
    result = runner.invoke(app, ["--address", address, "schedule", "list", "-n", "demo"])
    assert one_line_error(result, 1).startswith(f"error: Temporal unreachable at {address}")


def test_an_address_that_is_not_host_port_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--address", "nowhere", "schedule", "list", "-n", "demo"])
    assert "is not HOST:PORT" in one_line_error(result, 1)


def test_listing_snapshots_without_a_kubeconfig_says_so(runner: CliRunner) -> None:
    result = runner.invoke(app, ["snapshot", "list", "-n", "demo"])
    line = one_line_error(result, 1)
    assert line.startswith("error: Kubernetes: KUBECONFIG="), line
    assert "names no existing file" in line


def test_no_arguments_prints_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "snapshot" in result.stdout + result.stderr
    assert "schedule" in result.stdout + result.stderr
