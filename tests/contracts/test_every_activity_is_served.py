"""Every activity a workflow can call (an `ActivityRef` in `contracts`) is registered by
the worker under that name: a missing one would leave a workflow retrying a task no
worker takes."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from kubernetes import client
from temporalio import activity

import contracts
from cluster.client import Cluster
from contracts.activity import ActivityRef
from contracts.snapshot import FREEZE_AND_CUT
from worker import activities_for, freeze_activities


def referenced() -> set[str]:
    names: set[str] = set()
    for module in pkgutil.iter_modules([str(Path(contracts.__file__).parent)]):
        loaded = importlib.import_module(f"contracts.{module.name}")
        names |= {value.name for value in vars(loaded).values()
                  if isinstance(value, ActivityRef)}
    return names


def test_every_activity_reference_is_registered_by_the_worker() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # never called: the activities are only bound
    cluster = Cluster(client.ApiClient(configuration))
    registered = set()
    for function in activities_for(cluster, None):
        definition = activity._Definition.from_callable(function)
        assert definition is not None and definition.name
        registered.add(definition.name)
    assert referenced() - registered == set()
    assert len(referenced()) > 30
    # the freeze process serves the cut (a cut that freezes is scheduled on its queue)
    served = {activity._Definition.must_from_callable(f).name for f in freeze_activities(cluster)}
    assert served == {FREEZE_AND_CUT.name}
