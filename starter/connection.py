"""How every vmsnap client of Temporal connects: the worker, the `vmsnap` CLI, the SDK.

One place decides the address, namespace, TLS/mTLS, API key and payload codec,
so that a worker and the tools that read its histories always agree.
Precedence, highest first:

1. explicit arguments (`load_connection_settings(address=...)`, CLI flags);
2. the environment, with Temporal's own names: `TEMPORAL_ADDRESS`,
   `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS`,
   `TEMPORAL_TLS_SERVER_CA_CERT_PATH|_DATA`, `TEMPORAL_TLS_CLIENT_CERT_PATH|_DATA`,
   `TEMPORAL_TLS_CLIENT_KEY_PATH|_DATA`, `TEMPORAL_TLS_SERVER_NAME`,
   `TEMPORAL_GRPC_META_*`, `TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`;
3. the profile of Temporal's client configuration file (`temporal.toml`, the
   file the `temporal` CLI and every SDK read);
4. defaults: `localhost:7233`, namespace `default`, no TLS.

Items 2-3 are read by the SDK itself (`temporalio.envconfig`); this module adds
the checks it leaves out (cert files that exist, a client cert with its key,
boolean values that mean what they say) and the vmsnap parts: the pydantic data
converter, always, and the payload codec when `VMSNAP_CODEC_KEY` or
`VMSNAP_CODEC_KEY_FILE` is set. An API key turns TLS on unless TLS is
explicitly disabled, as the Temporal CLI and SDKs do (Temporal Cloud).

`python -m starter.connection [--check] [--task-queue Q]` prints the resolved
settings (secrets hidden) and, with `--check`, tests the connection.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator
from temporalio.bridge.temporal_sdk_bridge import envconfig as _sdk_envconfig
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from starter.codec import CodecError, CodecSettings, EncryptionCodec

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_CONNECT_TIMEOUT = 10.0

# Boolean spellings the SDK's env config understands; anything else it silently
# ignores (and `TEMPORAL_TLS=no` would then turn TLS *on*), so we refuse it.
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
_BOOLEAN_ENV = ("TEMPORAL_TLS", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$")


class ConnectionConfigError(ValueError):
    """The connection settings are unusable; one line naming the setting at fault."""


class TemporalUnreachable(ConnectionError):
    """Temporal did not answer at the configured address (or refused our credentials)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"Temporal unreachable at {address}: {reason}")
        self.address = address
        self.reason = reason


class PemSource(BaseModel):
    """A PEM certificate or key, from a file (checked to exist) or inline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path | None = None
    data: SecretStr | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PemSource:
        if (self.path is None) == (self.data is None):
            raise ValueError("give exactly one of a path and inline data")
        return self

    def read(self) -> bytes:
        if self.data is not None:
            return self.data.get_secret_value().encode()
        assert self.path is not None
        return self.path.read_bytes()

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "<inline PEM>"


class TlsSettings(BaseModel):
    """TLS towards the frontend; empty means TLS with the system's root CAs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_ca_cert: PemSource | None = None
    client_cert: PemSource | None = None
    client_key: PemSource | None = None
    server_name: str | None = None

    @model_validator(mode="after")
    def _client_pair(self) -> TlsSettings:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError(
                "mTLS needs both a client certificate and its key "
                "(TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)"
            )
        return self

    @property
    def mutual(self) -> bool:
        return self.client_cert is not None

    def to_tls_config(self) -> TLSConfig:
        def read(source: PemSource | None, what: str) -> bytes | None:
            if source is None:
                return None
            try:
                return source.read()
            except OSError as error:
                raise ConnectionConfigError(
                    f"cannot read TLS {what} {source.describe()}: {error.strerror or error}"
                ) from None

        return TLSConfig(
            server_root_ca_cert=read(self.server_ca_cert, "server CA certificate"),
            client_cert=read(self.client_cert, "client certificate"),
            client_private_key=read(self.client_key, "client key"),
            domain=self.server_name,
        )


class ConnectionSettings(BaseModel):
    """Everything needed to reach Temporal; build it with `load_connection_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    api_key: SecretStr | None = None
    tls: TlsSettings | None = None
    grpc_meta: dict[str, str] = {}
    codec: CodecSettings | None = None
    profile: str | None = None
    """The temporal.toml profile the settings came from, for messages only."""

    @model_validator(mode="after")
    def _check(self) -> ConnectionSettings:
        if not _ADDRESS.match(self.address):
            raise ValueError(f"address {self.address!r} is not HOST:PORT")
        if not self.namespace.strip():
            raise ValueError("namespace is empty")
        return self

    def data_converter(self) -> DataConverter:
        """The pydantic converter, sealed by the payload codec when a key is configured.

        With a codec, failures are sealed too: their message and stack trace move into an
        encoded attribute (Temporal's `encode_common_attributes`), since a message may echo
        an input value. Only the failure's type stays readable (`Encoded failure`)."""
        if self.codec is None:
            return pydantic_data_converter
        return dataclasses.replace(
            pydantic_data_converter, payload_codec=EncryptionCodec(self.codec.keyring()),
            failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
        )

    def describe(self) -> str:
        """One line for logs: never a secret, enough to tell which server and how."""
        if self.tls is None:
            tls = "plaintext"
        else:
            tls = "mTLS" if self.tls.mutual else "TLS"
            if self.tls.server_name:
                tls += f" (server name {self.tls.server_name})"
        parts = [f"{self.address}", f"namespace {self.namespace}", tls]
        if self.api_key is not None:
            parts.append("API key")
        parts.append("payload encryption on" if self.codec else "payload encryption off")
        if self.profile:
            parts.append(f"profile {self.profile}")
        return ", ".join(parts)


def load_connection_settings(
    profile: str | None = None,
    env: Mapping[str, str] = os.environ,
    *,
    config_file: str | Path | None = None,
    address: str | None = None,
    namespace: str | None = None,
    api_key: str | None = None,
    tls: bool | None = None,
) -> ConnectionSettings:
    """Resolve the settings: arguments > `env` > temporal.toml profile > defaults.

    `profile` defaults to `TEMPORAL_PROFILE`, then `default`; naming a profile
    that the file lacks is an error, a missing `default` is not. The file is
    `config_file`, else `TEMPORAL_CONFIG_FILE`, else the SDK's default location.
    Empty environment variables count as unset (compose's `${VAR:-}`).
    """
    env = {name: value for name, value in env.items() if value != ""}
    for name in _BOOLEAN_ENV:
        if name in env and env[name].strip().lower() not in _TRUE | _FALSE:
            raise ConnectionConfigError(f"{name}={env[name]!r}: use true or false")
    profile = profile or env.get("TEMPORAL_PROFILE")
    if config_file is not None:
        env["TEMPORAL_CONFIG_FILE"] = str(config_file)
    if "TEMPORAL_CONFIG_FILE" in env and not Path(env["TEMPORAL_CONFIG_FILE"]).is_file():
        # The SDK would quietly use no file at all: a named file that is missing is a mistake.
        raise ConnectionConfigError(
            f"Temporal config file {env['TEMPORAL_CONFIG_FILE']} (TEMPORAL_CONFIG_FILE) "
            "does not exist"
        )
    try:
        raw: dict[str, Any] = _sdk_envconfig.load_client_connect_config(
            profile=profile,
            path=None,
            data=None,
            disable_file=False,
            disable_env=False,
            config_file_strict=False,
            env_vars=env,
        )
    except Exception as error:  # the bridge's ConfigError: bad TOML, unknown profile, ...
        where = f" ({env['TEMPORAL_CONFIG_FILE']})" if "TEMPORAL_CONFIG_FILE" in env else ""
        raise ConnectionConfigError(f"Temporal client configuration{where}: {error}") from None

    if api_key is not None:
        raw["api_key"] = api_key
    tls_settings = _tls_settings(raw.get("tls"), has_api_key=bool(raw.get("api_key")), force=tls)
    try:
        codec = CodecSettings.from_env(env)
        if codec is not None:
            codec.keyring()  # fail now, at start-up, not on the first payload
        return ConnectionSettings(
            address=address or raw.get("address") or DEFAULT_ADDRESS,
            namespace=namespace or raw.get("namespace") or DEFAULT_NAMESPACE,
            api_key=SecretStr(raw["api_key"]) if raw.get("api_key") else None,
            tls=tls_settings,
            grpc_meta=dict(raw.get("grpc_meta") or {}),
            codec=codec,
            profile=profile,
        )
    except CodecError as error:
        raise ConnectionConfigError(str(error)) from None
    except ValidationError as error:
        raise ConnectionConfigError(_first_error(error)) from None


def _tls_settings(
    raw_tls: Mapping[str, Any] | None, *, has_api_key: bool, force: bool | None
) -> TlsSettings | None:
    """TLS is on when configured and not disabled, or with an API key unless disabled."""
    raw_tls = raw_tls or {}
    if raw_tls.get("disable_host_verification"):
        raise ConnectionConfigError(
            "TLS host verification cannot be disabled with the Temporal Python SDK "
            "(TEMPORAL_TLS_DISABLE_HOST_VERIFICATION / tls.disable_host_verification); "
            "set TEMPORAL_TLS_SERVER_NAME to a name in the server certificate instead"
        )
    if force is False or (force is None and raw_tls.get("disabled") is True):
        return None
    # The SDK turns TLS on for any `tls` entry, even one holding only
    # `disable_host_verification=false`; we want an explicit reason.
    configured = raw_tls.get("disabled") is False or any(
        raw_tls.get(key) for key in ("server_ca_cert", "client_cert", "client_key", "server_name")
    )
    if force is None and not configured and not has_api_key:
        return None
    try:
        return TlsSettings(
            server_ca_cert=_pem(raw_tls.get("server_ca_cert"), "server CA certificate"),
            client_cert=_pem(raw_tls.get("client_cert"), "client certificate"),
            client_key=_pem(raw_tls.get("client_key"), "client key"),
            server_name=raw_tls.get("server_name") or None,
        )
    except ValidationError as error:
        raise ConnectionConfigError(f"TLS: {_first_error(error)}") from None


def _pem(raw: Mapping[str, Any] | None, what: str) -> PemSource | None:
    if not raw:
        return None
    if raw.get("path"):
        path = Path(raw["path"]).expanduser()
        if not path.is_file():
            raise ConnectionConfigError(f"TLS {what} file {path} does not exist")
        if not os.access(path, os.R_OK):
            raise ConnectionConfigError(f"TLS {what} file {path} is not readable")
        return PemSource(path=path)
    data = raw.get("data")
    if isinstance(data, bytes):
        data = data.decode()
    return PemSource(data=SecretStr(data)) if data else None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {message}" if location else message


async def connect(
    settings: ConnectionSettings | None = None,
    *,
    runtime: Runtime | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Client:
    """A connected client with vmsnap's data converter (and codec when configured).

    Raises ConnectionConfigError for unusable settings and TemporalUnreachable
    (one line: address and reason) when the server does not answer in `timeout`
    seconds or refuses the connection.
    """
    settings = settings or load_connection_settings()
    tls: bool | TLSConfig = settings.tls.to_tls_config() if settings.tls else False
    try:
        converter = settings.data_converter()
    except CodecError as error:
        raise ConnectionConfigError(str(error)) from None
    try:
        return await asyncio.wait_for(
            Client.connect(
                settings.address,
                namespace=settings.namespace,
                api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                tls=tls,
                rpc_metadata=settings.grpc_meta,
                data_converter=converter,
                runtime=runtime,
                connect_timeout=timedelta(seconds=timeout),
            ),
            timeout + 1.0,
        )
    except TimeoutError:
        raise TemporalUnreachable(settings.address, f"no answer in {timeout:g}s") from None
    except RuntimeError as error:
        # The core SDK's own message stays reachable as __cause__ for debugging.
        raise TemporalUnreachable(settings.address, _reason(str(error), settings.tls)) from error


# Known shapes of the core SDK's connect errors -> a reason a person can act on.
# Most specific first: the core's messages nest several layers of transport errors.
_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Connection refused", re.I), "connection refused (is the server running?)"),
    (re.compile(r"dns error|failed to lookup address", re.I), "host name not resolved"),
    (
        re.compile(r"UnknownIssuer|UnknownCA|BadSignature", re.I),
        "server certificate not trusted (set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA "
        "that signed it)",
    ),
    (
        re.compile(r"NotValidForName", re.I),
        "server certificate is not valid for this name (set TEMPORAL_TLS_SERVER_NAME to a "
        "name in it)",
    ),
    (re.compile(r"Expired|NotValidYet", re.I), "server certificate expired or not yet valid"),
    (
        re.compile(r"InvalidContentType|WrongVersion|CorruptMessage", re.I),
        "TLS handshake failed: the server does not speak TLS (check the port, or TEMPORAL_TLS)",
    ),
    (
        re.compile(r"Unauthenticated|PermissionDenied|\b401\b|\b403\b", re.I),
        "credentials refused (check the API key or client certificate)",
    ),
]
# The server hung up: what that means depends on what we offered it.
_DROPPED = re.compile(
    r"CertificateRequired|close_notify|HandshakeFailure|broken pipe|connection reset|"
    r"connection closed|transport error",
    re.I,
)


def _reason(message: str, tls: TlsSettings | None) -> str:
    """Shorten the core SDK's nested transport error to one plain reason."""
    detail = message.removeprefix("Failed client connect: ").replace("\n", " ")
    for pattern, reason in _REASONS:
        if pattern.search(detail):
            return reason
    if _DROPPED.search(detail):
        if tls is None:
            return (
                "connection dropped by the server (a TLS server reached without TLS? "
                "TEMPORAL_TLS=true)"
            )
        if not tls.mutual:
            return (
                "the server closed the TLS connection (does it require a client certificate? "
                "TEMPORAL_TLS_CLIENT_CERT_PATH / TEMPORAL_TLS_CLIENT_KEY_PATH)"
            )
        return "the server closed the TLS connection (does it trust the client certificate?)"
    if re.search(r"timed? ?out|deadline", detail, re.I):
        return "timed out"
    return detail[:300]


async def _check(settings: ConnectionSettings, task_queue: str | None) -> int:
    client = await connect(settings)
    if task_queue is None:
        print(f"ok: connected to {settings.address}")
        return 0
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    if not response.pollers:
        print(f"no worker polls task queue {task_queue!r}", file=sys.stderr)
        return 1
    print(f"ok: {len(response.pollers)} poller(s) on task queue {task_queue!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m starter.connection",
        description="Show the Temporal connection vmsnap would use; --check tests it.",
    )
    parser.add_argument("--profile", help="temporal.toml profile (default: TEMPORAL_PROFILE)")
    parser.add_argument("--check", action="store_true", help="connect and report")
    parser.add_argument("--task-queue", help="with --check: require a worker polling it")
    args = parser.parse_args(argv)
    try:
        settings = load_connection_settings(args.profile)
        print(settings.describe())
        if args.check or args.task_queue:
            return asyncio.run(_check(settings, args.task_queue))
    except (ConnectionConfigError, TemporalUnreachable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
