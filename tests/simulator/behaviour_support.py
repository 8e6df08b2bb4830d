"""Helpers for the behaviour tests: the official client on a running simulator, objects, waits.

Each test works in its own namespace (`Cluster.namespace()`), so tests sharing a
simulator process do not see each other's objects. The cluster-scoped classes
come from `simulator/seeds/storage-faults.yaml` and are only read.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from starter.local_stack import REPO_ROOT
from tests.conftest import StartSim
from tests.support.sim import Sim

SEEDS = REPO_ROOT / "simulator" / "seeds"
BEHAVIOUR_SEEDS: tuple[Path, ...] = (SEEDS / "demo.yaml", SEEDS / "storage-faults.yaml")

SNAPSHOT = ("snapshot.storage.k8s.io", "v1")
KUBEVIRT = ("kubevirt.io", "v1")


def wait_for(
    probe: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> Any:
    """The first truthy value of `probe()`; fails with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or probe}: {last!r}"
            )
        time.sleep(interval)


def parse_time(value: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp (with or without fractional seconds)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Cluster:
    """The official client on a simulator, with the calls these tests need."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.api = config.new_client_from_config(config_file=str(sim.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.last_headers: dict[str, str] = {}  # of the last `call`

    def close(self) -> None:
        self.api.close()

    # ---- namespaces ------------------------------------------------------------------

    def namespace(self) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    # ---- custom objects --------------------------------------------------------------

    def create(
        self, gv: tuple[str, str], plural: str, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        group, version = gv
        if namespace is None:
            return _obj(self.custom.create_cluster_custom_object(group, version, plural, body))
        return _obj(
            self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)
        )

    def get(
        self, gv: tuple[str, str], plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        group, version = gv
        try:
            if namespace is None:
                return _obj(self.custom.get_cluster_custom_object(group, version, plural, name))
            return _obj(
                self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, gv: tuple[str, str], plural: str, namespace: str | None, name: str) -> None:
        group, version = gv
        if namespace is None:
            self.custom.delete_cluster_custom_object(group, version, plural, name)
        else:
            self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)

    def patch(
        self, gv: tuple[str, str], plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        group, version = gv
        return _obj(
            self.custom.patch_namespaced_custom_object(
                group, version, namespace, plural, name, patch
            )
        )

    def snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(SNAPSHOT, "volumesnapshots", namespace, name)

    def content(self, name: str) -> dict[str, Any] | None:
        return self.get(SNAPSHOT, "volumesnapshotcontents", None, name)

    def vm(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(KUBEVIRT, "virtualmachines", namespace, name)

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(KUBEVIRT, "virtualmachineinstances", namespace, name)

    # ---- PVCs and Events -------------------------------------------------------------

    def create_pvc(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created = self.core.create_namespaced_persistent_volume_claim(namespace, cast(Any, body))
        return _obj(self.api.sanitize_for_serialization(created))

    def pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = self.core.read_namespaced_persistent_volume_claim(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _obj(self.api.sanitize_for_serialization(found))

    def delete_pvc(self, namespace: str, name: str) -> None:
        # Read raw: the answer's shape (object or Status) is not what this helper checks.
        answer: Any = self.core.delete_namespaced_persistent_volume_claim(
            name, namespace, _preload_content=False
        )
        answer.read()

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        found = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return [_obj(self.api.sanitize_for_serialization(e)) for e in found.items]

    # ---- subresources ----------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """Any request; (status, decoded body or None) without raising on HTTP errors."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(
            self.sim.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.sim.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload = response.status, response.read()
                self.last_headers = dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
            self.last_headers = dict(exc.headers)
        return status, (json.loads(payload) if payload else None)

    def put(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        return self.call("PUT", path, body, raw)

    def vmi_action(
        self, namespace: str, name: str, action: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        return self.put(
            f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/{action}",
            body,
            raw,
        )

    def vm_action(
        self, namespace: str, name: str, action: str, body: Any = None
    ) -> tuple[int, Any]:
        return self.put(
            f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/{action}",
            body,
        )


def _obj(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AssertionError(f"expected an object, got {value!r}")
    return value


# ---- objects -----------------------------------------------------------------------


def pvc_body(
    name: str,
    storage_class: str | None = "fast-csi",
    size: str = "1Gi",
    annotations: dict[str, str] | None = None,
    source_snapshot: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if source_snapshot is not None:
        spec["dataSource"] = {
            "apiGroup": "snapshot.storage.k8s.io",
            "kind": "VolumeSnapshot",
            "name": source_snapshot,
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


def snapshot_body(name: str, pvc: str, snapshot_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": pvc}}
    if snapshot_class is not None:
        spec["volumeSnapshotClassName"] = snapshot_class
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": spec,
    }


def vm_body(
    name: str,
    claims: list[str] | tuple[str, ...] = (),
    run_strategy: str | None = "Always",
    annotations: dict[str, str] | None = None,
    running: bool | None = None,
    data_volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    disks = [{"name": f"disk{i}", "disk": {"bus": "virtio"}} for i, _ in enumerate(claims)]
    volumes = [
        {"name": f"disk{i}", "persistentVolumeClaim": {"claimName": claim}}
        for i, claim in enumerate(claims)
    ]
    for template in data_volumes or []:
        index = len(disks)
        disks.append({"name": f"disk{index}", "disk": {"bus": "virtio"}})
        volumes.append(
            {"name": f"disk{index}", "dataVolume": {"name": template["metadata"]["name"]}}
        )
    disks.append({"name": "cloudinit", "disk": {"bus": "virtio"}})
    volumes.append({"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config\n"}})
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {"kubevirt.io/vm": name, "test": "behaviour"}},
            "spec": {
                "domain": {
                    "memory": {"guest": "256Mi"},
                    "devices": {"disks": disks},
                    "resources": {},
                },
                "terminationGracePeriodSeconds": 0,
                "volumes": volumes,
            },
        }
    }
    if run_strategy is not None:
        spec["runStrategy"] = run_strategy
    if running is not None:
        spec["running"] = running
    if data_volumes:
        spec["dataVolumeTemplates"] = data_volumes
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def behaviour_cluster(start_sim: StartSim, name: str) -> Iterator[Cluster]:
    """A module's simulator on the behaviour seeds with the client on it; both stopped when
    the module is done (the body of each module's `cluster` fixture)."""
    sim = start_sim(*BEHAVIOUR_SEEDS, name=name)
    connected = Cluster(sim)
    yield connected
    connected.close()
    sim.process.stop()
