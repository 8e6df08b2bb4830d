"""The kubeconfig the simulator writes for its clients (kubectl, the official client, vmsnap)."""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import yaml

NAME = "vmsnap-sim"


def kubeconfig_document(
    server_url: str, token: str, ca_pem: bytes | None = None, namespace: str = "default"
) -> dict[str, object]:
    cluster: dict[str, str] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": NAME, "cluster": cluster}],
        "users": [{"name": NAME, "user": {"token": token}}],
        "contexts": [
            {"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": namespace}}
        ],
        "current-context": NAME,
    }


def write_kubeconfig(path: Path, server_url: str, token: str, ca_pem: bytes | None = None) -> None:
    """Write atomically (readers never see half a file), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_document(server_url, token, ca_pem), sort_keys=False)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
