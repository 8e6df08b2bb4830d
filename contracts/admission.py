"""Admission: the first step of every workflow, before anything is read or written.

The workflow cannot read the worker's configuration (a replay on another worker, or after
a change of it, would take another path), so it asks: one local activity, whose answer
is recorded in the history as a marker, checks the request against the worker's
namespace scope (`VMSNAP_NAMESPACES`), for a clone its patch policy
(`VMSNAP_CLONE_PATCH_ALLOW`), and for a snapshot its freeze budget against the
worker's maximum (`VMSNAP_MAX_FREEZE_BUDGET`), and answers with the worker's cluster id.
A refusal ends the run Failed with one of the error types below, before any step.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, RootModel

from contracts.activity import ActivityRef

# Error types (ApplicationError.type) of a refused admission.
NAMESPACE_NOT_SERVED = "NamespaceNotServed"
PATCH_NOT_ALLOWED = "PatchNotAllowed"
FREEZE_BUDGET_TOO_LONG = "FreezeBudgetTooLong"


class AdmissionRequest(BaseModel):
    """What a run is about to touch, as far as the worker's configuration judges it."""

    namespaces: list[str] = Field(description="the Kubernetes namespaces the run works in")
    all_namespaces: bool = Field(
        default=False, description="a sweep of every namespace: narrowed to the served ones")
    patches: list[str] = Field(default_factory=list, description="a clone's JSON patches")
    freeze_budget: float | None = Field(
        default=None, description="a snapshot's freeze budget in seconds, when its input "
        "sets one")


class AdmissionGrant(RootModel[str | bool]):
    """An admitted run's answer: the id of the cluster the worker serves
    (`rules.cluster_identity`), which the run's child workflow IDs carry.

    A run admitted before clusters were named recorded `true` in its history, and
    replays with it: `cluster` is then empty, and its children's IDs are the old ones.
    """

    @property
    def cluster(self) -> str:
        return self.root if isinstance(self.root, str) else ""


ADMIT_REQUEST = ActivityRef("admit_request", AdmissionRequest, AdmissionGrant)
