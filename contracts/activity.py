"""A typed name for an activity: what a workflow calls and what the worker registers.

Workflow code must not import the activities' implementations (they bring the
Kubernetes client into a module Temporal replays), so a workflow calls an
`ActivityRef`: the registered name with the input and output types. mypy checks both
ends: the workflow's argument and result through `ActivityRef[I, O]`
(`workflows.saga.step`), the implementation through
`activities.registration.implements(ref)`, which registers the method under
`ref.name` and fails type checking when its signature differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the conventional name pair: I in, O out
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True)
class ActivityRef(Generic[I, O]):
    """An activity by its registered name, with the types that cross the boundary."""

    name: str
    input: type[I]
    output: type[O]

    def __str__(self) -> str:
        return self.name
