"""The kubeconfig loaders' per-request credential hook, run at most once a second."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from cluster.client import _at_most_every


class Loader:
    """Behaves as kubernetes.config's loaders do: the hook rewrites the configuration and
    installs a fresh copy of itself every time it runs."""

    def __init__(self) -> None:
        self.runs = 0

    def install(self, configuration: Any) -> None:
        def refresh(cfg: Any) -> None:
            self.runs += 1
            self.install(cfg)

        configuration.refresh_api_key_hook = refresh


def test_the_hook_runs_at_most_once_per_interval_and_stays_wrapped() -> None:
    configuration: Any = client.Configuration()
    loader = Loader()
    loader.install(configuration)
    configuration.refresh_api_key_hook = _at_most_every(0.2, configuration.refresh_api_key_hook)
    wrapper = configuration.refresh_api_key_hook
    for _ in range(50):
        configuration.refresh_api_key_hook(configuration)
    assert loader.runs == 1
    assert configuration.refresh_api_key_hook is wrapper  # not replaced by the loader's copy
    time.sleep(0.25)
    configuration.refresh_api_key_hook(configuration)
    configuration.refresh_api_key_hook(configuration)
    assert loader.runs == 2
    assert configuration.refresh_api_key_hook is wrapper


def test_a_bearer_token_still_reaches_the_headers() -> None:
    configuration: Any = client.Configuration()
    configuration.api_key = {"BearerToken": "Bearer abc"}
    loader = Loader()
    loader.install(configuration)
    configuration.refresh_api_key_hook = _at_most_every(60, configuration.refresh_api_key_hook)
    api = client.ApiClient(configuration)
    for _ in range(3):
        headers: dict[str, str] = {}
        api.update_params_for_auth(headers, [], ["BearerToken"], "/api", "GET", None)
        assert headers["authorization"] == "Bearer abc"
    assert loader.runs == 1
