"""The project's own Kubernetes errors, so callers never handle client or urllib3 types.

Activities decide retry versus give-up from these classes alone: `Transient`
is worth retrying as is; `Conflict` is worth retrying after re-reading; the
others need a change in the cluster or in the request. This module does not
import `kubernetes` at load time, so anything may import it cheaply.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any


class ClusterError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP code when there was an answer."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later without anyone changing anything."""
        return False

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments need help to survive pickling (thread/process executors).
        return (_rebuild, (type(self), self.message, self.status, self.reason))


def _rebuild(cls: type[ClusterError], message: str, status: int | None, reason: str) -> Any:
    return cls(message, status=status, reason=reason)


class NotFound(ClusterError):
    """404: the object (or its API) does not exist."""


class AlreadyExists(ClusterError):
    """409 AlreadyExists on create."""


class Conflict(ClusterError):
    """409 other than AlreadyExists: a stale resourceVersion, or a state the server refuses
    (freeze of a VMI that is not running, start of a running VM)."""


class Replaced(Conflict):
    """A delete with a uid precondition found another object under the name: the one the
    caller judged is gone, and a new one (never judged) is there."""


class Invalid(ClusterError):
    """400/422: the server refused the request as written (a failed freeze is a 400 too;
    its message is the server's)."""


class Forbidden(ClusterError):
    """401/403: the credentials are wrong or RBAC does not allow the call."""


class Expired(ClusterError):
    """410 Gone: a watch or list resourceVersion is too old; list again."""


class Transient(ClusterError):
    """429, 5xx, timeouts, refused or reset connections: try again later."""

    @property
    def retryable(self) -> bool:
        return True


class ConfigurationError(ClusterError):
    """No usable kubeconfig or in-cluster configuration."""


def from_api_exception(exc: BaseException) -> ClusterError:
    """Map a `kubernetes` ApiException, a urllib3 error, or a client-side validation error."""
    if isinstance(exc, ClusterError):
        return exc
    mapped = _translate(exc)
    if mapped is not None:
        return mapped
    return ClusterError(f"{type(exc).__name__}: {exc}", reason=type(exc).__name__)


@contextlib.contextmanager
def translated_errors(context: str = "") -> Iterator[None]:
    """Re-raise client and transport errors as `ClusterError`s, prefixing `context` if given.

    Anything else (a bug, a KeyboardInterrupt) passes through untouched.
    """
    try:
        yield
    except ClusterError:
        raise
    except Exception as exc:
        mapped = _translate(exc)
        if mapped is None:
            raise
        if context:
            mapped = type(mapped)(
                f"{context}: {mapped.message}", status=mapped.status, reason=mapped.reason
            )
        raise mapped from exc


def _translate(exc: BaseException) -> ClusterError | None:
    if _is_api_exception(exc):
        status = getattr(exc, "status", None)
        return _from_status(status if isinstance(status, int) else 0, exc)
    transport = _from_transport_error(exc)
    if transport is not None:
        return transport
    if _is_client_validation_error(exc):
        return Invalid(f"request refused before sending: {exc}", reason="ClientValidation")
    return None


def _is_api_exception(exc: BaseException) -> bool:
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # pragma: no cover - kubernetes is a dependency
        return False
    return isinstance(exc, ApiException)


def _status_details(exc: BaseException) -> tuple[str, str]:
    """The Status object's (reason, message) from the body, else the HTTP reason phrase."""
    body = getattr(exc, "body", None)
    phrase = str(getattr(exc, "reason", "") or "")
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str) and body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            return phrase, body.strip()
        if isinstance(parsed, dict):
            reason = str(parsed.get("reason") or phrase)
            message = str(parsed.get("message") or phrase or body.strip())
            return reason, message
        return phrase, body.strip()
    return phrase, phrase


def _from_status(status: int, exc: BaseException) -> ClusterError:
    reason, message = _status_details(exc)
    if status == 0:
        # The client raises status 0 for TLS failures and unreadable responses.
        if "CERTIFICATE_VERIFY_FAILED" in message or "certificate" in message.lower():
            return ClusterError(f"TLS verification failed: {message}", reason="TLSError")
        return Transient(message or "no response from the API server", reason=reason)
    if status == 404:
        return NotFound(message, status=status, reason=reason or "NotFound")
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(message, status=status, reason=reason)
        return Conflict(message, status=status, reason=reason or "Conflict")
    if status in (400, 422):
        return Invalid(message, status=status, reason=reason or "Invalid")
    if status in (401, 403):
        return Forbidden(message, status=status, reason=reason or "Forbidden")
    if status == 410:
        return Expired(message, status=status, reason=reason or "Expired")
    if status == 429 or status >= 500:
        return Transient(message, status=status, reason=reason or "ServerError")
    return ClusterError(message, status=status, reason=reason)


def _from_transport_error(exc: BaseException) -> ClusterError | None:
    """Network-level failures: urllib3 or libcurl errors, socket errors and timeouts."""
    from cluster.transport import TransportError

    if isinstance(exc, TransportError):
        if exc.kind == "timeout":
            return Transient(f"API server timed out: {exc}", reason="Timeout")
        if exc.kind == "tls":
            return ClusterError(f"TLS error talking to the API server: {exc}", reason="TLSError")
        if exc.kind == "address":
            return ConfigurationError(f"bad API server address: {exc}", reason="BadAddress")
        return Transient(f"cannot reach the API server: {exc}", reason="ConnectionError")
    try:
        import urllib3.exceptions as u3
    except ImportError:  # pragma: no cover - urllib3 comes with kubernetes
        return None
    cause: BaseException = exc
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    if isinstance(cause, u3.SSLError):
        return ClusterError(f"TLS error talking to the API server: {cause}", reason="TLSError")
    if isinstance(cause, u3.LocationValueError):
        return ConfigurationError(f"bad API server address: {cause}", reason="BadAddress")
    if isinstance(cause, u3.TimeoutError | TimeoutError):
        return Transient(f"API server timed out: {cause}", reason="Timeout")
    if isinstance(cause, u3.HTTPError | ConnectionError | OSError):
        return Transient(f"cannot reach the API server: {cause}", reason="ConnectionError")
    return None


def _is_client_validation_error(exc: BaseException) -> bool:
    """The generated client checks arguments and bodies (pydantic) before sending anything."""
    from pydantic import ValidationError

    try:
        from kubernetes.client.exceptions import ApiTypeError, ApiValueError
    except ImportError:  # pragma: no cover - kubernetes is a dependency
        return isinstance(exc, ValidationError)
    return isinstance(exc, ValidationError | ApiTypeError | ApiValueError)
