"""How long a guest may stay frozen for one cut: the freeze budget, and where it comes from.

Pure (workflow-safe). The guest pays for every second it is frozen (a Windows guest's VSS
gives up after 10 s), so each snapshot has a budget, from the first of:

  1. the input's `freeze_budget` (refused at admission when above the worker's maximum);
  2. the VM's annotation `vmsnap.io/freeze-budget` (a Go duration); one that does not
     parse or is below 1s is ignored (the default applies, with a warning); one above
     the worker's maximum is lowered to it (by the cut, which knows the maximum);
  3. DEFAULT_FREEZE_BUDGET, 10 s.

The worker's maximum, `VMSNAP_MAX_FREEZE_BUDGET` (default 1m, at most 5m), caps every
budget; the workflow never reads it: admission checks the input against it, and the cut
applies it (both run on the worker).

The budget is what the cut sends as `unfreezeTimeout` (the guest thaws itself by then if
every worker dies) and when it thaws at the latest: at freeze time + budget, or at the
failure deadline if that comes first. A cut that outlives it is crash-consistent
(`QuiesceTimeout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rules.durations import format_go_duration, parse_duration
from rules.validation import MAX_FREEZE_BUDGET, check_freeze_budget

ANNOTATION = "vmsnap.io/freeze-budget"
DEFAULT_FREEZE_BUDGET = 10.0
DEFAULT_MAX_FREEZE_BUDGET = 60.0
MAX_ENV = "VMSNAP_MAX_FREEZE_BUDGET"


@dataclass(frozen=True)
class ChosenBudget:
    """The budget asked for, where it came from, and why an annotation was ignored."""

    seconds: float
    source: str  # "input", "annotation" or "default"
    ignored: str | None = None


def choose_budget(requested: float | None, annotation: str | None) -> ChosenBudget:
    """The input's budget, else the VM annotation's, else the default (before the cap)."""
    if requested is not None:
        return ChosenBudget(requested, "input")
    if annotation is None:
        return ChosenBudget(DEFAULT_FREEZE_BUDGET, "default")
    try:
        text = annotation.strip()
        # Well-formed but long: lowered like any budget above a maximum.
        seconds = (MAX_FREEZE_BUDGET if parse_duration(text) > MAX_FREEZE_BUDGET
                   else check_freeze_budget(text))
        return ChosenBudget(seconds, "annotation")
    except ValueError as err:
        return ChosenBudget(
            DEFAULT_FREEZE_BUDGET, "default",
            ignored=f"annotation {ANNOTATION}={annotation!r} ignored ({err}); the default "
                    f"{format_go_duration(DEFAULT_FREEZE_BUDGET)} applies")


def capped(budget: float, maximum: float) -> float:
    """The budget the cut keeps: never above the worker's maximum."""
    return min(budget, maximum)


def refusal(requested: float | None, maximum: float) -> str | None:
    """Why an input's budget is refused by a worker whose maximum is `maximum`, or None."""
    if requested is None or requested <= maximum:
        return None
    return (f"freeze_budget {format_go_duration(requested)} is above this worker's maximum "
            f"{format_go_duration(maximum)} ({MAX_ENV}); ask for at most that")


def max_from_environment(env: Mapping[str, str]) -> float:
    """VMSNAP_MAX_FREEZE_BUDGET in seconds (default 1m); ValueError naming it when bad."""
    raw = (env.get(MAX_ENV) or "").strip()
    if not raw:
        return DEFAULT_MAX_FREEZE_BUDGET
    try:
        return check_freeze_budget(raw)
    except ValueError as err:
        raise ValueError(f"{MAX_ENV}: {err}") from None
