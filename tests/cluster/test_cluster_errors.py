"""Kubernetes client and transport errors become the project's own exceptions."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException, ApiValueError

from cluster.apis import KubeApis
from cluster.errors import (
    AlreadyExists,
    ClusterError,
    ConfigurationError,
    Conflict,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    Transient,
    from_api_exception,
    translated_errors,
)


def api_exception(status: int, reason: str | None = None, message: str = "msg",
                   phrase: str = "Phrase") -> ApiException:
    exc = ApiException(status=status, reason=phrase)
    if reason is not None:
        exc.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": reason, "message": message, "code": status})
    return exc


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (400, "BadRequest", Invalid),
        (422, "Invalid", Invalid),
        (401, "Unauthorized", Forbidden),
        (403, "Forbidden", Forbidden),
        (410, "Expired", Expired),
        (429, "TooManyRequests", Transient),
        (500, "InternalError", Transient),
        (503, "ServiceUnavailable", Transient),
        (504, "Timeout", Transient),
        (405, "MethodNotAllowed", ClusterError),
    ],
)
def test_status_codes_map_to_classes(status: int, reason: str,
                                     expected: type[ClusterError]) -> None:
    mapped = from_api_exception(api_exception(status, reason, f"the {reason} message"))
    assert type(mapped) is expected
    assert mapped.status == status
    assert mapped.reason == reason
    assert mapped.message == f"the {reason} message"
    assert mapped.retryable == (expected is Transient)


def test_a_failed_freeze_keeps_the_server_message() -> None:
    exc = api_exception(400, "BadRequest", "Failed to freeze VMI: guest agent error")
    mapped = from_api_exception(exc)
    assert isinstance(mapped, Invalid)
    assert str(mapped) == "Failed to freeze VMI: guest agent error"


def test_a_409_without_body_is_a_conflict_using_the_http_phrase() -> None:
    mapped = from_api_exception(ApiException(status=409, reason="Conflict"))
    assert isinstance(mapped, Conflict)
    assert mapped.reason == "Conflict" and mapped.message == "Conflict"


def test_a_plain_text_body_is_the_message() -> None:
    exc = ApiException(status=400, reason="Bad Request")
    exc.body = "VMI is not running\n"
    mapped = from_api_exception(exc)
    assert isinstance(mapped, Invalid) and mapped.message == "VMI is not running"


def test_status_zero_is_transient_unless_certificates_fail() -> None:
    assert isinstance(from_api_exception(ApiException(status=0, reason="SSLError\nEOF")),
                      Transient)
    tls = from_api_exception(
        ApiException(status=0, reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED]"))
    assert type(tls) is ClusterError and tls.reason == "TLSError"


def test_transport_errors_are_transient() -> None:
    refused = urllib3.exceptions.MaxRetryError(
        None, "/api",  # type: ignore[arg-type]
        urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
    )
    assert isinstance(from_api_exception(refused), Transient)
    timeout = urllib3.exceptions.ReadTimeoutError(
        None, "/api", "Read timed out."  # type: ignore[arg-type]
    )
    mapped = from_api_exception(timeout)
    assert isinstance(mapped, Transient) and mapped.reason == "Timeout"
    assert isinstance(from_api_exception(ConnectionResetError("reset")), Transient)
    assert isinstance(from_api_exception(urllib3.exceptions.ProtocolError("broken")), Transient)


def test_client_side_validation_is_invalid() -> None:
    mapped = from_api_exception(ApiValueError("Missing the required parameter `name`"))
    assert isinstance(mapped, Invalid) and mapped.reason == "ClientValidation"


def test_unknown_errors_become_generic_cluster_errors() -> None:
    mapped = from_api_exception(KeyError("x"))
    assert type(mapped) is ClusterError and not mapped.retryable


def test_translated_errors_prefixes_context_and_chains_the_cause() -> None:
    original = api_exception(404, "NotFound", 'virtualmachines "vm1" not found')
    with pytest.raises(NotFound) as raised, translated_errors("get VirtualMachine ns/vm1"):
        raise original
    assert str(raised.value) == 'get VirtualMachine ns/vm1: virtualmachines "vm1" not found'
    assert raised.value.__cause__ is original


def test_translated_errors_lets_bugs_through() -> None:
    with pytest.raises(KeyError), translated_errors("anything"):
        raise KeyError("a bug, not a cluster error")


def test_errors_survive_pickling_for_executors() -> None:
    error = Conflict("stale", status=409, reason="Conflict")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is Conflict
    assert (copy.message, copy.status, copy.reason) == ("stale", 409, "Conflict")


def test_configuration_error_is_a_cluster_error() -> None:
    assert issubclass(ConfigurationError, ClusterError)


# ---- real sockets: what the client raises when the server is not there or silent --------

def apis_for(url: str, read_timeout: float = 5.0) -> KubeApis:
    from kubernetes import client
    from urllib3.util.retry import Retry

    configuration = client.Configuration(host=url)
    configuration.retries = Retry(total=0, connect=0, read=0)
    return KubeApis(client.ApiClient(configuration), request_timeout_seconds=read_timeout,
                    connect_timeout_seconds=1.0)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        apis = apis_for(f"http://127.0.0.1:{port}")
        with pytest.raises(Transient, match="get VirtualMachine ns/vm"):
            from cluster.apis import VIRTUAL_MACHINES
            apis.get_custom(VIRTUAL_MACHINES, "ns", "vm")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_silent_server_times_out_as_transient_within_the_request_timeout(
    silent_server: str,
) -> None:
    from cluster.apis import VIRTUAL_MACHINES

    apis = apis_for(silent_server, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(Transient) as raised:
        apis.get_custom(VIRTUAL_MACHINES, "ns", "vm")
    assert raised.value.reason == "Timeout"
    assert time.monotonic() - started < 2.0
