"""The records' JSON (built without a server) against the project's own CRD schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cluster import record_kinds, snapshot_content, snapshot_record
from cluster.lock import LOCK_ANNOTATION, LockHolder
from cluster.snapshot_content import VolumeBackup
from cluster.snapshot_record import (
    ExcludedVolumeReason,
    SnapshotRecordStatus,
    SnapshotSpec,
    WorkflowRun,
)
from rules.models import VolumeSnapshotState

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"
NOW = datetime(2030, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
OWNER = WorkflowRun(workflow_id="snapshot/demo/web-1", run_id="run-1")


def crd_schema(kind: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema as JSON Schema (OpenAPI's `nullable` becomes a null type)."""
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return _jsonschema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {kind}")


def _jsonschema(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _jsonschema(v) for k, v in node.items()
               if k not in ("nullable", "x-kubernetes-preserve-unknown-fields",
                            "x-kubernetes-list-type")}
        if node.get("nullable"):
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [_jsonschema(v) for v in node]
    return node


def stored(obj: Any) -> Any:
    """What the server keeps of a merge patch: null members are removed."""
    if isinstance(obj, dict):
        return {k: stored(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [stored(v) for v in obj]
    return obj


def validate(kind: str, obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, crd_schema(kind), format_checker=jsonschema.FormatChecker())


def full_status() -> SnapshotRecordStatus:
    return SnapshotRecordStatus(
        phase="Succeeded", ready_to_use=False, creation_time=NOW, source_uid="vm-uid",
        content_name="web-1-content", indications=["Online", "GuestAgent", "PartialSnapshot"],
        indication_messages={"Online": "the VM was running"},
        included_volumes=["root", "data"],
        excluded_volumes=[ExcludedVolumeReason(volume_name="scratch", reason="not Bound")],
        volume_snapshots=["web-1-root", "web-1-data"], freeze_window_ms=212)


def test_the_record_and_its_status_pass_the_crd_schema() -> None:
    body = snapshot_record.snapshot_record_body(
        "demo", "web-1", SnapshotSpec(vm="web", failure_deadline_seconds=90,
                                      ready_deadline_seconds=0, quiesce="skip"),
        {"vmsnap.io/snapshot": "web-1"}, OWNER)
    assert body["spec"] == {
        "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "web"},
        "deletionPolicy": "Delete", "failureDeadline": "1m30s", "readyDeadline": "0s",
        "quiesce": "skip"}
    assert body["metadata"]["annotations"] == {
        record_kinds.WORKFLOW_ID_ANNOTATION: "snapshot/demo/web-1",
        record_kinds.RUN_ID_ANNOTATION: "run-1"}
    status = snapshot_record.snapshot_status_body(full_status(), {}, NOW)
    validate("VirtualMachineSnapshot", stored({**body, "status": status}))
    assert status["creationTime"] == "2030-01-02T03:04:05Z"
    assert status["snapshotVolumes"] == {"includedVolumes": ["root", "data"],
                                         "excludedVolumes": ["scratch"]}
    assert status["excludedVolumeReasons"] == [{"volumeName": "scratch", "reason": "not Bound"}]
    assert status["sourceIndications"][0] == {"indication": "Online",
                                              "message": "the VM was running"}
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Progressing": "False", "Ready": "False"}


def test_a_failed_status_has_the_failure_condition_and_clears_what_is_gone() -> None:
    failed = SnapshotRecordStatus(phase="Failed", error_message="snapshot deadline exceeded",
                                  error_reason="SnapshotDeadlineExceeded")
    status = snapshot_record.snapshot_status_body(failed, {}, NOW)
    validate("VirtualMachineSnapshot", stored({"spec": {"source": {"kind": "VirtualMachine",
                                                                   "name": "web"}},
                                               "status": status}))
    failure = next(c for c in status["conditions"] if c["type"] == "Failure")
    assert failure["status"] == "True" and failure["reason"] == "SnapshotDeadlineExceeded"
    assert status["error"] == {"message": "snapshot deadline exceeded",
                               "time": "2030-01-02T03:04:05Z"}
    # a merge patch removes what the null members name
    assert status["freezeWindowMilliseconds"] is None and status["creationTime"] is None


def test_condition_times_move_only_when_the_status_changes() -> None:
    first = snapshot_record.snapshot_status_body(SnapshotRecordStatus(phase="InProgress"), {}, NOW)
    later = NOW + timedelta(minutes=1)
    second = snapshot_record.snapshot_status_body(
        SnapshotRecordStatus(phase="Succeeded", ready_to_use=False), first, later)
    third = snapshot_record.snapshot_status_body(
        SnapshotRecordStatus(phase="Succeeded", ready_to_use=True), second, later + timedelta(1))
    times = [{c["type"]: c["lastTransitionTime"] for c in s["conditions"]}
             for s in (first, second, third)]
    assert times[0]["Ready"] == times[1]["Ready"] == "2030-01-02T03:04:05Z"  # False all along
    assert times[1]["Progressing"] == "2030-01-02T03:05:05Z"  # True -> False
    assert times[2]["Ready"] == "2030-01-03T03:05:05Z"  # False -> True
    assert times[2]["Progressing"] == times[1]["Progressing"]


def test_the_error_time_stays_while_the_message_does() -> None:
    with_error = SnapshotRecordStatus(phase="Succeeded", error_message="not ready within 1h")
    first = snapshot_record.snapshot_status_body(with_error, {}, NOW)
    again = snapshot_record.snapshot_status_body(with_error, first, NOW + timedelta(hours=1))
    assert again["error"]["time"] == first["error"]["time"]


VM = {
    "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
    "metadata": {
        "name": "web", "namespace": "demo", "uid": "vm-uid", "resourceVersion": "42",
        "generation": 3, "creationTimestamp": "2030-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl"}], "labels": {"app": "web"},
        "annotations": {LOCK_ANNOTATION: "{}", "kubectl.kubernetes.io/last-applied-configuration":
                        "{}", "team": "web"},
    },
    "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}},
    "status": {"printableStatus": "Running"},
}
PVC = {
    "metadata": {"name": "root-pvc", "namespace": "demo", "uid": "p", "resourceVersion": "7",
                 "annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}},
    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "csi",
             "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-1"},
    "status": {"phase": "Bound"},
}


def test_the_content_copies_the_vm_and_pvcs_without_server_bookkeeping() -> None:
    body = snapshot_content.content_body(
        "demo", "web-1-content", "web-1", "snap-uid", VM, {"root-pvc": PVC},
        [VolumeBackup(volume_name="root", pvc_name="root-pvc", volume_snapshot="web-1-root")],
        {"vmsnap.io/snapshot": "web-1"})
    copy = body["spec"]["source"]["virtualMachine"]
    assert copy["metadata"] == {"name": "web", "namespace": "demo", "uid": "vm-uid",
                                "labels": {"app": "web"}, "annotations": {"team": "web"}}
    assert copy["spec"] == VM["spec"] and "status" not in copy
    backup = body["spec"]["volumeBackups"][0]
    assert backup["volumeSnapshotName"] == "web-1-root"
    assert backup["persistentVolumeClaim"]["metadata"] == {
        "name": "root-pvc", "namespace": "demo", "annotations": {"keep": "me"}}
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshot", "name": "web-1",
        "uid": "snap-uid", "controller": True, "blockOwnerDeletion": True}]
    states = [VolumeSnapshotState(name="web-1-root", creation_time=NOW, ready_to_use=True,
                                  restore_size="1Gi", error=None, bound_content=None)]
    status = snapshot_content.content_status_body(states, None, NOW)
    assert status["readyToUse"] is True and status["creationTime"] == "2030-01-02T03:04:05Z"
    validate("VirtualMachineSnapshotContent", stored({**body, "status": status}))


def test_content_needs_every_pvc() -> None:
    with pytest.raises(ValueError, match="no PVC object for data-pvc"):
        snapshot_content.content_body("demo", "c", "s", "u", VM, {}, [
            VolumeBackup(volume_name="data", pvc_name="data-pvc", volume_snapshot="s-data")], {})


def test_the_crds_refuse_what_the_project_never_writes() -> None:
    record = {"spec": {"source": {"kind": "VirtualMachine", "name": "web"},
                       "deletionPolicy": "Keep"}}
    with pytest.raises(jsonschema.ValidationError, match="Keep"):
        validate("VirtualMachineSnapshot", record)
    with pytest.raises(jsonschema.ValidationError, match="5 minutes"):
        validate("VirtualMachineSnapshot", {"spec": {
            "source": {"kind": "VirtualMachine", "name": "web"}, "failureDeadline": "5 minutes"}})
    with pytest.raises(jsonschema.ValidationError, match="Sideways"):
        validate("VirtualMachineSnapshot", {"spec": {"source": {"kind": "VirtualMachine",
                                                                "name": "web"}},
                                            "status": {"phase": "Sideways"}})


def test_lock_holder_annotation_round_trip_and_refusal_of_garbage() -> None:
    holder = LockHolder(workflow_id="snapshot/demo/a", run_id="r1", operation="snapshot",
                        since=NOW.replace(microsecond=0))
    text = holder.to_annotation()
    assert LockHolder.from_annotation(text) == holder
    assert "snapshot workflow snapshot/demo/a (run r1)" in holder.describe()
    for garbage in ("", "{", "[]", '{"workflowId": "a"}'):
        with pytest.raises(ValueError, match="malformed"):
            LockHolder.from_annotation(garbage)
