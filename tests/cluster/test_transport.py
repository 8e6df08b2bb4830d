"""`KubeApis.request_json` over libcurl answers as the client's urllib3 path did.

Against the running simulator: the same objects and errors, connections pooled and
reused, the rate limiter still asked, and network failures classified the way
`cluster.errors` classified urllib3's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import certifi
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cluster.apis import VIRTUAL_MACHINES, KubeApis, custom_path
from cluster.client import Cluster, load_api_client
from cluster.errors import ClusterError, NotFound, Transient, translated_errors
from cluster.rate_limit import RateLimiter, ThrottledApiClient
from cluster.transport import CurlTransport, TlsSettings, TransportError
from tests.cluster.conftest import NS
from tests.support.sim import Sim

LABELS = {"vmsnap.io/test": "transport"}


@pytest.fixture()
def urllib3_cluster(sim: Sim) -> Iterator[Cluster]:
    """The same adapter with libcurl switched off: the reference answers."""
    with Cluster.from_environment(str(sim.kubeconfig), request_timeout_seconds=10) as plain:
        plain.use_client_transport()
        yield plain


def test_the_adapter_uses_libcurl_for_the_simulators_configuration(cluster: Cluster) -> None:
    assert cluster.transport is not None


def test_reads_match_the_urllib3_path(cluster: Cluster, urllib3_cluster: Cluster) -> None:
    path = custom_path(VIRTUAL_MACHINES, NS, "freezer")
    assert cluster.request_json("GET", path) == urllib3_cluster.request_json("GET", path)
    listed = cluster.request_json("GET", custom_path(VIRTUAL_MACHINES, NS))
    assert [i["metadata"]["name"] for i in listed["items"]] == [
        i["metadata"]["name"]
        for i in urllib3_cluster.request_json("GET", custom_path(VIRTUAL_MACHINES, NS))["items"]]


def test_writes_with_bodies_round_trip(cluster: Cluster) -> None:
    name = "transport-event"
    path = f"/api/v1/namespaces/{NS}/events"
    note = "n" * 4096  # a body past the size at which curl would wait for 100-continue
    created = cluster.request_json("POST", path, body={
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "labels": LABELS},
        "involvedObject": {"kind": "VirtualMachine", "namespace": NS, "name": "freezer"},
        "reason": "Transport", "message": note, "type": "Normal"})
    try:
        assert created["message"] == note
        patched = cluster.request_json("PATCH", f"{path}/{name}", body={"reason": "Merged"},
                                       content_type="application/merge-patch+json")
        assert (patched["reason"], patched["message"]) == ("Merged", note)
        patched = cluster.request_json(
            "PATCH", f"{path}/{name}", body=[{"op": "replace", "path": "/message",
                                              "value": "short"}],
            content_type="application/json-patch+json")
        assert patched["message"] == "short"
        replaced = cluster.request_json("PUT", f"{path}/{name}",
                                        body={**patched, "reason": "Replaced"})
        assert replaced["reason"] == "Replaced"
        assert replaced["metadata"]["resourceVersion"] != patched["metadata"]["resourceVersion"]
    finally:
        cluster.request_json("DELETE", f"{path}/{name}")
    with pytest.raises(ApiException) as gone:
        cluster.request_json("GET", f"{path}/{name}")
    assert gone.value.status == 404


def test_an_error_answer_carries_status_reason_and_body(cluster: Cluster,
                                                        urllib3_cluster: Cluster) -> None:
    path = custom_path(VIRTUAL_MACHINES, NS, "no-such-vm")
    with pytest.raises(ApiException) as curl_error:
        cluster.request_json("GET", path)
    with pytest.raises(ApiException) as urllib3_error:
        urllib3_cluster.request_json("GET", path)
    assert curl_error.value.status == urllib3_error.value.status == 404
    assert curl_error.value.reason == urllib3_error.value.reason == "Not Found"
    body = urllib3_error.value.body
    assert curl_error.value.body == (body.decode() if isinstance(body, bytes) else body)
    with pytest.raises(NotFound), translated_errors("get"):
        cluster.request_json("GET", path)


def test_the_waits_list_through_libcurl(cluster: Cluster) -> None:
    transport = cluster.transport
    assert transport is not None
    cluster.create_volume_snapshot(NS, "vs-transport", "snap-a", "fast-snap", LABELS)
    try:
        cluster.watch_volume_snapshots(NS, ["vs-transport"], "ready", timeout_seconds=10)
        before = transport.requests_sent
        (state,) = cluster.watch_volume_snapshots(NS, ["vs-transport"], "ready",
                                                  timeout_seconds=10)
        assert state.ready_to_use
        assert transport.requests_sent == before + 1  # the LIST; nothing left to watch for
    finally:
        cluster.delete_volume_snapshot(NS, "vs-transport")


def test_sequential_requests_reuse_one_connection(sim: Sim) -> None:
    with Cluster.from_environment(str(sim.kubeconfig)) as fresh:
        assert fresh.transport is not None
        for _ in range(20):
            fresh.request_json("GET", custom_path(VIRTUAL_MACHINES, NS, "freezer"))
        assert fresh.transport.handles_made == 1
        assert fresh.transport.connections_made == 1  # one TLS handshake for all twenty


def test_concurrent_threads_each_get_a_handle_and_return_it(sim: Sim) -> None:
    with Cluster.from_environment(str(sim.kubeconfig)) as fresh:
        transport = fresh.transport
        assert transport is not None
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def work() -> None:
            try:
                start.wait(5)
                for _ in range(10):
                    fresh.request_json("GET", custom_path(VIRTUAL_MACHINES, NS, "freezer"))
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert 1 <= transport.handles_made <= 8
        before = transport.handles_made
        fresh.request_json("GET", custom_path(VIRTUAL_MACHINES, NS, "freezer"))
        assert transport.handles_made == before  # pooled, not made again


def test_a_pool_past_its_size_closes_the_extra_handles(sim: Sim) -> None:
    api_client = load_api_client(str(sim.kubeconfig))
    transport = CurlTransport.from_configuration(api_client.configuration, max_pooled=1)
    apis = KubeApis(api_client)
    apis.close_transport()
    apis.transport = transport
    try:
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(apis.request_json(
            "GET", custom_path(VIRTUAL_MACHINES, NS, "freezer")))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 4
        assert len(transport._idle) == 1
    finally:
        transport.close()
        api_client.close()


def test_the_rate_limiter_is_asked_before_each_request(sim: Sim) -> None:
    api_client = load_api_client(str(sim.kubeconfig))
    assert isinstance(api_client, ThrottledApiClient)
    api_client.limiter = RateLimiter(5.0, 1)
    apis = KubeApis(api_client)
    try:
        assert apis.transport is not None
        began = time.monotonic()
        for _ in range(3):
            apis.request_json("GET", custom_path(VIRTUAL_MACHINES, NS, "freezer"))
        assert time.monotonic() - began >= 0.35  # burst 1, then one every 0.2 s
    finally:
        apis.close_transport()
        api_client.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_server_is_retried_then_transient() -> None:
    transport = CurlTransport(TlsSettings())
    began = time.monotonic()
    with pytest.raises(TransportError) as raised:
        transport.request("GET", f"http://127.0.0.1:{_closed_port()}/version", {}, None,
                          (1.0, 1.0))
    assert raised.value.kind == "connection"
    assert time.monotonic() - began >= 0.3  # two retries, 0.1 s and 0.2 s apart
    with pytest.raises(Transient) as mapped, translated_errors():
        raise raised.value
    assert mapped.value.reason == "ConnectionError" and mapped.value.retryable


def test_an_untrusted_server_certificate_is_a_tls_error_not_retried(sim: Sim) -> None:
    transport = CurlTransport(TlsSettings(ca_file=certifi.where()))  # not the sim's CA
    try:
        with pytest.raises(TransportError) as raised:
            https = sim.url.replace("http://", "https://", 1)  # the port speaks both
            transport.request("GET", https + "/version", {}, None, (2.0, 2.0))
        assert raised.value.kind == "tls"
        with pytest.raises(ClusterError) as mapped, translated_errors():
            raise raised.value
        assert mapped.value.reason == "TLSError" and not mapped.value.retryable
    finally:
        transport.close()


@pytest.mark.parametrize("setting", [
    {"proxy": "http://127.0.0.1:3128"}, {"tls_server_name": "kubernetes"},
    {"assert_hostname": "kubernetes"}])
def test_a_configuration_libcurl_would_not_reproduce_keeps_urllib3(
        setting: dict[str, str]) -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    assert CurlTransport.supports(configuration)
    for name, value in setting.items():
        setattr(configuration, name, value)
    assert not CurlTransport.supports(configuration)
    api_client = client.ApiClient(configuration)
    try:
        assert KubeApis(api_client).transport is None
    finally:
        api_client.close()


def test_a_proxy_exempted_for_the_server_by_no_proxy_keeps_libcurl() -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.proxy = "http://127.0.0.1:3128"
    configuration.no_proxy = "127.0.0.1,localhost"
    assert CurlTransport.supports(configuration)


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pooled"):
        CurlTransport(TlsSettings(), max_pooled=0)
