"""Registering an activity under its contract's reference, with its types checked.

`@implements(REF)` is `@activity.defn(name=REF.name)` for a method whose input and
result are `REF`'s: mypy refuses a method whose signature differs from the reference
the workflows call, so the two ends of every activity cannot drift apart.
`implements_function` does the same for a module-level function.

Each registered activity runs as the maker of what it creates: the adapter marks every
object created meanwhile with the activity's workflow run and the cluster's id
(`cluster.creation_marks`), the mark by which the orphan sweeper knows what vmsnap made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

from cluster.creation_marks import creating_for
from contracts.activity import ActivityRef

I = TypeVar("I")  # noqa: E741 - as in contracts.activity
O = TypeVar("O")  # noqa: E741

Method = Callable[[Any, I], O]
Function = Callable[[I], O]


def implements(ref: ActivityRef[I, O]) -> Callable[[Method[I, O]], Method[I, O]]:
    """Register the decorated method as the activity `ref` names."""

    def register(method: Method[I, O]) -> Method[I, O]:
        @functools.wraps(method)
        def as_maker(self: Any, input: I) -> O:
            with _maker():
                return method(self, input)

        return activity.defn(name=ref.name)(as_maker)

    return register


def implements_function(ref: ActivityRef[I, O]) -> Callable[[Function[I, O]], Function[I, O]]:
    """Register the decorated function as the activity `ref` names."""

    def register(function: Function[I, O]) -> Function[I, O]:
        @functools.wraps(function)
        def as_maker(input: I) -> O:
            with _maker():
                return function(input)

        return activity.defn(name=ref.name)(as_maker)

    return register


def _maker() -> Any:
    """The context in which the running activity's creations carry its run's mark (none
    when called outside an activity, as a plain function)."""
    if not activity.in_activity():
        return creating_for("", "")
    info = activity.info()
    return creating_for(info.workflow_id or "", info.workflow_run_id or "")
