"""The entry point of the adapter: build a `Cluster` from a kubeconfig or in-cluster config.

`Cluster` gathers the typed operations (VMs, VolumeSnapshots, PVCs) on one
shared `ApiClient`; activity threads may share one instance. It knows nothing
of Temporal: activities translate its errors (cluster.errors) into retries.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.util.retry import Retry

from cluster.apis import (
    CONNECTION_POOL_SIZE,
    VOLUME_GROUP_SNAPSHOT_CLASSES,
    VOLUME_SNAPSHOT_CLASSES,
    core_path,
    custom_path,
)
from cluster.errors import ConfigurationError, NotFound
from cluster.group_snapshots import GroupSnapshotOperations
from cluster.informer import CollectionCaches, WatchedCollection
from cluster.pvcs import PvcOperations
from cluster.rate_limit import ThrottledApiClient, rate_limiter_from_environment
from cluster.snapshots import SnapshotOperations
from cluster.vm_revisions import VmRevisionOperations
from cluster.vms import VmOperations
from rules.models import VolumeSelection
from rules.volumes import (
    BACKEND_STORAGE_LABEL,
    claim_name,
    needs_backend_storage,
    newest_backend_claim,
    select_volumes,
)

DEFAULT_KUBECONFIG = "~/.kube/config"


def _connection_retries() -> Retry:
    """Retry only failures to connect (the request never left), and nothing else.

    urllib3's default also re-sends idempotent requests after read timeouts,
    which would multiply a caller's timeout by four; the callers (Temporal
    activities) retry with their own policy instead.
    """
    return Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0,
                 backoff_factor=0.1, raise_on_status=False)


CREDENTIAL_CHECK_SECONDS = 1.0
STORAGE_CLASSES = "storageclasses"


def _at_most_every(
    seconds: float, hook: Callable[[client.Configuration], None]
) -> Callable[[client.Configuration], None]:
    """`hook`, run at most once every `seconds` (later calls in between do nothing).

    The kubeconfig and in-cluster loaders install a hook that the client runs before every
    request: it checks the token's expiry (refreshing 5 minutes early) and then writes the
    whole configuration back, host included, whose setter reads the environment's proxy
    settings: a third of a request's client CPU, for credentials that change at most
    every few minutes.
    """
    last = -math.inf
    inner = hook

    def throttled(configuration: client.Configuration) -> None:
        nonlocal last, inner
        now = time.monotonic()
        if now - last >= seconds:
            last = now
            inner(configuration)
            # The loaders' hook installs itself again each time it runs: keep ours first.
            installed = configuration.refresh_api_key_hook
            if installed is not throttled and installed is not None:
                inner = installed
                configuration.refresh_api_key_hook = throttled

    return throttled


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient from, in order: `kubeconfig`, $KUBECONFIG, ~/.kube/config, in-cluster.

    An explicit path that does not exist is an error (no silent fallback);
    $KUBECONFIG may list several files separated by ':' as kubectl allows. Requests are
    rate-limited by $VMSNAP_KUBE_QPS / $VMSNAP_KUBE_BURST when set (`cluster.rate_limit`).
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
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        configuration.refresh_api_key_hook = _at_most_every(CREDENTIAL_CHECK_SECONDS, hook)
    configuration.retries = _connection_retries()
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize or 0, CONNECTION_POOL_SIZE)
    return ThrottledApiClient(configuration, rate_limiter_from_environment(os.environ))


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


class Cluster(VmOperations, SnapshotOperations, GroupSnapshotOperations, PvcOperations,
              VmRevisionOperations):
    """Typed Kubernetes operations for vmsnap on one ApiClient.

    Objects are plain dicts as the server sent them; states that cross into
    workflows are the pydantic models of `rules.models`. Every error is a
    `cluster.errors.ClusterError`.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
        cache_reads: bool = False,
    ) -> None:
        """`cache_reads`: keep watch-fed copies of what every snapshot reads (the PVCs of
        each namespace it meets, StorageClasses, VolumeSnapshotClasses): a long-lived
        worker then asks nothing about them per snapshot (see `cluster.informer`)."""
        super().__init__(
            api_client,
            request_timeout_seconds=request_timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
        )
        self._pvc_caches = CollectionCaches(self._watch_pvcs_of) if cache_reads else None
        self._class_caches = CollectionCaches(self._watch_classes) if cache_reads else None

    def _watch_pvcs_of(self, namespace: str) -> WatchedCollection:
        return self._watched(self.list_call(core_path("persistentvolumeclaims", namespace)),
                             f"PersistentVolumeClaims in {namespace}")

    def _watch_classes(self, plural: str) -> WatchedCollection:
        if plural == STORAGE_CLASSES:
            return self._watched(self.list_call("/apis/storage.k8s.io/v1/storageclasses"),
                                 "StorageClasses")
        if plural == VOLUME_GROUP_SNAPSHOT_CLASSES.plural:
            return self._watched(self.list_call(custom_path(VOLUME_GROUP_SNAPSHOT_CLASSES, None)),
                                 "VolumeGroupSnapshotClasses")
        return self._watched(self.list_call(custom_path(VOLUME_SNAPSHOT_CLASSES, None)),
                             "VolumeSnapshotClasses")

    def _watched(self, list_call: Callable[..., Any], what: str) -> WatchedCollection:
        return WatchedCollection(
            list_call, what=what, connect_timeout_seconds=self.connect_timeout_seconds,
            request_timeout_seconds=self.request_timeout_seconds)

    def pvc_cache(self, namespace: str) -> WatchedCollection | None:
        return None if self._pvc_caches is None else self._pvc_caches.get(namespace)

    def class_cache(self, plural: str) -> WatchedCollection | None:
        """The cache of `storageclasses` or `volumesnapshotclasses` when kept and following
        the server; None: read from the server."""
        return None if self._class_caches is None else self._class_caches.get(plural)

    def group_snapshot_classes(self) -> list[dict[str, Any]]:
        """Every VolumeGroupSnapshotClass, from the watch-fed copy when one is kept."""
        cache = self.class_cache(VOLUME_GROUP_SNAPSHOT_CLASSES.plural)
        if cache is not None:
            return cache.values()
        return self.list_group_snapshot_classes()

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, context: str | None = None, **options: Any
    ) -> Cluster:
        """`load_api_client(kubeconfig, context)` wrapped in a Cluster."""
        return cls(load_api_client(kubeconfig, context), **options)

    def close(self) -> None:
        """Stop the caches' watches and release the connection pool."""
        for caches in (self._pvc_caches, self._class_caches):
            if caches is not None:
                caches.close()
        self.close_transport()
        self.api_client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def select_volumes(self, namespace: str, vm_name: str) -> VolumeSelection:
        """Apply the eligibility rules to the VM as stored now (see `rules.volumes`).

        Reads the VM, each PVC its spec names, their StorageClasses and every
        VolumeSnapshotClass; NotFound when the VM itself does not exist.
        """
        return self.select_volumes_of(namespace, self.get_vm(namespace, vm_name))

    def select_volumes_of(self, namespace: str, vm: dict[str, Any]) -> VolumeSelection:
        """`select_volumes` for a VM already read (one GET fewer for a caller that has it)."""
        return self.select_volumes_and_pvcs(namespace, vm)[0]

    def select_volumes_and_pvcs(
        self, namespace: str, vm: dict[str, Any]
    ) -> tuple[VolumeSelection, dict[str, dict[str, Any]]]:
        """`select_volumes_of`, and the PVCs it read (by name): a caller that records them
        (the snapshot's content) needs no second read."""
        volumes = ((vm.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes")
        claims = dict.fromkeys(c for v in volumes or [] if (c := claim_name(v)))
        backend = (self.backend_claim(namespace, str((vm.get("metadata") or {}).get("name")))
                   if needs_backend_storage(vm) else None)
        pvcs = self.get_pvcs(namespace, [*claims, *([backend] if backend else [])])
        selection = self._select_with_classes(vm, pvcs, backend, cached=True)
        if selection.partial and self._class_caches is not None:
            # A disk left out on cached classes: the caches may lag a class just made.
            selection = self._select_with_classes(vm, pvcs, backend, cached=False)
        return selection, pvcs

    def backend_claim(self, namespace: str, vm_name: str) -> str | None:
        """The VM's persistent TPM/EFI state claim (KubeVirt's backend storage), found by
        its label, from the namespace's watch-fed copy when there is one."""
        cache = self.pvc_cache(namespace)
        if cache is not None:
            found = newest_backend_claim(vm_name, cache.values())
            if found is not None:
                return found
        listed = self.request_json("GET", core_path("persistentvolumeclaims", namespace),
                                   query={"labelSelector": f"{BACKEND_STORAGE_LABEL}={vm_name}"})
        return newest_backend_claim(vm_name, (listed or {}).get("items") or [])

    def _select_with_classes(
        self, vm: dict[str, Any], pvcs: dict[str, dict[str, Any]], backend: str | None, *,
        cached: bool
    ) -> VolumeSelection:
        class_names = dict.fromkeys(
            c for pvc in pvcs.values() if (c := (pvc.get("spec") or {}).get("storageClassName"))
        )
        storage_cache = self.class_cache(STORAGE_CLASSES) if cached and class_names else None
        storage_classes = {
            name: sc for name in class_names
            if (sc := (storage_cache.get(name) if storage_cache is not None else None)
                or self.get_storage_class(name)) is not None
        }
        snapshot_classes: list[dict[str, Any]] = []
        if pvcs:
            snapshot_cache = self.class_cache(VOLUME_SNAPSHOT_CLASSES.plural) if cached else None
            if snapshot_cache is not None:
                snapshot_classes = snapshot_cache.values()
            else:
                # NotFound: the snapshot API is not installed, so no PVC has a class.
                with contextlib.suppress(NotFound):
                    snapshot_classes = self.list_volume_snapshot_classes()
        return select_volumes(vm, pvcs, storage_classes, snapshot_classes, backend)
