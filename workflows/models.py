"""The public contract of the snapshot workflows: their JSON input, result and progress.

Users type these documents at the Temporal CLI and UI, so the field names
are snake_case, stable, and documented in the README. Bad input is refused
with a message that names the field (the workflow fails at once; it never
retries a document that cannot be valid). Pydantic only: workflows import
this module.

Example input:
    {"namespace": "demo", "vm": "web", "name": "web-before-upgrade",
     "failure_deadline": "5m", "ready_deadline": "1h", "quiesce": "auto",
     "deletion_policy": "Delete", "labels": {"team": "web"}}
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rules.durations import parse_duration
from rules.models import ExcludedVolume

Quiesce = Literal["auto", "required", "skip"]
DeletionPolicy = Literal["Delete", "Retain"]
Phase = Literal["InProgress", "Succeeded", "Failed"]

# Indications, as KubeVirt's (first five) plus the quiesce outcomes of vmsnap.
ONLINE = "Online"  # the VM had a running instance
GUEST_AGENT = "GuestAgent"  # the guest agent was connected
NO_GUEST_AGENT = "NoGuestAgent"  # the VM ran without a connected agent: crash-consistent
PAUSED = "Paused"  # the VM was paused: not frozen, crash-consistent
PARTIAL_SNAPSHOT = "PartialSnapshot"  # a PVC/DataVolume volume was left out
QUIESCE_FAILED = "QuiesceFailed"  # quiesce auto: the freeze failed, the cut is crash-consistent
QUIESCE_SKIPPED = "QuiesceSkipped"  # quiesce skip on a guest that could have been frozen
QUIESCE_TIMEOUT = "QuiesceTimeout"  # the guest was thawed before the cut (freeze bound passed)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
RESERVED_LABEL_PREFIX = "vmsnap.io/"


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as \"5m\", \"90s\" or seconds, not {value!r}")


Duration = Annotated[float, BeforeValidator(_seconds)]
"""Seconds; the JSON may say `"5m"`, `"1h30m"`, `"90s"`, `300` or `"300"`."""


def check_dns_label(value: str, what: str) -> str:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def check_dns_subdomain(value: str, what: str) -> str:
    if len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return value


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax; the `vmsnap.io/` prefix is the project's own."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix:
            check_dns_subdomain(prefix, f"label prefix of {key!r}:")
        if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"label key {key!r} is not valid")
        if key.startswith(RESERVED_LABEL_PREFIX):
            raise ValueError(f"label key {key!r}: the {RESERVED_LABEL_PREFIX} prefix is reserved")
        if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
            raise ValueError(f"label value {value!r} of {key!r} is not valid")
    return labels


class SnapshotVirtualMachineInput(BaseModel):
    """Input of `SnapshotVirtualMachine`. Unknown fields are refused (a typo such as
    `failureDeadline` would otherwise silently mean the default)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(description="namespace of the VM; the records are made there")
    vm: str = Field(description="name of the VirtualMachine")
    name: str | None = Field(
        default=None,
        description="name of the snapshot; default {vm}-{YYYYMMDD-HHMMSS} (UTC start time)",
    )
    failure_deadline: Duration = Field(
        default=300.0, description='the cut must be taken within it; default "5m", 0 = none'
    )
    ready_deadline: Duration = Field(
        default=3600.0,
        description='after the cut, every VolumeSnapshot must be ready within it; '
        'default "1h", 0 = none',
    )
    quiesce: Quiesce = "auto"
    deletion_policy: DeletionPolicy = "Delete"
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels for the records and the VolumeSnapshots"
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_dns_label(value, "namespace")

    @field_validator("vm")
    @classmethod
    def _vm(cls, value: str) -> str:
        return check_dns_subdomain(value, "vm")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_subdomain(value, "name")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)


class VolumeResult(BaseModel):
    """One included volume and the VolumeSnapshot that captured it."""

    volume_name: str
    pvc_name: str
    storage_class: str
    snapshot_class: str
    volume_snapshot: str
    hotpluggable: bool = False
    creation_time: datetime | None = None
    ready_to_use: bool = False
    restore_size: str | None = None
    error: str | None = None


class SnapshotVirtualMachineResult(BaseModel):
    """What a snapshot did; the workflow's result, and the details of its failure."""

    namespace: str
    name: str
    vm: str
    vm_uid: str | None = None
    workflow_id: str | None = None
    phase: Phase
    ready_to_use: bool = False
    indications: list[str] = Field(default_factory=list)
    included_volumes: list[VolumeResult] = Field(default_factory=list)
    excluded_volumes: list[ExcludedVolume] = Field(default_factory=list)
    volume_snapshots: list[str] = Field(default_factory=list)
    content_name: str | None = None
    quiesced: bool = Field(default=False, description="the guest was frozen for the cut")
    freeze_window_ms: int | None = Field(
        default=None, description="freeze call to end of thaw call; None when not frozen"
    )
    started_at: datetime
    creation_time: datetime | None = Field(default=None, description="when the cut was taken")
    succeeded_at: datetime | None = None
    ready_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    cleanup_errors: list[str] = Field(
        default_factory=list, description="compensation steps that failed (objects may remain)"
    )


VolumeStep = Literal["planned", "creating", "cut", "ready", "deleted"]


class VolumeProgress(BaseModel):
    volume_name: str
    volume_snapshot: str
    state: VolumeStep
    creation_time: datetime | None = None
    ready_to_use: bool = False
    error: str | None = None


class SnapshotProgress(BaseModel):
    """Answer of the `progress` query: where the snapshot is, and how much time is left."""

    namespace: str
    name: str
    vm: str
    step: str
    phase: Phase
    frozen: bool
    indications: list[str]
    volumes: list[VolumeProgress]
    elapsed_seconds: float
    failure_deadline_seconds: float | None = Field(description="None: no deadline")
    time_left_seconds: float | None
    error: str | None = None


class DeleteVirtualMachineSnapshotInput(BaseModel):
    """Input of `DeleteVirtualMachineSnapshot`."""

    model_config = ConfigDict(extra="forbid")

    namespace: str
    name: str

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_dns_label(value, "namespace")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns_subdomain(value, "name")


class DeleteVirtualMachineSnapshotResult(BaseModel):
    namespace: str
    name: str
    deletion_policy: DeletionPolicy
    deleted_volume_snapshots: list[str] = Field(default_factory=list)
    retained_volume_snapshots: list[str] = Field(default_factory=list)
    content_deleted: bool = False
    record_deleted: bool = False
