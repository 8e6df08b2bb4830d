"""The official client on a module's simulator: a module defines `sim` (its own simulator
process) and asks for these; each test works in a namespace of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from tests.support.sim import Sim

# The generated client's signatures ask for its models, but it takes plain dicts (what the
# adapter sends) at run time; tests use dicts, so its APIs are typed loosely.
Api = Any


@pytest.fixture(scope="module")
def api(sim: Sim) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(str(sim.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> Api:
    return client.CoreV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> Api:
    return client.CustomObjectsApi(api)


@pytest.fixture
def apps(api: client.ApiClient) -> Api:
    return client.AppsV1Api(api)


@pytest.fixture
def namespace(core: Api) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name
