"""The admission step (`contracts.admission`): the worker's namespace scope, patch policy
and freeze budget maximum applied to a run's request, before the run does anything.

No Kubernetes request: the answer depends only on the worker's configuration, so the
step costs one marker in the history and no measurable time (docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.registration import implements
from contracts.admission import (
    ADMIT_REQUEST,
    FREEZE_BUDGET_TOO_LONG,
    NAMESPACE_NOT_SERVED,
    PATCH_NOT_ALLOWED,
    AdmissionGrant,
    AdmissionRequest,
)
from rules.freeze_budget import DEFAULT_MAX_FREEZE_BUDGET
from rules.freeze_budget import refusal as budget_refusal
from rules.namespace_scope import NamespaceScope
from rules.patch_policy import PatchPolicy, PatchRefused, check_patch_syntax

log = logging.getLogger("vmsnap.admission")


class AdmissionActivities:
    def __init__(self, scope: NamespaceScope, policy: PatchPolicy,
                 cluster_id: Callable[[], str],
                 max_freeze_budget: float = DEFAULT_MAX_FREEZE_BUDGET) -> None:
        """`cluster_id` answers the worker's cluster id (read once, at the first run)."""
        self.scope = scope
        self.policy = policy
        self.cluster_id = cluster_id
        self.max_freeze_budget = max_freeze_budget

    def all(self) -> list[Callable[..., object]]:
        return [self.admit_request]

    @implements(ADMIT_REQUEST)
    def admit_request(self, request: AdmissionRequest) -> AdmissionGrant:
        """Refuse a namespace the worker does not serve, a patch outside its policy, or a
        freeze budget above its maximum; else name the cluster the run works in."""
        refused = self.scope.refused(request.namespaces)
        if refused:
            info = activity.info()
            log.warning("refused %s %s: namespace %s is not served (serving %s)",
                        info.workflow_type, info.workflow_id, ", ".join(refused),
                        self.scope.describe())
            raise ApplicationError(
                f"namespace {refused[0]!r} is not served by this vmsnap worker (Temporal "
                f"namespace {info.workflow_namespace!r}); its operator lists the served "
                "namespaces in VMSNAP_NAMESPACES", type=NAMESPACE_NOT_SERVED,
                non_retryable=True)
        if request.patches:
            try:
                self.policy.check(check_patch_syntax(request.patches))
            except PatchRefused as refusal:
                raise ApplicationError(str(refusal), type=PATCH_NOT_ALLOWED,
                                       non_retryable=True) from None
        too_long = budget_refusal(request.freeze_budget, self.max_freeze_budget)
        if too_long is not None:
            raise ApplicationError(too_long, type=FREEZE_BUDGET_TOO_LONG, non_retryable=True)
        return AdmissionGrant(self.cluster_id())
