"""Pure parts of the adapter: typed states from raw objects, bodies it sends, config loading."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.client import load_api_client
from cluster.errors import ConfigurationError
from cluster.pvcs import larger_quantity, pvc_from_snapshot, pvc_state
from cluster.snapshots import volume_snapshot_body, volume_snapshot_state
from cluster.vms import vm_state_from


def a_vm(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "vm1", "namespace": "ns", "uid": "u-1",
                         "resourceVersion": "7"},
            "spec": spec, "status": {"printableStatus": "Running"}}


def a_vmi(phase: str, *conditions: dict[str, str], freeze: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": list(conditions)}
    if freeze is not None:
        status["fsFreezeStatus"] = freeze
    return {"metadata": {"name": "vm1"}, "status": status}


def test_vm_state_of_a_running_vm_with_agent() -> None:
    state = vm_state_from(a_vm(runStrategy="Always"),
                          a_vmi("Running", {"type": "AgentConnected", "status": "True"},
                                {"type": "Ready", "status": "True"}, freeze="frozen"))
    assert state.model_dump() == {
        "namespace": "ns", "name": "vm1", "uid": "u-1", "run_strategy": "Always",
        "vmi_exists": True, "running": True, "paused": False, "agent_connected": True,
        "fs_freeze_status": "frozen", "printable_status": "Running", "vmi_phase": "Running",
        "resource_version": "7", "restart_required": False,
        "freeze_budget": None}


def test_vm_state_paused_needs_status_true_and_agent_needs_only_the_condition() -> None:
    paused = vm_state_from(a_vm(runStrategy="Always"),
                           a_vmi("Running", {"type": "Paused", "status": "True"},
                                 {"type": "AgentConnected", "status": "False"}))
    assert paused.paused and paused.agent_connected
    not_paused = vm_state_from(a_vm(), a_vmi("Running", {"type": "Paused", "status": "False"}))
    assert not not_paused.paused and not not_paused.agent_connected


def test_vm_state_without_vmi_and_legacy_running_field() -> None:
    stopped = vm_state_from(a_vm(running=False), None)
    assert (stopped.run_strategy, stopped.vmi_exists, stopped.running) == ("Halted", False, False)
    assert stopped.fs_freeze_status is None and stopped.vmi_phase is None
    assert vm_state_from(a_vm(running=True), None).run_strategy == "Always"
    assert vm_state_from(a_vm(), None).run_strategy is None
    scheduling = vm_state_from(a_vm(runStrategy="Always"), a_vmi("Scheduling", freeze=""))
    assert scheduling.vmi_exists and not scheduling.running
    assert scheduling.fs_freeze_status is None


def test_volume_snapshot_state_through_its_life() -> None:
    fresh = volume_snapshot_state(volume_snapshot_body("ns", "s1", "disk-a", "snap", {"a": "b"}))
    assert (fresh.name, fresh.cut, fresh.ready_to_use, fresh.source_pvc,
            fresh.snapshot_class, fresh.labels) == ("s1", False, False, "disk-a", "snap",
                                                    {"a": "b"})
    cut = volume_snapshot_state({
        "metadata": {"name": "s1", "deletionTimestamp": "2026-01-01T00:00:01Z"},
        "spec": {"source": {"persistentVolumeClaimName": "disk-a"}},
        "status": {"creationTime": "2026-01-02T03:04:05.123Z", "readyToUse": False,
                   "restoreSize": "1Gi", "boundVolumeSnapshotContentName": "snapcontent-1",
                   "error": {"message": "upload slow", "time": "2026-01-02T03:04:06Z"}}})
    assert cut.creation_time == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert cut.cut and not cut.ready_to_use and cut.deleting
    assert (cut.restore_size, cut.bound_content, cut.error) == ("1Gi", "snapcontent-1",
                                                                "upload slow")


def test_volume_snapshot_body_names_class_and_owner() -> None:
    owner = {"apiVersion": "vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshot",
             "name": "snap", "uid": "u-2", "controller": True}
    body = volume_snapshot_body("ns", "s1", "disk-a", "fast-snap", {"vmsnap.io/snapshot": "x"},
                                owner)
    assert body == {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "s1", "namespace": "ns", "labels": {"vmsnap.io/snapshot": "x"},
                     "ownerReferences": [owner]},
        "spec": {"volumeSnapshotClassName": "fast-snap",
                 "source": {"persistentVolumeClaimName": "disk-a"}}}
    with pytest.raises(ValueError, match="non-empty snapshot_class"):
        volume_snapshot_body("ns", "s1", "disk-a", "", {})


BACKED_UP: dict[str, Any] = {
    "metadata": {"name": "disk-a", "labels": {"app": "x"}, "uid": "old"},
    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
             "volumeMode": "Block", "volumeName": "pv-old",
             "resources": {"requests": {"storage": "1Gi"}}},
    "status": {"phase": "Bound"},
}


def test_restored_pvc_copies_the_spec_and_points_at_the_snapshot() -> None:
    body = pvc_from_snapshot("restore-disk-a", BACKED_UP, "snap-disk-a", "2Gi",
                             labels={"vmsnap.io/restore": "r1"})
    source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
              "name": "snap-disk-a"}
    assert body == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "restore-disk-a", "labels": {"vmsnap.io/restore": "r1"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                 "volumeMode": "Block", "resources": {"requests": {"storage": "2Gi"}},
                 "dataSource": source, "dataSourceRef": source}}
    assert BACKED_UP["spec"]["resources"] == {"requests": {"storage": "1Gi"}}  # not mutated


def test_restored_pvc_keeps_the_larger_request() -> None:
    body = pvc_from_snapshot("r", BACKED_UP, "s", "1000Mi")
    assert body["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert pvc_from_snapshot("r", BACKED_UP, "s", None)["spec"]["resources"] == {
        "requests": {"storage": "1Gi"}}
    assert larger_quantity("1073741824", "1Gi") == "1073741824"
    assert larger_quantity("1G", "1Gi") == "1Gi"
    with pytest.raises(ValueError, match="bad storage quantity"):
        larger_quantity("lots", "1Gi")
    with pytest.raises(ValueError, match="cannot size PVC"):
        pvc_from_snapshot("r", {"spec": {}}, "s", None)


def test_pvc_state() -> None:
    restored = pvc_from_snapshot("r", BACKED_UP, "snap-disk-a", "1Gi")
    pending = pvc_state(restored)
    assert (pending.phase, pending.bound, pending.data_source, pending.requested) == (
        None, False, "snap-disk-a", "1Gi")
    bound = pvc_state({**BACKED_UP, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}})
    assert (bound.bound, bound.capacity, bound.volume_name, bound.data_source) == (
        True, "1Gi", "pv-old", None)


# ---- configuration ---------------------------------------------------------------------

def write_kubeconfig(path: Path, server: str = "http://127.0.0.1:6443") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "one",
        "clusters": [{"name": "c1", "cluster": {"server": server}},
                     {"name": "c2", "cluster": {"server": "http://127.0.0.2:7000"}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u"}},
                     {"name": "two", "context": {"cluster": "c2", "user": "u"}}],
    }))
    return path


def test_explicit_kubeconfig_and_context(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = write_kubeconfig(tmp_path / "config")
    api = load_api_client(str(path))
    assert api.configuration.host == "http://127.0.0.1:6443"
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer secret-token"
    assert api.configuration.retries.read == 0
    assert load_api_client(str(path), context="two").configuration.host == "http://127.0.0.2:7000"
    with pytest.raises(ConfigurationError, match="cannot load"):
        load_api_client(str(path), context="three")


def test_kubeconfig_from_environment_then_home(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_kubeconfig(tmp_path / "env-config", "http://127.0.0.3:1234")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    assert load_api_client().configuration.host == "http://127.0.0.3:1234"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", "http://127.0.0.4:1")
    assert load_api_client().configuration.host == "http://127.0.0.4:1"


def test_missing_configuration_is_a_clear_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(ConfigurationError, match="no Kubernetes configuration"):
        load_api_client()
    with pytest.raises(ConfigurationError, match=r"kubeconfig .*nope not found"):
        load_api_client(str(tmp_path / "nope"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    with pytest.raises(ConfigurationError, match="names no existing file"):
        load_api_client()


def test_in_cluster_configuration_needs_its_token(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    # No service-account files on this machine: a clear configuration error, not a crash.
    with pytest.raises(ConfigurationError, match="in-cluster"):
        load_api_client()


def test_workflow_safe_modules_do_not_import_the_kubernetes_client() -> None:
    """Workflows import models, errors and durations; the sandbox refuses `kubernetes`."""
    code = ("import sys, cluster, rules.models, cluster.errors, rules.durations, "
            "rules.volumes; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('kubernetes', 'urllib3')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"
