"""The default `-n`: the kubeconfig context's namespace, read as kubectl reads it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from starter.cli_common import kubeconfig_namespace


def kubeconfig(path: Path, current: str | None, contexts: dict[str, str | None]) -> Path:
    document: dict[str, object] = {
        "apiVersion": "v1", "kind": "Config",
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u",
                                                 **({"namespace": ns} if ns else {})}}
                     for name, ns in contexts.items()]}
    if current:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(autouse=True)
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)


def test_current_context_namespace(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "prod", {"prod": "vms", "dev": "sandbox"})
    assert kubeconfig_namespace(str(path)) == "vms"
    assert kubeconfig_namespace(str(path), context="dev") == "sandbox"


def test_a_context_without_namespace_or_no_file_means_none(tmp_path: Path) -> None:
    assert kubeconfig_namespace(str(kubeconfig(tmp_path / "kc", "a", {"a": None}))) is None
    assert kubeconfig_namespace(str(tmp_path / "missing")) is None
    assert kubeconfig_namespace() is None  # no $KUBECONFIG, no ~/.kube/config


def test_kubeconfig_list_and_home_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "one", None, {"a": "alpha"})
    second = kubeconfig(tmp_path / "two", "a", {"b": "beta"})
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(first), str(second)]))
    assert kubeconfig_namespace() == "alpha"  # current-context from the second file
    monkeypatch.delenv("KUBECONFIG")
    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path / ".kube" / "config", "b", {"b": "from-home"})
    assert kubeconfig_namespace() == "from-home"
