"""`vmsnap console` on unsafe or bad settings: one line, exit 2, nothing served."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from starter.cli import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("VMSNAP_CONSOLE_TOKEN", "VMSNAP_CONSOLE_USER_HEADER",
                 "VMSNAP_CONSOLE_NAMESPACES", "VMSNAP_TEMPORAL_UI"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "with no authentication"),
    (["--token", "short"], "at least 16 characters"),
    (["--trusted-user-header", "X-User: me"], "is not a header name"),
    (["--namespaces", "Demo"], "--namespaces: namespace"),
    (["--namespaces", "*,demo"], "cannot be combined"),
    (["--fresh-for", "soon"], "invalid duration"),
    (["--temporal-ui", "localhost:8233"], "is not an http(s) URL"),
    (["--port", "70000"], "is not a TCP port"),
])
def test_unsafe_or_bad_settings_are_refused_before_serving(
        runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["console", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_missing_token_file_is_named(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["console", "--token-file", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "--token-file" in result.output and "absent" in result.output
