"""Checks of a request before anything is contacted: what the workflows or Temporal
would refuse later is refused here as `InvalidRequest`, so a bad request changes nothing.

Pure (no cluster, no Temporal): the CLI runs them on its input before it connects.
"""

from __future__ import annotations

import re

from contracts.clone import CloneVirtualMachineInput
from contracts.restore import RestoreVirtualMachineInput
from rules.clone_spec import CloneSpecError, check_mac, parse_patches, validate_filters
from rules.patch_policy import always_refused, operation_pointers
from rules.validation import check_dns_label, check_dns_subdomain
from starter.sdk_errors import InvalidRequest

_QUOTABLE = re.compile(r"[A-Za-z0-9._-]+")


def check_names(**names: str) -> None:
    """Each value a DNS label; the keyword names it in the message (`schedule_name=`)."""
    try:
        for what, value in names.items():
            check_dns_label(value, what.replace("_", " "))
    except ValueError as error:
        raise InvalidRequest(str(error)) from None


def check_restore_input(request: RestoreVirtualMachineInput) -> None:
    """Names a Kubernetes API would refuse are refused here (InvalidRequest)."""
    try:
        check_dns_label(request.namespace, "namespace")
        check_dns_subdomain(request.snapshot, "snapshot")
        if request.target is not None:
            check_dns_label(request.target, "target")
    except ValueError as error:
        raise InvalidRequest(str(error)) from None


def check_clone_input(request: CloneVirtualMachineInput) -> None:
    """Names, filters and patches: what the workflow would refuse as InvalidCloneSpec, and
    patches no worker's policy allows (PatchNotAllowed); a path outside the default
    allowlist is the worker's to judge (its operator may have widened it)."""
    try:
        check_dns_label(request.namespace, "namespace")
        check_dns_label(request.target, "target")
        if request.source_vm is not None:
            check_dns_subdomain(request.source_vm, "source VM")
        if request.source_snapshot is not None:
            check_dns_subdomain(request.source_snapshot, "source snapshot")
        validate_filters(request.label_filters, "label")
        validate_filters(request.annotation_filters, "annotation")
        for index, op in enumerate(parse_patches(request.patches)):
            for pointer in operation_pointers(op):
                reason = always_refused(pointer)
                if reason is not None:
                    raise InvalidRequest(f"patch operation {index}: {pointer} is refused: "
                                         f"{reason}")
        for interface, mac in request.new_mac_addresses.items():
            check_mac(interface, mac)
    except (ValueError, CloneSpecError) as error:
        raise InvalidRequest(str(error)) from None


def query_name(attribute: str, value: str) -> str:
    """A name safe to quote in a visibility query (names are DNS labels and subdomains),
    so a value cannot change the query it is put in."""
    if not _QUOTABLE.fullmatch(value):
        raise InvalidRequest(f"{attribute} {value!r} is not a valid name")
    return value
