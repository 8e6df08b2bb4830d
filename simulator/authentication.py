"""Who a request comes from: bearer tokens mapped to users, as kube-apiserver authenticates.

The simulator's own token is the cluster admin (user `admin`, group `system:masters`,
which the authorizer lets through as kube-apiserver's privileged-group authorizer does).
More tokens come from a static token file, kube-apiserver's `--token-auth-file`: CSV
lines `token,user,uid[,"group1,group2"]`. Every authenticated user also gets the
`system:authenticated` group, as the apiserver's AuthenticatedGroupAdder gives it.
An unknown token is 401 `Unauthorized`, with nothing said about why.
"""

from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
from pathlib import Path

from simulator.errors import ApiError

ADMIN_USER = "admin"
MASTERS_GROUP = "system:masters"
AUTHENTICATED_GROUP = "system:authenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"


class TokenFileError(ValueError):
    """The token file cannot be read or a line of it is not a token line."""


@dataclass(frozen=True)
class UserInfo:
    """user.Info: a name, a uid and groups (what RBAC subjects are matched against)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


def unauthorized() -> ApiError:
    """What kube-apiserver answers to a missing or unknown token."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    """The user a ServiceAccount's token authenticates as (serviceaccount.UserInfo)."""
    return UserInfo(
        f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
        uid,
        (SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
    )


def token_file_line(token: str, user: UserInfo) -> str:
    """One `--token-auth-file` line for `user` (groups quoted, as the CSV needs)."""
    fields = [token, user.name, user.uid]
    if user.groups:
        fields.append(",".join(user.groups))
    return ",".join(f'"{f}"' if "," in f or '"' in f else f for f in fields) + "\n"


def read_token_file(path: Path) -> dict[str, UserInfo]:
    """tokenfile.NewCSV: at least three columns; an empty token is skipped; the fourth
    column, when present, is the groups separated by commas; a later line wins."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TokenFileError(f"token file {path}: {exc.strerror or exc}") from exc
    tokens: dict[str, UserInfo] = {}
    for number, record in enumerate(csv.reader(text.splitlines()), start=1):
        if not record:
            continue
        if len(record) < 3:
            raise TokenFileError(
                f"token file '{path}' must have at least 3 columns (token, user name, user uid),"
                f" found {len(record)} (line {number})"
            )
        if not record[0]:
            continue
        groups = tuple(record[3].split(",")) if len(record) >= 4 else ()
        tokens[record[0]] = UserInfo(record[1], record[2], groups)
    return tokens


class Authenticator:
    """Bearer tokens to users: the admin token, then the token file's."""

    def __init__(self, admin_token: str, tokens: dict[str, UserInfo] | None = None) -> None:
        self._admin_token = admin_token.encode()
        self._tokens = {token.encode(): user for token, user in (tokens or {}).items()}

    def authenticate(self, authorization_header: str) -> UserInfo:
        """The user of an `Authorization: Bearer ...` header; raises 401 otherwise."""
        scheme, _, presented = authorization_header.partition(" ")
        token = presented.strip().encode()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if hmac.compare_digest(token, self._admin_token):
            return _with_authenticated(UserInfo(ADMIN_USER, "", (MASTERS_GROUP,)))
        for known, user in self._tokens.items():
            if hmac.compare_digest(token, known):
                return _with_authenticated(user)
        raise unauthorized()


def _with_authenticated(user: UserInfo) -> UserInfo:
    if AUTHENTICATED_GROUP in user.groups:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED_GROUP))
