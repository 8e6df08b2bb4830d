"""The creation mark on every object the adapter creates for a workflow run.

An activity says, for the time it runs, which workflow run it works for
(`creating_for`, set from `activity.info()` where activities are registered:
`activities.registration`); every create the adapter makes meanwhile, on this thread or
one started with a copy of its context (`contextvars.copy_context().run`), carries
`rules.creation_marks.CREATED_BY_ANNOTATION` with the adapter's cluster id. Outside
an activity (a CLI, a test setting objects up) nothing is marked: what has no mark is
never the orphan sweeper's to remove.

Knows nothing of Temporal: the run is two strings.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Callable, Iterator
from typing import Any

from rules.creation_marks import CREATED_BY_ANNOTATION, CreationMark

_maker: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "vmsnap_creation_maker", default=None)


@contextlib.contextmanager
def creating_for(workflow_id: str, run_id: str) -> Iterator[None]:
    """Mark what is created in this context as made for that workflow run."""
    token = _maker.set((workflow_id, run_id) if workflow_id else None)
    try:
        yield
    finally:
        _maker.reset(token)


def current_maker() -> tuple[str, str] | None:
    return _maker.get()


def marked(body: dict[str, Any], cluster_id: Callable[[], str]) -> dict[str, Any]:
    """`body`, or a copy with the mark of the current run when there is one. A mark the
    body carries already is replaced: bodies are often built from what another run made
    (a restored PVC from its source's metadata, a clone from a VM a restore made)."""
    maker = _maker.get()
    if maker is None:
        return body
    stamped = copy.deepcopy(body)
    annotations = stamped.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[CREATED_BY_ANNOTATION] = CreationMark(
        cluster=cluster_id(), workflow_id=maker[0], run_id=maker[1]).text()
    return stamped
