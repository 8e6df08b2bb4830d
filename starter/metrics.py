"""The worker's Prometheus endpoint: a Temporal Runtime that exports metrics.

`VMSNAP_METRICS_ADDRESS` (`host:port`, e.g. `0.0.0.0:9464`) turns it on;
unset or empty, the worker exports nothing (the SDK's default runtime). One
Runtime serves Temporal's own worker and client metrics and vmsnap's
(activities/metrics.py), at `http://ADDRESS/metrics`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from contracts.reporting import BUCKET_OVERRIDES

METRICS_ADDRESS_ENV = "VMSNAP_METRICS_ADDRESS"
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")


class MetricsConfigError(ValueError):
    """VMSNAP_METRICS_ADDRESS is not a usable `host:port`."""


def metrics_address(env: Mapping[str, str] | None = None) -> str | None:
    """The validated bind address from the environment, or None when unset."""
    value = (os.environ if env is None else env).get(METRICS_ADDRESS_ENV, "").strip()
    if not value:
        return None
    match = _ADDRESS.fullmatch(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise MetricsConfigError(
            f"{METRICS_ADDRESS_ENV}={value!r} must be host:port, e.g. 0.0.0.0:9464")
    return value


def metrics_runtime(address: str | None) -> Runtime | None:
    """A Runtime exporting Prometheus metrics on `address`, or None for no export.

    Counters keep their names (no `_total` added), histograms are in milliseconds.
    """
    if address is None:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=address, histogram_bucket_overrides=BUCKET_OVERRIDES)))


def runtime_from_environment(env: Mapping[str, str] | None = None) -> Runtime | None:
    """`metrics_runtime(metrics_address(env))`: what worker.py passes to `connect`."""
    return metrics_runtime(metrics_address(env))
