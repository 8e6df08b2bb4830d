"""API errors as a real API server reports them: a `Status` object with an HTTP code."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the simulator answers with a `Status` body, as kube-apiserver does."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:  # an empty one is still written, as `details: {}`
            body["details"] = self.details
        body["code"] = self.code  # after the details, in metav1.Status's field order
        return body


def _details(kind: str, name: str, group: str) -> dict[str, Any]:
    return {"name": name, "group": group, "kind": kind}


def not_found(group: str, plural: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        404, "NotFound", f'{resource} "{name}" not found', _details(plural, name, group)
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409, "AlreadyExists", f'{resource} "{name}" already exists', _details(plural, name, group)
    )


def conflict(group: str, plural: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(plural, name, group),
    )


def precondition_failed(
    group: str, kind: str, name: str, field: str, sent: str, stored: str
) -> ApiError:
    """A delete whose precondition (uid or resourceVersion) names another object, as
    `rest.BeforeDelete` (apiserver/pkg/registry/rest/delete.go) answers it: a Conflict on
    the kind (not the resource), e.g. `Operation cannot be fulfilled on
    PersistentVolumeClaim "p": the UID in the precondition (a) does not match the UID in
    record (b). The object might have been deleted and then recreated`."""
    resource = f"{kind}.{group}" if group else kind
    if field == "UID":
        why = ("the UID in the precondition ({}) does not match the UID in record ({}). "
               "The object might have been deleted and then recreated")
    else:
        why = ("the ResourceVersion in the precondition ({}) does not match the "
               "ResourceVersion in record ({}). The object might have been modified")
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": {why.format(sent, stored)}',
        _details(kind, name, group),
    )


# field.ErrorType of a message, by the words `field.Error.ErrorBody` starts it with.
_CAUSE_TYPES = (
    ("Required value", "FieldValueRequired"),
    ("Forbidden", "FieldValueForbidden"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Duplicate value", "FieldValueDuplicate"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
    ("Not found", "FieldValueNotFound"),
)


def cause_type(message: str) -> str:
    """The StatusCause `reason` for a field error's message (`FieldValueInvalid` if unknown)."""
    for prefix, reason in _CAUSE_TYPES:
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid with one cause per bad field, as kubectl prints them.

    `errors.NewInvalid(schema.GroupKind{group, kind}, ...)`: the message names the kind as
    `GroupKind.String()` does (`Kind.group`, or `Kind` alone in the core group)."""
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    details = _details(kind, name, group)
    details["causes"] = [
        {"reason": cause_type(c["message"]), "message": c["message"], "field": c["field"]}
        for c in causes
    ]
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
