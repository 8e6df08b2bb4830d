"""The API handles and raw-call helpers that every group of cluster operations shares.

Objects travel as plain dicts exactly as the server sent them (the calls use
`_preload_content=False` and parse the JSON), so what the adapter reads is
what `kubectl get -o json` shows, and pure functions can be tested on YAML.
Every call carries a `_request_timeout`, and every error leaves as a
`cluster.errors.ClusterError`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cluster.creation_marks import marked
from cluster.errors import Conflict, NotFound, Replaced, translated_errors
from cluster.identity import resolve_cluster_id
from cluster.transport import CurlTransport
from cluster.waiting import ListWatch, Objects

PatchType = Literal["merge", "json"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


@dataclass(frozen=True)
class CustomResource:
    """Where a custom (or aggregated) kind lives in the API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


VIRTUAL_MACHINES = CustomResource("kubevirt.io", "v1", "virtualmachines", "VirtualMachine")
VIRTUAL_MACHINE_INSTANCES = CustomResource(
    "kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance"
)
VOLUME_SNAPSHOTS = CustomResource(
    "snapshot.storage.k8s.io", "v1", "volumesnapshots", "VolumeSnapshot"
)
VOLUME_SNAPSHOT_CLASSES = CustomResource(
    "snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass",
    namespaced=False,
)
VOLUME_GROUP_SNAPSHOTS = CustomResource(
    "groupsnapshot.storage.k8s.io", "v1", "volumegroupsnapshots", "VolumeGroupSnapshot"
)
VOLUME_GROUP_SNAPSHOT_CLASSES = CustomResource(
    "groupsnapshot.storage.k8s.io", "v1", "volumegroupsnapshotclasses",
    "VolumeGroupSnapshotClass", namespaced=False,
)
VOLUME_GROUP_SNAPSHOT_CONTENTS = CustomResource(
    "groupsnapshot.storage.k8s.io", "v1", "volumegroupsnapshotcontents",
    "VolumeGroupSnapshotContent", namespaced=False,
)
KUBEVIRT_SUBRESOURCES = "/apis/subresources.kubevirt.io/v1"
# Enough connections for every VolumeSnapshot of a 32-disk cut at once, plus the watch and
# the other activities' requests: a request that finds the pool empty opens and drops a
# connection of its own, which costs a TCP (and TLS) handshake inside the freeze window.
CONNECTION_POOL_SIZE = 64


def custom_path(
    resource: CustomResource, namespace: str | None, name: str = "", subresource: str = ""
) -> str:
    """The API path of a custom resource's collection, one object, or its subresource."""
    path = f"/apis/{resource.group}/{resource.version}"
    if resource.namespaced and namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{resource.plural}"
    if name:
        path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
    return path


# The generated list methods' keyword arguments, by the query parameter each one is.
LIST_QUERY = {
    "watch": "watch", "label_selector": "labelSelector", "field_selector": "fieldSelector",
    "resource_version": "resourceVersion", "timeout_seconds": "timeoutSeconds",
    "allow_watch_bookmarks": "allowWatchBookmarks",
}


def core_path(plural: str, namespace: str | None, name: str = "") -> str:
    """The path of a namespaced core (v1) collection or object; namespace None: the
    collection across all namespaces."""
    if namespace is None:
        return f"/api/v1/{plural}"
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/{plural}"
    return f"{path}/{quote(name, safe='')}" if name else path


def place_in_namespace(metadata: dict[str, Any], namespace: str, what: str) -> None:
    """Set metadata.namespace; a body written for another namespace is refused."""
    if metadata.setdefault("namespace", namespace) != namespace:
        raise ValueError(
            f"{what} body is for namespace {metadata['namespace']!r}, not {namespace!r}"
        )


def delete_options(uid: str | None) -> dict[str, Any] | None:
    """DeleteOptions with a uid precondition (the API server then deletes only the object
    of that uid, else answers 409 Conflict), or None for a plain delete."""
    if not uid:
        return None
    return {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}


def replaced(err: Conflict, uid: str | None) -> Conflict:
    """A delete's Conflict as `Replaced` when it came with a uid precondition."""
    if uid is None:
        return err
    return Replaced(err.message, status=err.status, reason=err.reason)


class KubeApis:
    """One shared `ApiClient` (thread-safe: urllib3 pools) and the typed APIs on it."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        if request_timeout_seconds <= 0 or connect_timeout_seconds <= 0:
            raise ValueError("request and connect timeouts must be positive")
        self.api_client = api_client
        # Read once: the generated `configuration.host` property looks through the whole
        # environment for proxy settings on every read (a third of a GET's client CPU).
        self.host = api_client.configuration.host
        self.request_timeout_seconds = request_timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        configuration = api_client.configuration
        # None: a configuration libcurl would not reproduce (a proxy, a TLS server name):
        # requests then go through the client's own urllib3 pool.
        self.transport: CurlTransport | None = (
            CurlTransport.from_configuration(configuration, CONNECTION_POOL_SIZE)
            if CurlTransport.supports(configuration) else None)

    # The generated, typed APIs: made on first use. Importing them costs half a second of
    # CPU (a pydantic model per Kubernetes kind), paid by every start of a worker, its
    # freeze process and the CLI; vmsnap itself lists and watches through `list_call`.
    @functools.cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @functools.cached_property
    def storage(self) -> client.StorageV1Api:
        return client.StorageV1Api(self.api_client)

    @functools.cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def list_call(self, path: str) -> Callable[..., Any]:
        """A LIST of the collection at `path`, called as the generated list methods are
        (what `kubernetes.watch.Watch` and `cluster.waiting.ListWatch` call): keyword
        arguments `watch`, `label_selector`, `field_selector`, `resource_version`,
        `timeout_seconds`, `allow_watch_bookmarks`, `_request_timeout`, and
        `_preload_content=False`; it answers the unread HTTP response, or raises
        ApiException for a status outside 2xx, as they do. Without their typed API
        classes: no import of them, no validation of the arguments on every call."""
        api_client = self.api_client

        def call(*, _preload_content: bool = True, _request_timeout: Any = None,
                 **params: Any) -> Any:
            if _preload_content:
                raise TypeError("list_call answers the unread response: pass "
                                "_preload_content=False")
            unknown = sorted(set(params) - set(LIST_QUERY))
            if unknown:
                raise TypeError(f"list_call takes no {', '.join(unknown)}")
            query = [(LIST_QUERY[k], v) for k, v in params.items() if v is not None]
            method, url, headers, body, post = api_client.param_serialize(
                method="GET", resource_path=path, query_params=query,
                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
            response = api_client.call_api(method, url, headers, body, post,
                                           _request_timeout=_request_timeout)
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response

        call.__name__ = call.__qualname__ = f"list {path}"
        return call

    def close_transport(self) -> None:
        """Drop the transport's pooled connections (the client's pool closes by itself)."""
        if self.transport is not None:
            self.transport.close()

    def use_client_transport(self) -> None:
        """Send through the client's urllib3 pool from now on (benchmarks and tests compare
        the two transports on one configuration)."""
        self.close_transport()
        self.transport = None

    @functools.cached_property
    def cluster_id(self) -> str:
        """The id of the cluster this adapter speaks to (`cluster.identity`): read once. It
        names the cluster in the creation mark of everything created for a workflow run."""
        return resolve_cluster_id(self)

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for one ordinary request."""
        return (self.connect_timeout_seconds, self.request_timeout_seconds)

    def call_json(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a generated client method and return the server's JSON as dicts/lists."""
        kwargs.setdefault("_request_timeout", self.timeout)
        response = method(*args, _preload_content=False, **kwargs)
        try:
            raw = response.data
        finally:
            response.release_conn()
        return json.loads(raw) if raw else None

    # ---- requests straight to the REST client ----------------------------------------

    def request_json(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request to an API path, and its JSON answer (None when it has no body).

        Why not the generated methods: each of those validates its arguments with pydantic
        and walks the body to sanitize it before sending, which was half of the client's
        CPU for a request (a PVC GET: 0.87 ms, 0.44 ms here), and our bodies are JSON
        already. Why libcurl under it (`cluster.transport`): urllib3 holds the GIL for most
        of a request, which the worker's asyncio loop waits on. Authentication and the rate
        limiter (`ThrottledApiClient.before_request`) are the client's. Non-2xx answers
        raise ApiException, as the generated methods do (callers translate it with
        `translated_errors`).
        """
        headers = {**self.api_client.default_headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        self.api_client.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        url = self.host + path
        if query:
            url += "?" + urlencode(query)
        if self.transport is None:
            response = self.api_client.call_api(
                method, url, headers, body, None, _request_timeout=self.timeout)
            raw = response.read()
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(http_resp=response, body=None, data=None)
        else:
            before = getattr(self.api_client, "before_request", None)
            if before is not None:
                before()
            encoded = None if body is None else (
                body if isinstance(body, bytes) else json.dumps(body).encode())
            raw = self.transport.request(method, url, headers, encoded, self.timeout).data
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", errors="replace")

    # ---- custom resources ------------------------------------------------------------

    def get_custom(self, resource: CustomResource, namespace: str, name: str) -> dict[str, Any]:
        with translated_errors(f"get {resource.kind} {namespace}/{name}"):
            return dict(self.request_json("GET", custom_path(resource, namespace, name)))

    def get_custom_or_none(
        self, resource: CustomResource, namespace: str, name: str
    ) -> dict[str, Any] | None:
        try:
            return self.get_custom(resource, namespace, name)
        except NotFound:
            return None

    def watch_custom(
        self, resource: CustomResource, namespace: str, names: list[str],
        pending: Callable[[Objects], list[str]], *, kind: str, what: str,
        progress_interval_seconds: float, label_selector: str,
    ) -> ListWatch:
        """A list-then-watch of named objects of one custom resource in a namespace (see
        `cluster.waiting.ListWatch`), its LISTs on the cheap `request_json` path."""
        return ListWatch(
            self.list_call(custom_path(resource, namespace)),
            names, pending, kind=kind, what=what,
            connect_timeout_seconds=self.connect_timeout_seconds,
            request_timeout_seconds=self.request_timeout_seconds,
            progress_interval_seconds=progress_interval_seconds,
            label_selector=label_selector,
            list_json=lambda query: self.request_json(
                "GET", custom_path(resource, namespace), query=query),
        )

    def list_custom(
        self, resource: CustomResource, namespace: str | None = None, label_selector: str = ""
    ) -> dict[str, Any]:
        """The whole List object (items and metadata.resourceVersion, to watch from)."""
        where = f"{namespace}/" if namespace else ""
        with translated_errors(f"list {resource.kind} {where}{label_selector}".rstrip()):
            answer = self.request_json(
                "GET", custom_path(resource, namespace),
                query={"labelSelector": label_selector} if label_selector else None)
        return dict(answer or {})

    def create_custom(
        self, resource: CustomResource, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name", "")
        body = marked(body, lambda: self.cluster_id)
        with translated_errors(f"create {resource.kind} {namespace}/{name}"):
            return dict(self.request_json("POST", custom_path(resource, namespace), body=body))

    def replace_custom(
        self, resource: CustomResource, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with translated_errors(f"replace {resource.kind} {namespace}/{name}"):
            return dict(self.request_json(
                "PUT", custom_path(resource, namespace, name), body=body))

    def patch_custom(
        self,
        resource: CustomResource,
        namespace: str,
        name: str,
        patch: dict[str, Any] | list[dict[str, Any]],
        patch_type: PatchType = "merge",
        subresource: str = "",
    ) -> dict[str, Any]:
        """A merge patch (an object) or a JSON patch (a list of operations), of the object
        or of its `subresource` ("status")."""
        if patch_type not in _PATCH_CONTENT_TYPES:
            raise ValueError(f"patch_type must be 'merge' or 'json', not {patch_type!r}")
        if (patch_type == "json") != isinstance(patch, list):
            raise ValueError("a JSON patch is a list of operations; a merge patch is an object")
        context = (f"update status of {resource.kind} {namespace}/{name}"
                   if subresource == "status" else f"patch {resource.kind} {namespace}/{name}")
        with translated_errors(context):
            return dict(self.request_json(
                "PATCH", custom_path(resource, namespace, name, subresource), body=patch,
                content_type=_PATCH_CONTENT_TYPES[patch_type]))

    def delete_custom(self, resource: CustomResource, namespace: str, name: str,
                      uid: str | None = None) -> bool:
        """Delete; False when it was already gone. With `uid`, only the object of that uid
        (`cluster.apis.delete_options`): one deleted and made again under the same name
        meanwhile is left alone, as `Replaced`."""
        try:
            with translated_errors(f"delete {resource.kind} {namespace}/{name}"):
                self.request_json("DELETE", custom_path(resource, namespace, name),
                                  body=delete_options(uid))
        except NotFound:
            return False
        except Conflict as err:
            raise replaced(err, uid) from err
        return True

    # ---- paths without a generated method (KubeVirt subresources) ---------------------

    def put_raw(self, path: str, body: dict[str, Any] | None, context: str) -> Any:
        """PUT `body` (None: no body at all) to an API path; the JSON answer, if any."""
        with translated_errors(context):
            return self.request_json("PUT", path, body=body)
