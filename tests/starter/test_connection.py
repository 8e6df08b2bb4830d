"""Connection settings: environment, temporal.toml profiles, precedence, TLS, codec."""

from __future__ import annotations

import base64
import os
import re
import socket
import textwrap
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from starter.codec import EncryptionCodec
from starter.connection import (
    ConnectionConfigError,
    ConnectionSettings,
    TemporalUnreachable,
    connect,
    load_connection_settings,
)
from starter.connection import main as connection_main

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Files only need to exist and be readable for loading; the TLS e2e test uses real ones."""
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        path = tmp_path / name
        path.write_text(f"-----BEGIN TEST-----\n{name}\n-----END TEST-----\n")
        files[name] = path
    return files


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "temporal.toml"
    path.write_text(textwrap.dedent(text))
    return path


def isolated_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """An environment whose Temporal config file is an empty file of the test's own."""
    config = tmp_path / "empty.toml"
    config.touch()
    return {"TEMPORAL_CONFIG_FILE": str(config), **variables}


# ---- environment ----------------------------------------------------------------------


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    settings = load_connection_settings(env=isolated_env(tmp_path))
    assert settings.address == "localhost:7233"
    assert settings.namespace == "default"
    assert settings.api_key is None
    assert settings.tls is None
    assert settings.codec is None
    assert settings.data_converter() is pydantic_data_converter


def test_address_and_namespace_from_environment(tmp_path: Path) -> None:
    settings = load_connection_settings(
        env=isolated_env(
            tmp_path, TEMPORAL_ADDRESS="temporal.prod:7233", TEMPORAL_NAMESPACE="vmsnap-prod"
        )
    )
    assert (settings.address, settings.namespace) == ("temporal.prod:7233", "vmsnap-prod")
    assert settings.tls is None


def test_tls_with_private_ca_and_server_name(tmp_path: Path, pem_files: dict[str, Path]) -> None:
    settings = load_connection_settings(
        env=isolated_env(
            tmp_path,
            TEMPORAL_ADDRESS="10.0.0.5:7233",
            TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pem_files["ca.pem"]),
            TEMPORAL_TLS_SERVER_NAME="temporal.internal",
        )
    )
    assert settings.tls is not None
    assert not settings.tls.mutual
    config = settings.tls.to_tls_config()
    assert config.server_root_ca_cert == pem_files["ca.pem"].read_bytes()
    assert config.domain == "temporal.internal"
    assert config.client_cert is None


def test_mtls_client_certificate_and_key(tmp_path: Path, pem_files: dict[str, Path]) -> None:
    settings = load_connection_settings(
        env=isolated_env(
            tmp_path,
            TEMPORAL_TLS_CLIENT_CERT_PATH=str(pem_files["client.pem"]),
            TEMPORAL_TLS_CLIENT_KEY_PATH=str(pem_files["client.key"]),
        )
    )
    assert settings.tls is not None and settings.tls.mutual
    config = settings.tls.to_tls_config()
    assert config.client_cert == pem_files["client.pem"].read_bytes()
    assert config.client_private_key == pem_files["client.key"].read_bytes()
    assert config.server_root_ca_cert is None  # system roots
    assert "mTLS" in settings.describe()


def test_client_certificate_without_key_is_refused(
    tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    with pytest.raises(ConnectionConfigError, match="client certificate and its key"):
        load_connection_settings(
            env=isolated_env(tmp_path, TEMPORAL_TLS_CLIENT_CERT_PATH=str(pem_files["client.pem"]))
        )


def test_missing_certificate_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(ConnectionConfigError) as caught:
        load_connection_settings(
            env=isolated_env(tmp_path, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(missing))
        )
    assert str(caught.value) == f"TLS server CA certificate file {missing} does not exist"


def test_api_key_turns_tls_on_with_system_roots(tmp_path: Path) -> None:
    settings = load_connection_settings(
        env=isolated_env(
            tmp_path,
            TEMPORAL_ADDRESS="vmsnap.a1b2c.tmprl.cloud:7233",
            TEMPORAL_NAMESPACE="vmsnap.a1b2c",
            TEMPORAL_API_KEY="secret-api-key",
        )
    )
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "secret-api-key"
    assert settings.tls is not None
    config = settings.tls.to_tls_config()
    assert (config.server_root_ca_cert, config.client_cert) == (None, None)
    assert "secret-api-key" not in settings.describe()
    assert "secret-api-key" not in repr(settings)


def test_api_key_with_tls_explicitly_off(tmp_path: Path) -> None:
    settings = load_connection_settings(
        env=isolated_env(tmp_path, TEMPORAL_API_KEY="k", TEMPORAL_TLS="false")
    )
    assert settings.api_key is not None
    assert settings.tls is None


def test_tls_true_alone_uses_system_roots(tmp_path: Path) -> None:
    settings = load_connection_settings(env=isolated_env(tmp_path, TEMPORAL_TLS="TRUE"))
    assert settings.tls is not None and settings.tls.server_ca_cert is None


@pytest.mark.parametrize("value", ["no", "yes", "on", "maybe"])
def test_ambiguous_tls_flag_is_refused(tmp_path: Path, value: str) -> None:
    # The SDK ignores such values, and then the mere presence of TEMPORAL_TLS turns TLS on.
    with pytest.raises(ConnectionConfigError, match=r"TEMPORAL_TLS=.*use true or false"):
        load_connection_settings(env=isolated_env(tmp_path, TEMPORAL_TLS=value))


def test_disabling_host_verification_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConnectionConfigError, match="TEMPORAL_TLS_SERVER_NAME"):
        load_connection_settings(
            env=isolated_env(tmp_path, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION="true")
        )


def test_tls_needs_a_reason_to_be_on(tmp_path: Path) -> None:
    # The SDK reads this as a `tls` entry and would turn TLS on for it.
    settings = load_connection_settings(
        env=isolated_env(tmp_path, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION="false")
    )
    assert settings.tls is None
    empty_section = write_toml(tmp_path, "[profile.default.tls]\n")
    assert load_connection_settings(env={"TEMPORAL_CONFIG_FILE": str(empty_section)}).tls is None
    enabled = write_toml(tmp_path, "[profile.default.tls]\ndisabled = false\n")
    assert load_connection_settings(env={"TEMPORAL_CONFIG_FILE": str(enabled)}).tls is not None


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    # docker compose passes `${TEMPORAL_API_KEY:-}` as an empty string.
    settings = load_connection_settings(
        env=isolated_env(
            tmp_path,
            TEMPORAL_ADDRESS="",
            TEMPORAL_API_KEY="",
            TEMPORAL_TLS="",
            VMSNAP_CODEC_KEY="",
            VMSNAP_CODEC_KEY_FILE="",
        )
    )
    assert settings.address == "localhost:7233"
    assert (settings.api_key, settings.tls, settings.codec) == (None, None, None)


def test_grpc_metadata_from_environment(tmp_path: Path) -> None:
    settings = load_connection_settings(
        env=isolated_env(tmp_path, TEMPORAL_GRPC_META_X_TENANT="platform")
    )
    assert settings.grpc_meta == {"x-tenant": "platform"}


@pytest.mark.parametrize("address", ["localhost", "http://temporal:7233", "host:port", ""])
def test_bad_address_is_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(ConnectionConfigError, match="HOST:PORT"):
        load_connection_settings(env=isolated_env(tmp_path), address=address or " ")


# ---- temporal.toml profiles -----------------------------------------------------------

PROFILES = """
    [profile.default]
    address = "file-default:7233"
    namespace = "file-ns"

    [profile.prod]
    address = "temporal.prod.internal:7233"
    namespace = "vmsnap"
    [profile.prod.tls]
    server_name = "temporal.prod.internal"
    server_ca_cert_path = "{ca}"
    client_cert_path = "{cert}"
    client_key_path = "{key}"

    [profile.cloud]
    address = "vmsnap.a1b2c.tmprl.cloud:7233"
    namespace = "vmsnap.a1b2c"
    api_key = "from-file-key"

    [profile.inline]
    address = "inline:7233"
    [profile.inline.tls]
    server_ca_cert_data = "-----BEGIN CERTIFICATE-----\\ninline\\n-----END CERTIFICATE-----"
"""


@pytest.fixture
def profiles(tmp_path: Path, pem_files: dict[str, Path]) -> Path:
    return write_toml(
        tmp_path,
        PROFILES.format(
            ca=pem_files["ca.pem"], cert=pem_files["client.pem"], key=pem_files["client.key"]
        ),
    )


def test_default_profile_from_file(profiles: Path) -> None:
    settings = load_connection_settings(env={"TEMPORAL_CONFIG_FILE": str(profiles)})
    assert (settings.address, settings.namespace) == ("file-default:7233", "file-ns")
    assert settings.tls is None


def test_mtls_profile_from_file(profiles: Path, pem_files: dict[str, Path]) -> None:
    settings = load_connection_settings("prod", env={"TEMPORAL_CONFIG_FILE": str(profiles)})
    assert settings.address == "temporal.prod.internal:7233"
    assert settings.namespace == "vmsnap"
    assert settings.profile == "prod"
    assert settings.tls is not None and settings.tls.mutual
    assert settings.tls.server_name == "temporal.prod.internal"
    assert settings.tls.server_ca_cert is not None
    assert settings.tls.server_ca_cert.path == pem_files["ca.pem"]
    config = settings.tls.to_tls_config()
    assert config.client_private_key == pem_files["client.key"].read_bytes()


def test_api_key_profile_turns_tls_on(profiles: Path) -> None:
    settings = load_connection_settings(
        env={"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "cloud"}
    )
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "from-file-key"
    assert settings.tls is not None


def test_inline_certificate_data_in_profile(profiles: Path) -> None:
    settings = load_connection_settings("inline", env={"TEMPORAL_CONFIG_FILE": str(profiles)})
    assert settings.tls is not None and settings.tls.server_ca_cert is not None
    assert settings.tls.server_ca_cert.path is None
    assert settings.tls.to_tls_config().server_root_ca_cert == (
        b"-----BEGIN CERTIFICATE-----\ninline\n-----END CERTIFICATE-----"
    )


def test_precedence_arguments_over_environment_over_file_over_defaults(profiles: Path) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(profiles),
        "TEMPORAL_PROFILE": "cloud",
        "TEMPORAL_NAMESPACE": "env-ns",
    }
    from_env_and_file = load_connection_settings(env=env)
    # address from the file, namespace from the environment, API key from the file
    assert from_env_and_file.address == "vmsnap.a1b2c.tmprl.cloud:7233"
    assert from_env_and_file.namespace == "env-ns"

    explicit = load_connection_settings(
        env={**env, "TEMPORAL_API_KEY": "env-key"},
        address="override:7233",
        namespace="arg-ns",
    )
    assert (explicit.address, explicit.namespace) == ("override:7233", "arg-ns")
    assert explicit.api_key is not None and explicit.api_key.get_secret_value() == "env-key"

    key_by_argument = load_connection_settings(env=env, api_key="arg-key", tls=False)
    assert key_by_argument.api_key is not None
    assert key_by_argument.api_key.get_secret_value() == "arg-key"
    assert key_by_argument.tls is None


def test_profile_argument_beats_temporal_profile(profiles: Path) -> None:
    settings = load_connection_settings(
        "prod", env={"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "cloud"}
    )
    assert settings.address == "temporal.prod.internal:7233"


def test_config_file_argument(profiles: Path, tmp_path: Path) -> None:
    settings = load_connection_settings(env=isolated_env(tmp_path), config_file=profiles)
    assert settings.address == "file-default:7233"


def test_unknown_profile_is_an_error(profiles: Path) -> None:
    with pytest.raises(ConnectionConfigError, match="Profile 'staging' not found"):
        load_connection_settings("staging", env={"TEMPORAL_CONFIG_FILE": str(profiles)})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "no.toml"
    with pytest.raises(ConnectionConfigError, match=re.escape(f"{missing}") + " .*does not exist"):
        load_connection_settings(env={"TEMPORAL_CONFIG_FILE": str(missing)})


def test_malformed_config_file_is_an_error(tmp_path: Path) -> None:
    bad = write_toml(tmp_path, "[profile.default\naddress = ")
    with pytest.raises(ConnectionConfigError, match="Temporal client configuration"):
        load_connection_settings(env={"TEMPORAL_CONFIG_FILE": str(bad)})


def test_missing_certificate_named_in_profile(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path,
        """
        [profile.default.tls]
        client_cert_path = "/nonexistent/client.pem"
        client_key_path = "/nonexistent/client.key"
        """,
    )
    with pytest.raises(
        ConnectionConfigError, match=re.escape("/nonexistent/client.pem does not exist")
    ):
        load_connection_settings(env={"TEMPORAL_CONFIG_FILE": str(config)})


# ---- payload codec --------------------------------------------------------------------


def test_codec_key_wraps_the_pydantic_converter(tmp_path: Path) -> None:
    settings = load_connection_settings(env=isolated_env(tmp_path, VMSNAP_CODEC_KEY=KEY))
    converter = settings.data_converter()
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert KEY not in settings.describe() and KEY not in repr(settings)


def test_bad_codec_key_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConnectionConfigError, match=r"VMSNAP_CODEC_KEY: .*32"):
        load_connection_settings(
            env=isolated_env(tmp_path, VMSNAP_CODEC_KEY=base64.b64encode(b"short").decode())
        )


def test_missing_codec_key_file_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConnectionConfigError, match="cannot read codec key file"):
        load_connection_settings(
            env=isolated_env(tmp_path, VMSNAP_CODEC_KEY_FILE=str(tmp_path / "none.key"))
        )


# ---- connecting -----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_one_clear_line() -> None:
    address = f"127.0.0.1:{closed_port()}"
    with pytest.raises(TemporalUnreachable) as caught:
        await connect(ConnectionSettings(address=address), timeout=5)
    message = str(caught.value)
    assert message.startswith(f"Temporal unreachable at {address}: connection refused")
    assert "\n" not in message


async def test_connect_with_default_settings_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", isolated_env(tmp_path)["TEMPORAL_CONFIG_FILE"])
    for name in [n for n in os.environ if n.startswith(("TEMPORAL_TLS", "TEMPORAL_API"))]:
        monkeypatch.delenv(name)
    with pytest.raises(TemporalUnreachable, match=f"at {address}:"):
        await connect(timeout=5)


def test_connection_command_shows_settings_and_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    for name in [n for n in os.environ if n.startswith(("TEMPORAL_", "VMSNAP_CODEC"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", isolated_env(tmp_path)["TEMPORAL_CONFIG_FILE"])
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("TEMPORAL_API_KEY", "do-not-print-me")
    monkeypatch.setenv("TEMPORAL_TLS", "false")
    assert connection_main([]) == 0
    shown = capsys.readouterr().out
    assert (
        shown.strip() == f"{address}, namespace default, plaintext, API key, payload encryption off"
    )
    assert connection_main(["--check"]) == 2
    assert capsys.readouterr().err.startswith(f"error: Temporal unreachable at {address}: ")
    monkeypatch.setenv("TEMPORAL_TLS", "nope")
    assert connection_main([]) == 2
    assert "TEMPORAL_TLS='nope': use true or false" in capsys.readouterr().err
