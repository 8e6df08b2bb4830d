"""A throw-away TLS identity for the simulator's HTTPS endpoint.

kubectl (client-go's clientcmd) only sends a kubeconfig's bearer token over
TLS, like any real cluster's clients; over plain HTTP it sends nothing and
every request would be 401. So the simulator serves HTTPS with a
self-signed certificate made at start for 127.0.0.1/localhost, and puts it
in the kubeconfig as `certificate-authority-data`: clients verify the
server as they would verify a real API server.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class TlsIdentity:
    certificate_pem: bytes  # also the CA clients trust: the certificate is self-signed
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory(prefix="vmsnap-sim-tls-") as folder:
            cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            cert.write_bytes(self.certificate_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.certificate_pem.decode())


def _subject_names(host: str) -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    else:
        if not address.is_unspecified and x509.IPAddress(address) not in names:
            names.append(x509.IPAddress(address))
    return names


def make_identity(host: str = "127.0.0.1", days: int = 365) -> TlsIdentity:
    """A fresh P-256 key and a self-signed serving certificate for `host` and loopback.

    Made with `cryptography` when it is installed, else with the `openssl` command.
    """
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return make_identity_with_openssl(host, days)
    return _make_identity_with_cryptography(host, days)


def _make_identity_with_cryptography(host: str, days: int) -> TlsIdentity:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmsnap-simulator")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_subject_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TlsIdentity(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def make_identity_with_openssl(host: str = "127.0.0.1", days: int = 365) -> TlsIdentity:
    """The same identity made by the `openssl` command (no Python crypto library needed)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "cannot make the simulator's TLS certificate: install the `cryptography` package "
            "or the `openssl` command"
        )
    names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    try:
        ipaddress.ip_address(host)
        if host not in ("127.0.0.1", "::1", "0.0.0.0", "::"):
            names.append(f"IP:{host}")
    except ValueError:
        if host and host != "localhost":
            names.append(f"DNS:{host}")
    with tempfile.TemporaryDirectory(prefix="vmsnap-sim-tls-") as folder:
        cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                str(days),
                "-subj",
                "/CN=vmsnap-simulator",
                "-addext",
                "subjectAltName=" + ",".join(names),
                "-addext",
                "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext",
                "keyUsage=critical,digitalSignature,keyCertSign",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return TlsIdentity(cert.read_bytes(), key.read_bytes())
