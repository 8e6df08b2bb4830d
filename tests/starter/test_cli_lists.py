"""The list verbs in kubectl's habits: `-l/--selector` is a label selector on every one of
them (and nothing else), `-o wide` adds columns; plus `vmsnap version` and completion.

The verbs run through typer's CliRunner against a stand-in client (no Temporal, no
cluster); the SDK's selector parameters against stand-in Temporal and cluster objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import typer
from typer.testing import CliRunner

from starter import cli_common
from starter.cli import app, runs_table
from starter.cli_schedule import SCHEDULE_WIDE_COLUMNS, schedule_table
from starter.cli_selectors import parse_selector, selector_matches
from starter.cli_snapshot import SNAPSHOT_WIDE_COLUMNS, snapshot_table
from starter.local_stack import REPO_ROOT
from starter.sdk import RunInfo, ScheduleInfo, SnapshotInfo, VmsnapClient

NOW = datetime.now(UTC)


# ---- the selector grammar ----------------------------------------------------------------


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=", {"app": ""}, True),  # an empty value, as upstream allows
    ("app!=web", {}, True),  # != and notin match objects without the label
    ("app!=web", {"app": "web"}, False),
    ("tier in (a, b)", {"tier": "b"}, True),
    ("tier in (a,b)", {}, False),
    ("tier notin (a,b)", {"tier": "c"}, True),
    ("tier notin (a,b)", {}, True),
    ("legacy", {"legacy": ""}, True),
    ("!legacy", {"legacy": "x"}, False),
    ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "a"}, True),
    ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "a", "legacy": "1"}, False),
    ("schedule.vmsnap.io/name=nightly", {"schedule.vmsnap.io/name": "nightly"}, True),
])
def test_selectors_mean_what_they_mean_to_kubectl(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize("bad", ["", "=web,", "tier in (a", "tier in ()", "a b", "app=w eb"])
def test_a_selector_that_does_not_parse_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"label selector|empty"):
        parse_selector(bad)


# ---- every list verb has -l/--selector and -o wide ---------------------------------------


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the app (click's, as typer builds them), by its path of names."""
    yield path, group
    for name, command in (getattr(group, "commands", None) or {}).items():
        yield from commands(command, (*path, name))


ALL_COMMANDS = list(commands(typer.main.get_command(app)))
LIST_VERBS = [(path, command) for path, command in ALL_COMMANDS
              if path and path[-1] in ("list", "runs")]


def _option(command: Any, flag: str) -> Any:
    """The option of `command` spelled `flag`, or None."""
    return next((p for p in command.params
                 if flag in getattr(p, "opts", ()) and not getattr(p, "is_argument", False)),
                None)


def test_the_list_verbs_are_the_ones_documented() -> None:
    assert sorted(" ".join(path) for path, _ in LIST_VERBS) == [
        "runs", "schedule list", "snapshot list"]


def test_minus_l_is_a_label_selector_wherever_it_is_a_flag() -> None:
    for path, command in ALL_COMMANDS:
        option = _option(command, "-l")
        if option is not None:
            assert "--selector" in option.opts, path


# ---- the verbs, against a stand-in client ------------------------------------------------


def snapshot(name: str, **fields: Any) -> SnapshotInfo:
    return SnapshotInfo(namespace="demo", name=name, vm="web-1", phase="Succeeded",
                        ready_to_use=True,
                        created=datetime.now(UTC) - timedelta(seconds=12_000),
                        quiesce="auto", failure_deadline="5m", deletion_policy="Delete",
                        workflow_id=f"snapshot/demo/{name}", **fields)


def schedule(name: str, labels: dict[str, str]) -> ScheduleInfo:
    return ScheduleInfo(name=name, namespace="demo", schedule_id=f"vmsnap.demo.{name}",
                        vm="web-1", selector=None, keep=7, labels=labels, timing=None,
                        quiesce="auto", failure_deadline="5m", paused=False, note=None)


class StandIn:
    """What the list verbs ask of a VmsnapClient, with the arguments they passed."""

    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    async def list_snapshots(self, namespace: str | None, **filters: Any) -> list[SnapshotInfo]:
        self.asked = {"namespace": namespace, **filters}
        return [snapshot("web-1-a")]

    async def list_schedules(self, namespace: str | None) -> list[ScheduleInfo]:
        return [schedule("nightly", {"team": "db", "schedule.vmsnap.io/name": "nightly"}),
                schedule("hourly", {"team": "web", "schedule.vmsnap.io/name": "hourly"})]

    async def list_runs(self, namespace: str | None, **filters: Any) -> list[RunInfo]:
        self.asked = {"namespace": namespace, **filters}
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    client = StandIn()
    monkeypatch.setattr(cli_common, "make_client", lambda ctx: client)
    monkeypatch.setenv("KUBECONFIG", os.devnull)
    return client


@pytest.mark.parametrize("path", [path for path, _ in LIST_VERBS], ids=" ".join)
def test_every_list_verb_selects_by_label_and_goes_wide(
    path: tuple[str, ...], stand_in: StandIn
) -> None:
    command = dict(LIST_VERBS)[path]
    assert "--selector" in _option(command, "-l").opts, path
    result = CliRunner().invoke(app, [*path, "-n", "demo", "-l", "app=web", "-o", "wide"])
    assert result.exit_code == 0, (path, result.output)


def test_snapshot_list_passes_the_selector_and_widens(stand_in: StandIn) -> None:
    result = CliRunner().invoke(app, ["snapshot", "list", "-n", "demo", "-l", "app=web",
                                      "-o", "wide"])
    assert result.exit_code == 0, result.output
    assert stand_in.asked["selector"] == "app=web"
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:8] == ["NAME", "VM", "PHASE", "READY", "INDICATIONS", "FREEZE",
                                  "VOLUMES", "AGE"]
    assert "QUIESCE" in header and "WORKFLOW" in header
    assert "3h20m" in row.split() and "snapshot/demo/web-1-a" in row.split()


def test_schedule_list_keeps_the_schedules_whose_labels_match(stand_in: StandIn) -> None:
    result = CliRunner().invoke(app, ["schedule", "list", "-n", "demo", "-l", "team in (db)",
                                      "-o", "json"])
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in json.loads(result.stdout)] == ["nightly"]


def test_runs_passes_the_selector(stand_in: StandIn) -> None:
    result = CliRunner().invoke(app, ["runs", "-n", "demo", "--selector", "app=web"])
    assert result.exit_code == 0, result.output
    assert stand_in.asked["selector"] == "app=web" and stand_in.asked["namespace"] == "demo"


# ---- wide tables -------------------------------------------------------------------------


def headers(table: Any) -> list[str]:
    return [str(column.header) for column in table.columns]


def test_wide_adds_columns_and_keeps_the_narrow_ones_first() -> None:
    narrow, wide = snapshot_table([snapshot("a")]), snapshot_table([snapshot("a")], wide=True)
    assert headers(wide)[:len(headers(narrow)) - 1] == headers(narrow)[:-1]
    assert headers(wide)[-1] == headers(narrow)[-1] == "ERROR"
    assert set(SNAPSHOT_WIDE_COLUMNS) <= set(headers(wide))
    info = schedule("nightly", {"team": "db"})
    assert headers(schedule_table([info], wide=True))[-len(SCHEDULE_WIDE_COLUMNS):] == \
        SCHEDULE_WIDE_COLUMNS
    run = RunInfo(workflow_id="snapshot/demo/a", run_id="r1",
                  workflow_type="SnapshotVirtualMachine", status="COMPLETED", start_time=NOW)
    assert headers(runs_table([run], wide=True))[-1] == "RUN ID"
    assert "RUN ID" not in headers(runs_table([run]))


# ---- the SDK's selector parameters -------------------------------------------------------


class Cluster:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.selectors: list[str] = []

    def list_custom(self, resource: Any, namespace: str | None, selector: str) -> dict[str, Any]:
        self.selectors.append(selector)
        return {"items": self.items}


class Temporal:
    def __init__(self) -> None:
        self.queries: list[str | None] = []

    def list_workflows(self, query: str | None, limit: int) -> AsyncIterator[Any]:
        self.queries.append(query)

        async def nothing() -> AsyncIterator[Any]:
            for item in list[Any]():
                yield item

        return nothing()


def vm(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}}


async def test_list_snapshots_sends_the_selector_to_the_api_server() -> None:
    cluster = Cluster([])
    client = VmsnapClient(cluster=cast(Any, cluster))
    await client.list_snapshots("demo", vm="web-1", selector="app=web")
    assert cluster.selectors == ["app=web,vmsnap.io/vm=web-1"]


async def test_list_runs_asks_for_the_runs_of_the_matching_vms() -> None:
    temporal = Temporal()
    cluster = Cluster([vm("demo", "web-2"), vm("demo", "web-1"), vm("prod", "web-9")])
    client = VmsnapClient(cast(Any, temporal), cluster=cast(Any, cluster), cluster_id="east")
    assert await client.list_runs(None, selector="app=web") == []
    assert cluster.selectors == ["app=web"]
    assert temporal.queries == [
        'VmsnapCluster = "east" AND '
        '((VmNamespace = "demo" AND VmName IN ("web-1", "web-2")) OR '
        '(VmNamespace = "prod" AND VmName IN ("web-9")))']


async def test_list_runs_of_a_selector_that_matches_nothing_asks_temporal_nothing() -> None:
    temporal = Temporal()
    client = VmsnapClient(cast(Any, temporal), cluster=cast(Any, Cluster([])),
                          cluster_id="east")
    assert await client.list_runs("demo", selector="app=none") == []
    assert temporal.queries == []


# ---- version and completion --------------------------------------------------------------


def test_version_names_vmsnap_the_temporal_sdk_and_python() -> None:
    result = CliRunner().invoke(app, ["version", "-o", "json"])
    assert result.exit_code == 0, result.output
    versions = json.loads(result.stdout)
    assert versions["vmsnap"] == "0.1.0"
    assert versions["temporalio"].split(".")[0] == "1"
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    plain = CliRunner().invoke(app, ["version"]).stdout.splitlines()
    assert plain[0] == "vmsnap 0.1.0" and plain[1].startswith("temporalio ")


def complete(words: str, cword: int) -> list[str]:
    """What bash completion offers for `words` (the variables typer's bash script sets)."""
    env = {**os.environ, "_VMSNAP_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}
    done = subprocess.run([sys.executable, "-c", "from starter.cli import run_command; "
                           "run_command()"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.split()


def test_shell_completion_is_on() -> None:
    # Ask for bash by name: detection would find whatever shell runs the suite.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
        script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="vmsnap")
    assert script.exit_code == 0, script.output
    assert "_VMSNAP_COMPLETE=complete_bash" in script.stdout
    assert complete("vmsnap snap", 1) == ["snapshot"]
    assert "--selector" in complete("vmsnap snapshot list --sel", 3)
