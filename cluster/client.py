"""The entry point of the adapter: build a `Cluster` from a kubeconfig or in-cluster config.

`Cluster` gathers the typed operations (VMs, VolumeSnapshots, PVCs) on one
shared `ApiClient`; activity threads may share one instance. It knows nothing
of Temporal: activities translate its errors (cluster.errors) into retries.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.util.retry import Retry

from cluster.errors import ConfigurationError, NotFound
from cluster.models import VolumeSelection
from cluster.pvcs import PvcOperations
from cluster.snapshots import SnapshotOperations
from cluster.vms import VmOperations
from cluster.volumes import claim_name, select_volumes

DEFAULT_KUBECONFIG = "~/.kube/config"


def _connection_retries() -> Retry:
    """Retry only failures to connect (the request never left), and nothing else.

    urllib3's default also re-sends idempotent requests after read timeouts,
    which would multiply a caller's timeout by four; the callers (Temporal
    activities) retry with their own policy instead.
    """
    return Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0,
                 backoff_factor=0.1, raise_on_status=False)


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient from, in order: `kubeconfig`, $KUBECONFIG, ~/.kube/config, in-cluster.

    An explicit path that does not exist is an error (no silent fallback);
    $KUBECONFIG may list several files separated by ':' as kubectl allows.
    """
    configuration = type.__call__(client.Configuration)
    source = _kubeconfig_source(kubeconfig)
    try:
        if source is not None:
            config.load_kube_config(
                config_file=source, context=context,
                client_configuration=configuration, persist_config=False,
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            if context:
                raise ConfigurationError(
                    f"context {context!r} given, but there is no kubeconfig "
                    "(running with in-cluster configuration)", reason="Configuration")
            config.load_incluster_config(client_configuration=configuration)
        else:
            raise ConfigurationError(
                "no Kubernetes configuration: pass a kubeconfig, set KUBECONFIG, create "
                f"{DEFAULT_KUBECONFIG}, or run inside a cluster", reason="Configuration")
    except ConfigException as exc:
        where = source or "in-cluster configuration"
        raise ConfigurationError(f"cannot load {where}: {exc}", reason="Configuration") from exc
    configuration.retries = _connection_retries()
    return client.ApiClient(configuration)


def _kubeconfig_source(explicit: str | None) -> str | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"kubeconfig {explicit} not found", reason="Configuration")
        return str(path)
    from_env = os.environ.get("KUBECONFIG", "")
    if from_env:
        existing = [p for p in from_env.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        if not existing:
            raise ConfigurationError(
                f"KUBECONFIG={from_env} names no existing file", reason="Configuration")
        return os.pathsep.join(existing)
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    return str(default) if default.is_file() else None


class Cluster(VmOperations, SnapshotOperations, PvcOperations):
    """Typed Kubernetes operations for vmsnap on one ApiClient.

    Objects are plain dicts as the server sent them; states that cross into
    workflows are the pydantic models of `cluster.models`. Every error is a
    `cluster.errors.ClusterError`.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        super().__init__(
            api_client,
            request_timeout_seconds=request_timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
        )

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, context: str | None = None, **options: Any
    ) -> Cluster:
        """`load_api_client(kubeconfig, context)` wrapped in a Cluster."""
        return cls(load_api_client(kubeconfig, context), **options)

    def close(self) -> None:
        """Release the connection pool."""
        self.api_client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def select_volumes(self, namespace: str, vm_name: str) -> VolumeSelection:
        """Apply the eligibility rules to the VM as stored now (see `cluster.volumes`).

        Reads the VM, each PVC its spec names, their StorageClasses and every
        VolumeSnapshotClass; NotFound when the VM itself does not exist.
        """
        vm = self.get_vm(namespace, vm_name)
        volumes = ((vm.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes")
        claims = dict.fromkeys(c for v in volumes or [] if (c := claim_name(v)))
        pvcs = {
            name: pvc for name in claims if (pvc := self.get_pvc(namespace, name)) is not None
        }
        class_names = dict.fromkeys(
            c for pvc in pvcs.values() if (c := (pvc.get("spec") or {}).get("storageClassName"))
        )
        storage_classes = {
            name: sc for name in class_names if (sc := self.get_storage_class(name)) is not None
        }
        snapshot_classes: list[dict[str, Any]] = []
        if pvcs:
            # NotFound: the snapshot API is not installed, so no PVC has a class.
            with contextlib.suppress(NotFound):
                snapshot_classes = self.list_volume_snapshot_classes()
        return select_volumes(vm, pvcs, storage_classes, snapshot_classes)
