"""Counting a snapshot's Kubernetes requests from the simulator's request log (benchmarks)."""

from __future__ import annotations

from bench.api_economy import budget as request_budget
from bench.api_economy import counts_table
from bench.freeze_window import Run, count_requests, seed_documents
from bench.history_economy import budget as event_budget


def test_requests_are_counted_by_verb_and_resource_without_the_simulators_own() -> None:
    log = [
        {"verb": "get", "resource": "virtualmachines", "path": "/apis/kubevirt.io/v1/x"},
        {"verb": "update", "resource": "virtualmachineinstances", "subresource": "freeze",
         "path": "/apis/subresources.kubevirt.io/v1/y"},
        {"verb": "get", "resource": "virtualmachines", "path": "/apis/kubevirt.io/v1/x"},
        {"verb": "get", "path": "/sim/requests"},
        {"method": "GET", "path": "/version"},
    ]
    assert count_requests(log) == {
        "get virtualmachines": 2,
        "update virtualmachineinstances/freeze": 1,
        "GET /version": 1,
    }


def test_the_table_lists_every_kind_and_the_aims() -> None:
    one = Run(disks=1, window_ms=None, slowest_cut_ms=0, after_last_cut_ms=None,
              reported_ms=None, requests=3,
              by_kind=count_requests([{"verb": "get", "resource": "a"}] * 3))
    eight = Run(disks=8, window_ms=None, slowest_cut_ms=0, after_last_cut_ms=None,
                reported_ms=None, requests=1, by_kind=count_requests([{"verb": "list",
                                                                      "resource": "b"}]))
    text = counts_table([one, eight])
    assert "| get a | 3 | 0 |" in text and "| list b | 0 | 1 |" in text
    assert "| **total** | **3** | **1** |" in text
    assert "| aim 8 + 3 x disks | 11 | 32 |" in text
    assert (request_budget(32), event_budget(1), event_budget(64)) == (104, 36, 414)


def test_the_bench_seed_has_one_vm_per_disk_count_and_one_class() -> None:
    docs = seed_documents([1, 8], copies=2)
    vms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "VirtualMachine"}
    assert sorted(vms) == ["disks-1", "disks-1-1", "disks-8", "disks-8-1"]
    pvcs = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert len(pvcs) == len(set(pvcs)) == 2 * (1 + 8)
    claims = [v["persistentVolumeClaim"]["claimName"]
              for v in vms["disks-8-1"]["spec"]["template"]["spec"]["volumes"]]
    assert claims == [f"disks-8-1-disk{i}" for i in range(8)]
    assert [d["kind"] for d in docs].count("VolumeSnapshotClass") == 1


def test_the_throttled_table_gives_successes_and_the_first_and_last_success() -> None:
    from bench.api_economy import Fleet, throttled_text

    run = Run(disks=1, window_ms=300.0, slowest_cut_ms=0, after_last_cut_ms=None,
              reported_ms=None, requests=0)
    text = throttled_text(3, 5, 5, Fleet(wall=100.0, successes_at=[12.5, 40.0],
                                         by_start=True), [run, run, run])
    assert "| Succeeded within the failure deadline, then ready to use | 2 of 3 |" in text
    assert "| first / last of those ready after | 12.5 / 40.0 s |" in text
    assert "earliest snapshot first" in text
    none = throttled_text(3, 5, 5, Fleet(wall=300.0, successes_at=[], by_start=False), [run])
    assert "| first / last of those ready after | - |" in none and "arrival order" in none
