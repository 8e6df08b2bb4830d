"""The HTTP transport of `KubeApis.request_json`: libcurl (pycurl), with warm connections pooled.

Why not urllib3 for these requests: the worker runs its activities on threads beside
the asyncio loop that drives every Temporal task, all under one GIL. urllib3 and
http.client do their work in Python (headers parsed with the email package, the
pool manager's keys, several response objects): about 0.45 ms of GIL per request
alone and 0.7-0.9 ms with 16 threads at once, and while a thread holds the GIL
the loop waits (another thread's wake-up was delayed 8-9 ms at the 90th percentile).
libcurl does the request, TLS and header parsing in C with the GIL released: 0.2-0.27
ms of CPU per request, wake-ups within 0.7 ms (`bench/request_transport.py`). The
Kubernetes client stays for configuration, credentials and watches; only the
request/response calls of `request_json` come here.

What carries over from the client's configuration: the server and its CA (file or
data), client certificates, `verify_ssl`. A configuration this transport does not
reproduce exactly (a proxy, `tls_server_name`, `assert_hostname`) keeps the client's
urllib3 path (`CurlTransport.supports`).

Behaviour kept from the urllib3 path: connection failures (the request never left)
are retried twice after 0.1 s and 0.2 s, nothing else is; non-2xx answers raise
`ApiException` with the status, reason phrase and body (not the headers: collecting
them costs a GIL round trip per header line); network errors raise
`TransportError`, which `cluster.errors` maps like urllib3's (timeouts and unreachable
servers are Transient, TLS failures are not).
One difference: libcurl bounds a whole transfer, not each read, so the (connect, read)
timeouts become "connect within min(connect, read), answer within read of the start".
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from io import BytesIO
from typing import Any

import pycurl
from kubernetes.client.exceptions import ApiException

CONNECT_RETRIES = 2
CONNECT_RETRY_DELAYS = (0.1, 0.2)
# Codes for "the request never reached the server": safe to send again.
_NOT_CONNECTED = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST})
_TIMEOUTS = frozenset({pycurl.E_OPERATION_TIMEDOUT})
_TLS = frozenset({pycurl.E_SSL_CONNECT_ERROR, pycurl.E_PEER_FAILED_VERIFICATION,
                  pycurl.E_SSL_CERTPROBLEM, pycurl.E_SSL_CIPHER, pycurl.E_SSL_CACERT_BADFILE,
                  pycurl.E_SSL_ENGINE_NOTFOUND, pycurl.E_SSL_ENGINE_SETFAILED,
                  pycurl.E_SSL_ISSUER_ERROR, pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
                  pycurl.E_SSL_INVALIDCERTSTATUS, pycurl.E_SSL_CRL_BADFILE})
_BAD_ADDRESS = frozenset({pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL})


class TransportError(Exception):
    """A request that got no HTTP answer; `kind` is "timeout", "tls", "address" or
    "connection" (how `cluster.errors` classifies it)."""

    def __init__(self, message: str, kind: str, code: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code


def transport_error(error: pycurl.error) -> TransportError:
    """Classify a libcurl error by its code."""
    code = int(error.args[0]) if error.args else -1
    message = str(error.args[1]) if len(error.args) > 1 else str(error)
    if code in _TIMEOUTS:
        kind = "timeout"
    elif code in _TLS:
        kind = "tls"
    elif code in _BAD_ADDRESS:
        kind = "address"
    else:
        kind = "connection"
    return TransportError(f"{message} (curl error {code})", kind, code)


@dataclass(frozen=True)
class Response:
    status: int
    data: bytes


@dataclass(frozen=True)
class TlsSettings:
    """What libcurl needs of the client's TLS configuration."""

    verify: bool = True
    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None


class CurlTransport:
    """Requests on a pool of libcurl handles, each keeping its connection alive.

    A handle serves one request at a time: a thread takes the most recently returned
    one (its connection is the warmest) and gives it back; with every pooled handle
    busy it makes another, and one returned to a full pool is closed.
    """

    def __init__(self, tls: TlsSettings, max_pooled: int = 64) -> None:
        if max_pooled < 1:
            raise ValueError(f"max_pooled must be at least 1, not {max_pooled}")
        self.tls = tls
        self.max_pooled = max_pooled
        self._idle: list[pycurl.Curl] = []
        self._lock = threading.Lock()
        self.handles_made = 0
        self.requests_sent = 0  # attempts, retries included (a figure for tests and benches)
        self.connections_made = 0  # new connections (TLS handshakes): pooled ones are reused

    @staticmethod
    def supports(configuration: Any) -> bool:
        """Whether this transport reproduces the configuration's connection exactly: no
        proxy in use for its server (one from the environment counts; `no_proxy` may
        exempt the server), no TLS server name or hostname to assert."""
        from kubernetes.client.rest import should_bypass_proxies

        proxy = getattr(configuration, "proxy", None)
        if proxy and not should_bypass_proxies(configuration.host,
                                               getattr(configuration, "no_proxy", None) or ""):
            return False
        return not (getattr(configuration, "tls_server_name", None)
                    or getattr(configuration, "assert_hostname", None) is not None)

    @classmethod
    def from_configuration(cls, configuration: Any, max_pooled: int = 64) -> CurlTransport:
        """For a `kubernetes.client.Configuration` that `supports` accepts."""
        ca_data = getattr(configuration, "ca_cert_data", None)
        if isinstance(ca_data, str):
            ca_data = ca_data.encode()
        tls = TlsSettings(verify=bool(configuration.verify_ssl),
                          ca_file=configuration.ssl_ca_cert, ca_data=ca_data,
                          cert_file=configuration.cert_file, key_file=configuration.key_file)
        return cls(tls, max_pooled)

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                timeout: tuple[float, float]) -> Response:
        """One request; raises ApiException for a non-2xx answer, TransportError for none."""
        lines = [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Expect:")  # no 100-continue round trip before a body
        for attempt in range(CONNECT_RETRIES + 1):
            self.requests_sent += 1  # under the GIL; a lost count under races is harmless
            try:
                return self._send(method, url, lines, body, timeout)
            except TransportError as err:
                if err.code not in _NOT_CONNECTED or attempt == CONNECT_RETRIES:
                    raise
            time.sleep(CONNECT_RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.close()

    # ---- one request -------------------------------------------------------------------

    def _send(self, method: str, url: str, header_lines: list[str], body: bytes | None,
              timeout: tuple[float, float]) -> Response:
        handle = self._take()
        answer = BytesIO()
        try:
            handle.setopt(pycurl.URL, url)
            handle.setopt(pycurl.HTTPHEADER, header_lines)
            handle.setopt(pycurl.CUSTOMREQUEST, method)
            if body is not None:
                handle.setopt(pycurl.POSTFIELDS, body)
            # The body only: every callback into Python takes the GIL back mid-request, so
            # headers are not collected (errors carry the status's standard phrase).
            handle.setopt(pycurl.WRITEDATA, answer)
            # libcurl bounds the whole transfer, not each read: the read timeout bounds the
            # request, connecting (rare: handles are pooled connected) included.
            connect, read = timeout
            handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, round(min(connect, read) * 1000)))
            handle.setopt(pycurl.TIMEOUT_MS, max(1, round(read * 1000)))
            try:
                handle.perform()
            except pycurl.error as err:
                raise transport_error(err) from None
            status = int(handle.getinfo(pycurl.RESPONSE_CODE))
            self.connections_made += int(handle.getinfo(pycurl.NUM_CONNECTS))
        except BaseException:
            handle.close()  # in an unknown state: never pooled again
            raise
        self._give_back(handle)
        data = answer.getvalue()
        if not 200 <= status <= 299:
            raise _api_exception(status, data)
        return Response(status, data)

    # ---- the pool ----------------------------------------------------------------------

    def _take(self) -> pycurl.Curl:
        with self._lock:
            if self._idle:
                handle = self._idle.pop()
                handle.reset()  # options of the last request go; the connection stays
                self._configure(handle)
                return handle
            self.handles_made += 1
        handle = pycurl.Curl()
        self._configure(handle)
        return handle

    def _give_back(self, handle: pycurl.Curl) -> None:
        with self._lock:
            if len(self._idle) < self.max_pooled:
                self._idle.append(handle)
                return
        handle.close()

    def _configure(self, handle: pycurl.Curl) -> None:
        tls = self.tls
        handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without signals: we run on threads
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        handle.setopt(pycurl.TCP_NODELAY, 1)
        # No proxy, not even one from the environment: a configured one keeps urllib3
        # (`supports`), and the client's path ignores the environment too.
        handle.setopt(pycurl.PROXY, "")
        if not tls.verify:
            handle.setopt(pycurl.SSL_VERIFYPEER, 0)
            handle.setopt(pycurl.SSL_VERIFYHOST, 0)
        elif tls.ca_data is not None:
            handle.setopt(pycurl.CAINFO_BLOB, tls.ca_data)
        else:
            handle.setopt(pycurl.CAINFO, tls.ca_file or _system_ca_file())
        if tls.cert_file:
            handle.setopt(pycurl.SSLCERT, tls.cert_file)
        if tls.key_file:
            handle.setopt(pycurl.SSLKEY, tls.key_file)


def _system_ca_file() -> str:
    """The CA bundle Python's own TLS trusts by default (what urllib3 uses without one)."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile


def _api_exception(status: int, data: bytes) -> ApiException:
    """An ApiException like the client's: status, reason phrase, body (no headers).

    The phrase is the status's standard one, as the API server (Go's net/http) sends it.
    """
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    error = ApiException(status=status, reason=reason)
    error.body = data.decode("utf-8", errors="replace")
    return error
