"""Registering an activity under its contract's reference, with its types checked.

`@implements(REF)` is `@activity.defn(name=REF.name)` for a method whose input and
result are `REF`'s: mypy refuses a method whose signature differs from the reference
the workflows call, so the two ends of every activity cannot drift apart.
`implements_function` does the same for a module-level function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

from contracts.activity import ActivityRef

I = TypeVar("I")  # noqa: E741 - as in contracts.activity
O = TypeVar("O")  # noqa: E741

Method = Callable[[Any, I], O]
Function = Callable[[I], O]


def implements(ref: ActivityRef[I, O]) -> Callable[[Method[I, O]], Method[I, O]]:
    """Register the decorated method as the activity `ref` names."""

    def register(method: Method[I, O]) -> Method[I, O]:
        return activity.defn(name=ref.name)(method)

    return register


def implements_function(ref: ActivityRef[I, O]) -> Callable[[Function[I, O]], Function[I, O]]:
    """Register the decorated function as the activity `ref` names."""

    def register(function: Function[I, O]) -> Function[I, O]:
        return activity.defn(name=ref.name)(function)

    return register
