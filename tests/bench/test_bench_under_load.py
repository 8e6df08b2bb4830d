"""The under-load benchmark's pure parts: per-guest figures from log lines, percentiles per
wave, the aims, the worker settings, the requests per mode, the seed and the section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import report
from bench.records import Machine, Record, save
from bench.render import under_load as render
from bench.render.common import TIMES
from bench.seeds import DEFAULT_GROUP_CLASS, DRIVER
from bench.under_load import (
    create_arrivals,
    creation_times,
    label_selector,
    seed_documents,
    snapshot_name,
    snapshot_request,
    worker_settings,
)
from bench.under_load_figures import (
    Guest,
    Wave,
    cell_figures,
    guest_figures,
    spread,
    storage_cut_ms,
)
from simulator import annotations as ann
from simulator.reference import find_reference_dir, load_reference
from simulator.registry import Registry
from simulator.runtime import DEFAULT_CRDS_DIR
from simulator.seeding import load_seed_files
from simulator.store import Store
from simulator.writes import Writer
from tests.bench.test_bench_report import _store, _summary


def _freeze(vm: str, frozen: str, thawed: str | None, namespace: str = "bench"
            ) -> dict[str, Any]:
    return {"namespace": namespace, "vmi": vm, "frozen_at": f"2026-01-02T10:00:{frozen}Z",
            "thawed_at": None if thawed is None else f"2026-01-02T10:00:{thawed}Z",
            "thawed_by": None if thawed is None else "unfreeze"}


def _t(text: str) -> str:
    """TEXT with each * between two numbers (`50*8`, `50 * 8`) the report's sign."""
    return re.sub(r"(\d ?)\*( ?\d)", rf"\1{TIMES}\2", text)


def _at(seconds: str) -> str:
    return f"2026-01-02T10:00:{seconds}Z"


# ---- per guest ----------------------------------------------------------------------------


def test_a_guest_is_frozen_from_its_freeze_to_its_unfreeze_and_thaws_after_its_last_cut(
        ) -> None:
    log = [_freeze("vm-a", "01.000000", "01.260000"),
           _freeze("vm-b", "00.000000", "09.000000"),  # another guest
           _freeze("vm-a", "00.000000", "05.000000", namespace="other")]  # another namespace
    guest = guest_figures("vm-a", "bench", log, [_at("01.150000"), _at("01.230000")], [], None)
    assert guest.frozen_ms == pytest.approx(260.0)
    assert guest.thaw_after_last_cut_ms == pytest.approx(30.0)
    assert (guest.freezes, guest.group_cut, guest.succeeded) == (1, False, True)


def test_the_storages_own_cut_is_its_slowest_from_create_to_creation_time() -> None:
    assert storage_cut_ms([(_at("01.250000"), _at("01.040000")),
                           (_at("01.300000"), _at("01.050000")),
                           (_at("01.900000"), None)]) == pytest.approx(250.0)
    assert storage_cut_ms([(_at("01.2"), None)]) is None
    guest = guest_figures("vm-a", "bench", [_freeze("vm-a", "01.0", "01.3")], [_at("01.25")],
                          [], None, 210.0)
    assert guest.storage_cut_ms == 210.0


def test_a_group_cut_is_the_last_cut_and_marks_the_guest_cut_as_a_group() -> None:
    log = [_freeze("vm-a", "01.000000", "01.250000")]
    guest = guest_figures("vm-a", "bench", log, [], [_at("01.210000")], None)
    assert guest.group_cut
    assert guest.thaw_after_last_cut_ms == pytest.approx(40.0)


def test_every_freeze_of_a_guest_counts_and_its_last_thaw_is_judged() -> None:
    log = [_freeze("vm-a", "01.000000", "01.100000"), _freeze("vm-a", "02.000000", "02.300000")]
    guest = guest_figures("vm-a", "bench", log, [_at("02.280000")], [], None)
    assert guest.frozen_ms == pytest.approx(400.0)
    assert guest.freezes == 2
    assert guest.thaw_after_last_cut_ms == pytest.approx(20.0)


def test_a_guest_never_frozen_or_never_cut_has_no_such_figure() -> None:
    never_frozen = guest_figures("vm-a", "bench", [], [_at("01.000000")], [], None)
    assert never_frozen.frozen_ms is None and never_frozen.thaw_after_last_cut_ms is None
    never_cut = guest_figures("vm-a", "bench", [_freeze("vm-a", "01.0", "01.5")], [], [],
                              "SnapshotFailed: no cut")
    assert never_cut.frozen_ms == pytest.approx(500.0)
    assert never_cut.thaw_after_last_cut_ms is None
    assert not never_cut.succeeded


def test_a_guest_still_frozen_fails_whatever_the_workflow_said() -> None:
    guest = guest_figures("vm-a", "bench", [_freeze("vm-a", "01.0", None)], [_at("01.2")], [],
                          None)
    assert guest.failure == "still frozen when the wave ended"
    assert guest.frozen_ms is None


# ---- per wave -----------------------------------------------------------------------------


def test_spread_is_median_p95_and_max_by_linear_interpolation() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert spread(values) == {"median": 10.5, "p95": 19.1, "max": 20.0}
    assert spread([]) is None


def _guest(frozen: float | None, after: float | None, failure: str | None = None,
           group: bool = False) -> Guest:
    return Guest("vm", failure, frozen, 0 if frozen is None else 1, after, group)


def test_a_wave_keeps_counts_and_its_guests_spreads_against_the_cut() -> None:
    guests = (_guest(220.0, 10.0), _guest(240.0, 20.0, group=True),
              _guest(300.0, 30.0, "SnapshotFailed: x"), _guest(None, None, "SnapshotFailed: x"))
    cell = cell_figures(Wave("group", 4, 8, guests, 3.456, 0.8), cut_ms=200.0)
    assert {k: cell[k] for k in ("mode", "vms", "disks", "guests", "succeeded", "frozen",
                                 "group_cuts", "wall_s", "worker_cpu_per_snapshot_ms")} == {
        "mode": "group", "vms": 4, "disks": 8, "guests": 4, "succeeded": 2, "frozen": 3,
        "group_cuts": 1, "wall_s": 3.46, "worker_cpu_per_snapshot_ms": 200.0}
    assert cell["frozen_ms"] == {"median": 240.0, "p95": 294.0, "max": 300.0}
    assert cell["frozen_per_cut"] == {"median": 1.2, "p95": 1.47, "max": 1.5}
    assert cell["storage_cut_ms"] is None and cell["frozen_per_storage_cut"] is None
    timed = (Guest("vm", None, 300.0, 1, 10.0, False, 250.0),
             Guest("vm", None, 220.0, 1, 10.0, False, 200.0), _guest(240.0, 20.0))
    own = cell_figures(Wave("per-disk", 3, 8, timed, 1.0, 0.1), cut_ms=200.0)
    assert own["storage_cut_ms"] == {"median": 225.0, "p95": 247.5, "max": 250.0}
    assert own["frozen_per_storage_cut"] == {"median": 1.15, "p95": 1.195, "max": 1.2}
    assert cell["failures"] == {"SnapshotFailed: x": 2}
    with pytest.raises(ValueError, match="cut latency must be positive"):
        cell_figures(Wave("group", 4, 8, guests, 1.0, 0.1), cut_ms=0)


# ---- aims ---------------------------------------------------------------------------------


def _cell(mode: str, vms: int, disks: int, p95_ratio: float | None, thaw_p95: float,
          succeeded: int | None = None, group_cuts: int | None = None) -> dict[str, Any]:
    ratio = None if p95_ratio is None else {"median": 1.1, "p95": p95_ratio, "max": p95_ratio}
    return {"mode": mode, "vms": vms, "disks": disks, "guests": vms,
            "succeeded": vms if succeeded is None else succeeded, "frozen": vms,
            "group_cuts": (vms if mode == "group" else 0) if group_cuts is None else group_cuts,
            "wall_s": 5.0, "worker_cpu_s": 1.0, "worker_cpu_per_snapshot_ms": 40.0,
            "frozen_ms": None if ratio is None else {k: v * 200 for k, v in ratio.items()},
            "frozen_per_cut": None if ratio is None else {k: v * 1.1 for k, v in ratio.items()},
            "storage_cut_ms": None if ratio is None else {"median": 200.0, "p95": 210.0,
                                                          "max": 220.0},
            "frozen_per_storage_cut": ratio,
            "thaw_after_last_cut_ms": {"median": 10.0, "p95": thaw_p95, "max": thaw_p95 + 5},
            "failures": {}}


def test_the_ratio_aim_is_judged_on_its_two_cells_as_shown() -> None:
    cells = [_cell("per-disk", 50, 8, 1.254, 20), _cell("group", 200, 8, 1.1, 30)]
    judged = render.ratio_verdict(cells)
    assert judged.met is True  # 1.254 is shown 1.25
    assert judged.figure == _t("50*8 per disk 1.25; 200*8 group 1.10")
    over = render.ratio_verdict([_cell("per-disk", 50, 8, 1.3, 20), cells[1]])
    assert over.met is False


@pytest.mark.parametrize(("cells", "figure"), [
    ([_cell("per-disk", 50, 8, 1.1, 20)], _t("50*8 per disk 1.10; 200*8 group not measured")),
    ([_cell("per-disk", 50, 8, 1.1, 20), _cell("group", 200, 8, 1.1, 20, group_cuts=150)],
     _t("50*8 per disk 1.10; 200*8 group 1.10 (only 150 of 200 cut as a group)")),
    ([_cell("per-disk", 50, 8, 1.1, 20, succeeded=49), _cell("group", 200, 8, 1.1, 20)],
     _t("50*8 per disk 1.10 (49 of 50 Succeeded); 200*8 group 1.10")),
    ([_cell("per-disk", 50, 8, None, 20), _cell("group", 200, 8, 1.1, 20)],
     _t("50*8 per disk: none frozen; 200*8 group 1.10")),
])
def test_the_ratio_aim_is_not_met_by_a_cell_missing_failed_or_not_cut_as_a_group(
        cells: list[dict[str, Any]], figure: str) -> None:
    judged = render.ratio_verdict(cells)
    assert (judged.met, judged.figure) == (False, figure)


def test_the_thaw_aim_holds_in_every_wave_and_names_the_worst() -> None:
    within = [_cell("per-disk", 10, 1, 1.1, 12), _cell("per-disk", 200, 8, 1.4, 50.4)]
    assert render.thaw_verdict(within).met is True
    over = render.thaw_verdict([*within, _cell("group", 200, 8, 1.1, 80)])
    assert over.met is False
    assert over.figure == _t("worst p95 80 ms at 200*8 group; 1 of 3 waves over")


# ---- harness inputs -----------------------------------------------------------------------


def test_worker_settings_measure_each_value_of_a_repeated_variable() -> None:
    assert worker_settings([]) == [{}]
    assert worker_settings(["VMSNAP_MAX_FREEZES_IN_FLIGHT=0",
                            "VMSNAP_MAX_CONCURRENT_ACTIVITIES=100",
                            "VMSNAP_MAX_FREEZES_IN_FLIGHT=16"]) == [
        {"VMSNAP_MAX_FREEZES_IN_FLIGHT": "0", "VMSNAP_MAX_CONCURRENT_ACTIVITIES": "100"},
        {"VMSNAP_MAX_FREEZES_IN_FLIGHT": "16", "VMSNAP_MAX_CONCURRENT_ACTIVITIES": "100"}]


@pytest.mark.parametrize(("assignments", "message"), [
    (["KUBECONFIG=/x"], "is not VMSNAP_NAME=VALUE"),
    (["VMSNAP_MAX_FREEZES_IN_FLIGHT"], "is not VMSNAP_NAME=VALUE"),
    (["VMSNAP_=1"], "is not VMSNAP_NAME=VALUE"),
    (["VMSNAP_X=1", "VMSNAP_X=1"], "given twice"),
    (["VMSNAP_MAX_CONCURRENT_ACTIVITIES=lots"], "VMSNAP_MAX_CONCURRENT_ACTIVITIES"),
])
def test_bad_worker_settings_are_refused(assignments: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        worker_settings(assignments)


def test_each_mode_sends_its_group_snapshot_input() -> None:
    per_disk = snapshot_request("per-disk", "vm-d8-0001", "n")
    group = snapshot_request("group", "vm-d8-0001", "n")
    assert per_disk.group_snapshot == "never"
    assert group.group_snapshot == "auto"
    assert (group.namespace, group.vm, group.name) == ("bench", "vm-d8-0001", "n")
    with pytest.raises(ValueError, match="unknown mode"):
        snapshot_request("both", "vm", "n")


def test_snapshot_names_are_unique_per_wave_and_found_by_their_label() -> None:
    names = {snapshot_name(s, m, n, d, i) for s in (0, 1) for m in ("per-disk", "group")
             for n in (10, 200) for d in (1, 8) for i in range(3)}
    assert len(names) == 2 * 2 * 2 * 2 * 3
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name) for name in names)
    assert label_selector(["a", "b"]) == "vmsnap.io/snapshot in (a,b)"
    items: list[dict[str, Any]] = [
        {"metadata": {"name": "a-1", "labels": {"vmsnap.io/snapshot": "a"}},
         "status": {"creationTime": "t1"}},
        {"metadata": {"name": "a-2", "labels": {"vmsnap.io/snapshot": "a"}},
         "status": {"creationTime": "t2"}},
        {"metadata": {"name": "b-1", "labels": {"vmsnap.io/snapshot": "b"}},
         "status": {}},  # not cut
        {"metadata": {"name": "x"}, "status": {"creationTime": "t3"}}]  # not a snapshot's
    assert creation_times(items) == {"a": [("a-1", "t1"), ("a-2", "t2")]}


def test_creates_arrive_by_name_from_the_request_log() -> None:
    log = [{"verb": "create", "resource": "volumesnapshots", "namespace": "bench",
            "status": 201, "created": "a-1", "time": "t1"},
           {"verb": "create", "resource": "volumesnapshots", "namespace": "bench",
            "status": 409, "created": "", "time": "t2"},  # refused: no object
           {"verb": "create", "resource": "volumesnapshots", "namespace": "other",
            "status": 201, "created": "a-2", "time": "t3"},
           {"verb": "get", "resource": "volumesnapshots", "namespace": "bench",
            "status": 200, "created": "", "time": "t4"},
           {"verb": "create", "resource": "volumegroupsnapshots", "namespace": "bench",
            "status": 201, "created": "g-1", "time": "t5"}]
    assert create_arrivals(log, "volumesnapshots") == {"a-1": "t1"}
    assert create_arrivals(log, "volumegroupsnapshots") == {"g-1": "t5"}


def test_the_seed_has_each_fleet_once_and_a_default_group_class_of_the_same_cut(
        tmp_path: Path) -> None:
    docs = seed_documents(3, [1, 8], "200ms")
    vms = [d["metadata"]["name"] for d in docs if d["kind"] == "VirtualMachine"]
    assert vms == [f"vm-d{d}-{i:04d}" for d in (1, 8) for i in range(3)]
    assert sum(1 for d in docs if d["kind"] == "PersistentVolumeClaim") == 3 * 9
    [group_class] = [d for d in docs if d["kind"] == "VolumeGroupSnapshotClass"]
    [snapshot_class] = [d for d in docs if d["kind"] == "VolumeSnapshotClass"]
    assert group_class["driver"] == snapshot_class["driver"] == DRIVER
    assert group_class["metadata"]["annotations"][DEFAULT_GROUP_CLASS] == "true"
    for made in (group_class, snapshot_class):
        assert ann.latency(made, ann.CUT_LATENCY) == pytest.approx(0.2)
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    store = Store()
    registry = Registry(store, load_reference(find_reference_dir(None), DEFAULT_CRDS_DIR))
    registry.install()
    try:
        assert load_seed_files(Writer(store, registry), registry, [path]) == len(docs)
    finally:
        registry.close()


# ---- the section --------------------------------------------------------------------------


def _figures(settings: list[dict[str, str]]) -> dict[str, Any]:
    cells = [_cell("per-disk", n, d, 1.0 + n / 400, 10 + n / 10)
             for d in (1, 8) for n in (10, 50, 200)]
    cells += [_cell("group", n, d, 1.05, 12) for d in (1, 8) for n in (10, 50, 200)]
    return {"cut_ms": 200, "ready": "300ms", "sizes": [10, 50, 200], "disks": [1, 8],
            "modes": ["per-disk", "group"],
            "settings": [{"worker_env": env, "cells": cells} for env in settings]}


def test_the_section_is_rendered_with_its_aims_and_plots_once_figures_are_stored(
        tmp_path: Path) -> None:
    folder = _store(tmp_path / "benchmarks")
    assert render.KEY not in report.build(folder).markdown  # not stored: no section
    save(Record(render.KEY, ".venv/bin/python -m bench.under_load", "2026-01-02",
                Machine(cpus=2, memory_gib=24, python="3.11.7"), "abc1234",
                _figures([{"VMSNAP_MAX_FREEZES_IN_FLIGHT": "0"},
                          {"VMSNAP_MAX_FREEZES_IN_FLIGHT": "16"}])), folder)
    report.write(folder)
    markdown = report.doc_for(folder).read_text()
    titles = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    throttled = titles.index("Throttled client: 4 snapshots at 5 QPS")
    assert titles.index("Under load") == throttled + 1
    assert "Worker: VMSNAP_MAX_FREEZES_IN_FLIGHT=16." in markdown
    assert _t("| per disk | 50 * 8 | 50 of 50 | 220 / 225 / 225 | 1.21 / 1.24 / 1.24 "
              "| 200 / 210 / 220 | 1.10 / 1.12 / 1.12 |") in markdown
    assert _t("| group | 200 * 8 | 200 of 200 (200 cut as a group) |") in markdown
    assert _t("Aim: p95 of frozen ÷ the storage's own cut at most 1.25 at 50*8 per disk and "
              "200*8 group (worker: VMSNAP_MAX_FREEZES_IN_FLIGHT=0). Met: **yes**: 50*8 per "
              "disk 1.12; 200*8 group 1.05.") in markdown
    assert _t("Met: **yes**: worst p95 30 ms at 200*1 per disk.") in markdown
    assert "    .venv/bin/python -m bench.under_load\n" in markdown
    rows = re.findall(r"^\| \[Under load\]\(#under-load\) \| (.+) \| (\S+) \|$", markdown,
                      re.MULTILINE)
    assert [verdict for _, verdict in rows] == ["**yes**", "**yes**", "**yes**", "**yes**"]
    assert _summary(markdown)["Under load"] == "yes"
    for name in ("under-load-ratio.png", "under-load-thaw.png"):
        assert f"(benchmarks/{name})" in markdown
        data = (folder / name).read_bytes()
        assert data.startswith(b"\x89PNG") and b"tEXt" not in data
    assert report.write(folder) == []  # the same figures render the same bytes


def test_a_missed_aim_shows_in_the_summary() -> None:
    figures = _figures([{}])
    cells = figures["settings"][0]["cells"]
    cells[-1] = _cell("group", 200, 8, 1.4, 70)
    judged = render.verdicts(figures)
    assert [v.met for v in judged] == [False, False]
    assert judged[0].figure == _t("50*8 per disk 1.12; 200*8 group 1.40")
    assert "(worker:" not in judged[0].aim  # one setting: not named
