"""docs/benchmarks.md is rendered from the benchmarks' stored figures, and only from them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.aims import within
from bench.records import RESULTS_DIR, Machine, Record, RecordError, load, save

MACHINE = Machine(cpus=2, memory_gib=24, python="3.11.7", load_start=0.5, load_end=0.7)
BUCKETS = ("activity queued", "activity running", "workflow task queued",
           "workflow task running")


def _wave(wall: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {"wall_s": wall, "p50_s": wall / 2, "p95_s": wall * 0.9, "cpu_s": cpu,
            "breakdown_s": dict.fromkeys(BUCKETS, 0.5)}


def _orchestration(namespaces: int, ratios: list[tuple[int, float]]) -> dict[str, Any]:
    return {"layout": f"{namespaces} namespaces", "namespaces": namespaces,
            "worker": "worker.py", "vm_disks": 3, "history_sample": 20,
            "shape": {"workflow_tasks": 2, "activities": 1, "local_activities": 7},
            "pairs": [{"n": n, "ratio": r,
                       "vmsnap": _wave(10 * r, {"worker": 5, "simulator": 2, "dev server": 4}),
                       "bare": _wave(10, {"bare worker": 3, "dev server": 4})}
                      for n, r in ratios]}


SAMPLE: dict[str, dict[str, Any]] = {
    # 8 disks: the median is within 1.25, the worst run is not -> not met.
    "freeze-window": {"cut_ms": 200, "ready_ms": 300, "runs": 5, "disks": [
        {"disks": d, "window_median_ms": 210, "window_worst_ms": 260,
         "slowest_cut_median_ms": 201, "ratio_median": 1.05, "ratio_worst": worst,
         "thaw_after_last_cut_median_ms": 3, "requests": 20, "history_events": 27}
        for d, worst in ((1, 1.1), (8, 1.3))]},
    "history-events": {"cut_ms": 200, "disks": [
        {"disks": d, "events": 27, "history_bytes": 1000 * d, "succeeded": True}
        for d in (1, 8)]},
    # 1 disk over its aim of 11, 8 disks within 32 -> not met.
    "kubernetes-requests": {"disks": [
        {"disks": d, "requests": {"get virtualmachines": 12, "create volumesnapshots": d}}
        for d in (1, 8)]},
    # N=100: median 1.504, shown 1.50 -> within 1.5.
    "orchestration": _orchestration(1, [(100, 1.2), (100, 1.504), (100, 1.9), (500, 1.3)]),
    "worker-load": {"snapshots": 50, "vm_disks": 3, "succeeded": 50, "worker": "worker.py",
                    "sample_interval_s": 0.2, "wall_s": 12.5,
                    "worker_rss_mib": {"idle": 100, "peak": 150, "end": 140},
                    "worker_cpu_s": 9.0, "worker_cores_average": 0.7,
                    "worker_busiest_second": 0.9, "worker_threads_max": 80,
                    "simulator_cpu_s": 3.0, "simulator_busiest_second": 0.5,
                    "dev_server_cpu_s": 8.0, "dev_server_busiest_second": 1.1},
    # 3 of 4 ready -> not met, and the failure is listed.
    "throttled-client": {"snapshots": 4, "disks": 1, "cut_ms": 200, "qps": 5.0, "burst": 5,
                         "earliest_first": True, "failure_deadline": "5m",
                         "max_activities": None, "wall_s": 40.0, "ready": 3,
                         "first_ready_s": 10.0, "last_ready_s": 30.0,
                         "ready_at_s": [10.0, 20.0, 30.0], "window_median_ms": 210,
                         "window_worst_ms": 300, "window_ratio_median": 1.05,
                         "window_ratio_worst": 1.5,
                         "failures": {"ApplicationError: deadline exceeded": 1}},
    # The worst kill 2.10 s past the cut -> over the 2 s aim.
    "freeze-takeover": {"cut_s": 6.0, "kills": 3, "seed": 1, "extra_median_ms": 12.0,
                        "extra_worst_ms": 2100.0, "succeeded": 3, "quiesced": 3, "runs": [
                            {"killed_after_s": k, "extra_ms": e, "thawed_by": "unfreeze",
                             "phase": "Succeeded"}
                            for k, e in ((0.1, 12.0), (3.0, 10.0), (5.9, 2100.0))]},
    "request-transport": {"requests": 100, "rounds": 1, "rows": [
        {"transport": t, "threads": n, "cpu_ms_per_request": cpu,
         "requests_per_second": 1000, "probe_p50_ms": 0.1, "probe_p90_ms": late}
        for t, n, cpu, late in (("urllib3", 1, 0.6, 1.0), ("libcurl", 1, 0.2, 0.5),
                                ("urllib3", 16, 0.8, 6.0), ("libcurl", 16, 0.3, 0.7))]},
}


def _store(folder: Path, figures: dict[str, dict[str, Any]] = SAMPLE) -> Path:
    for key, values in figures.items():
        save(Record(key, f".venv/bin/python -m bench.{key}", "2026-01-02", MACHINE, "abc1234",
                    values), folder)
    return folder


def _summary(markdown: str) -> dict[str, str]:
    """The summary table: each row's benchmark name -> its verdict."""
    rows = re.findall(r"^\| \[([^\]]+)\]\([^)]*\) \| .* \| (\S+) \|$", markdown, re.MULTILINE)
    return {name: verdict.strip("*") for name, verdict in rows}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample figures, rendered once with their plots (drawing takes a second)."""
    folder = _store(tmp_path_factory.mktemp("docs") / "benchmarks")
    report.write(folder)
    return folder


def test_every_section_is_rendered_with_its_verdict_computed_from_the_figures(
        rendered: Path) -> None:
    markdown = report.doc_for(rendered).read_text()
    titles = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert titles == ["Summary", "Freeze window", "Freeze takeover",
                      "History events per snapshot",
                      "Kubernetes requests per snapshot",
                      "Orchestration cost against bare Temporal",
                      "Worker load: 50 concurrent snapshots",
                      "Throttled client: 4 snapshots at 5 QPS",
                      "Request transport: urllib3 against libcurl"]
    assert _summary(markdown) == {
        "Freeze window": "no", "Freeze takeover": "no", "History events per snapshot": "yes",
        "Kubernetes requests per snapshot": "no",
        "Orchestration cost against bare Temporal": "yes",
        "Worker load: 50 concurrent snapshots": "-",
        "Throttled client: 4 snapshots at 5 QPS": "no",
        "Request transport: urllib3 against libcurl": "-"}
    assert "Met: **no**: median 1.05, worst 1.30 of 5 runs." in markdown
    assert "median 0.01 s, worst 2.10 s of 3 kills" in markdown
    assert "Met: **yes**: N=100 1.50, N=500 1.30 (median ratio per N)." in markdown
    assert "- 1 \N{MULTIPLICATION SIGN} ApplicationError: deadline exceeded" in markdown
    assert "    .venv/bin/python -m bench.freeze-window\n" in markdown
    assert "Date: 2026-01-02. Code: commit abc1234." in markdown
    assert "VMs spread" not in markdown  # no such record: no subsection


def test_the_requests_verdict_names_where_the_aim_is_missed(rendered: Path) -> None:
    markdown = report.doc_for(rendered).read_text()
    assert "| **total** | **13** | **20** |" in markdown
    assert ("Met: **no**: over the aim at 1 disk (13 against 11); within it at 8 disks."
            in markdown)


def test_an_optional_record_adds_its_subsection_and_summary_row(tmp_path: Path) -> None:
    folder = _store(tmp_path / "benchmarks", {
        **SAMPLE, "orchestration-spread": _orchestration(500, [(100, 1.6)])})
    markdown = report.build(folder).markdown
    assert "### VMs spread over 500 namespaces" in markdown
    assert _summary(markdown)["VMs spread over 500 namespaces"] == "no"


def test_a_figure_is_judged_as_shown() -> None:
    assert within(1.504, 1.5) and not within(1.506, 1.5) and within(1.25, 1.25)


def test_re_rendering_the_same_figures_changes_no_byte(rendered: Path) -> None:
    before = {p.name: p.read_bytes() for p in [*rendered.glob("*.png"),
                                                report.doc_for(rendered)]}
    assert report.write(rendered) == []
    after = {p.name: p.read_bytes() for p in [*rendered.glob("*.png"),
                                               report.doc_for(rendered)]}
    assert after == before


def test_the_plots_are_written_linked_and_carry_no_metadata(rendered: Path) -> None:
    markdown = report.doc_for(rendered).read_text()
    links = re.findall(r"!\[[^\]]+\]\(benchmarks/([^)]+)\)", markdown)
    assert sorted(links) == ["freeze-window.png", "history-events.png",
                             "kubernetes-requests.png", "orchestration.png",
                             "request-transport.png", "throttled-client.png"]
    for name in links:
        data = (rendered / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        assert b"tEXt" not in data and b"tIME" not in data


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda path: path.unlink(), r"freeze-window\.json is missing: run `.*bench\.freeze_window"),
    (lambda path: path.write_text("{not json"), r"freeze-window\.json cannot be read"),
    (lambda path: path.write_text(json.dumps({"format": 1})), r"is not a benchmark record"),
    (lambda path: path.write_text(
        path.read_text().replace('"ratio_worst"', '"ratio_wrost"')),
     r"freeze-window\.json: the figures lack what the report needs \(KeyError"),
])
def test_a_missing_or_broken_file_is_named_with_the_command_that_remakes_it(
        tmp_path: Path, damage: Any, expected: str) -> None:
    folder = _store(tmp_path / "benchmarks")
    damage(folder / "freeze-window.json")
    with pytest.raises(RecordError, match=expected):
        report.build(folder)
    assert report.main(["--folder", str(folder)]) == 1
    assert not report.doc_for(folder).exists()


def test_a_benchmark_run_stores_its_figures_with_the_machine_and_renders_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _store(tmp_path / "benchmarks")
    monkeypatch.setattr(report, "write", lambda f: [report.doc_for(f)])  # plots tested above
    report.record("history-events", "python -m bench.history_economy --disks 2",
                  {"cut_ms": 200, "disks": [{"disks": 2, "events": 60, "history_bytes": 1,
                                             "succeeded": True}]},
                  load_start=0.25, folder=folder)
    stored = load("history-events", folder)
    assert stored.command == "python -m bench.history_economy --disks 2"
    assert stored.machine.cpus == os.cpu_count() and stored.machine.load_start == 0.25
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", stored.date)
    assert "60" in report.build(folder).markdown
    with pytest.raises(ValueError, match="unknown benchmark key"):
        report.record("no-such-benchmark", "x", {}, folder=folder)


def test_the_committed_report_is_what_the_committed_figures_render() -> None:
    built = report.build(RESULTS_DIR)
    assert report.doc_for(RESULTS_DIR).read_text() == built.markdown, (
        "docs/benchmarks.md differs from its figures: run `.venv/bin/python -m bench.report`")
    for plot in built.plots:
        assert (RESULTS_DIR / plot.filename).is_file(), plot.filename
