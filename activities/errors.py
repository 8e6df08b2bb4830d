"""Cluster errors as Temporal sees them: worth a retry, or final with a clear type.

Retryable: Transient (429, 5xx, timeouts), Conflict (a stale read: read again)
and Expired. Everything else needs a change by someone and is final
(`non_retryable=True`): not found, invalid, forbidden, misconfigured. The
`type` of the ApplicationError is stable and documented: workflows and users
match on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from cluster.errors import ClusterError, Conflict, Expired, NotFound, Transient


def retryable(error: ClusterError) -> bool:
    return isinstance(error, Transient | Conflict | Expired)


def application_error(error: ClusterError, error_type: str | None = None) -> ApplicationError:
    """The ApplicationError for a cluster error; `error_type` names a final one."""
    final = error_type is not None or not retryable(error)
    return ApplicationError(
        error.message,
        type=error_type or type(error).__name__,
        non_retryable=final,
    )


@contextmanager
def cluster_errors(not_found: str | None = None) -> Iterator[None]:
    """Translate ClusterErrors raised inside; NotFound becomes `not_found` when given."""
    try:
        yield
    except NotFound as err:
        raise application_error(err, not_found) from err
    except ClusterError as err:
        raise application_error(err) from err
