"""`KubeApis.list_call`, the list and watch the adapter sends without the generated typed
APIs, against a running simulator; and that the worker never imports those APIs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from cluster.apis import core_path
from cluster.client import Cluster
from starter.local_stack import REPO_ROOT
from tests.cluster.conftest import NS


def test_a_list_sends_the_query_the_generated_methods_would(cluster: Cluster) -> None:
    pvcs = cluster.list_call(core_path("persistentvolumeclaims", NS))
    response = pvcs(label_selector="nothing-has=this", _preload_content=False,
                    _request_timeout=(5, 5))
    try:
        answer = json.loads(response.data)
    finally:
        response.release_conn()
    assert answer["kind"] == "PersistentVolumeClaimList" and answer["items"] == []
    assert answer["metadata"]["resourceVersion"]


def test_a_watch_streams_events_through_kubernetes_watch(cluster: Cluster) -> None:
    pvcs = cluster.list_call(core_path("persistentvolumeclaims", NS))
    events = list(watch.Watch().stream(pvcs, resource_version="0", timeout_seconds=1,
                                       _request_timeout=(5, 5)))
    names = {e["raw_object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"}
    assert "root-disk" in names


def test_errors_and_wrong_calls_are_refused(cluster: Cluster) -> None:
    missing = cluster.list_call("/apis/nothing.example/v1/namespaces/x/things")
    with pytest.raises(ApiException) as refused:
        missing(_preload_content=False, _request_timeout=(5, 5))
    assert refused.value.status == 404
    pvcs = cluster.list_call(core_path("persistentvolumeclaims", NS))
    with pytest.raises(TypeError, match="_preload_content=False"):
        pvcs()
    with pytest.raises(TypeError, match="limit"):
        pvcs(limit=5, _preload_content=False)


def test_the_worker_and_its_cluster_adapter_never_import_the_typed_apis() -> None:
    """They cost half a second of CPU at every start of a worker, its freeze process and
    the CLI: the adapter lists and watches through `list_call`."""
    script = ("import sys, worker\n"
              "from cluster.client import Cluster\n"
              "from kubernetes import client\n"
              "Cluster(client.ApiClient(), cache_reads=True)\n"
              "print(sorted(m for m in sys.modules if m.startswith('kubernetes.client.api.')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout
