"""The simulator's object store: the API semantics that bite in production.

One process-wide `resourceVersion` counter, optimistic concurrency (409 on a
stale write), AlreadyExists, finalizers with `deletionTimestamp`, owner
reference garbage collection, and a bounded event history so that a watch
can start from any recent `resourceVersion` (410 Gone when it is too old).

The store is synchronous and not thread-safe: the server and the simulated
controllers all run on one asyncio loop. Every change is announced to
subscribers synchronously, after it is committed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from simulator.clock import now_seconds
from simulator.documents import copy_document as _copy
from simulator.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    gone,
    invalid,
    not_found,
    precondition_failed,
)
from simulator.patches import PatchKind, apply_patch
from simulator.resource_types import ResourceType
from simulator.selectors import field_matcher, label_matcher, required_labels

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_HISTORY_LIMIT = 20_000
_GENERATE_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


def path_segment_name_errors(name: str) -> list[str]:
    """path.IsValidPathSegmentName (apimachinery/pkg/api/validation/path)."""
    if name in (".", ".."):
        return [f"Invalid value: {json.dumps(name)}: may not be '{name}'"]
    return [
        f"Invalid value: {json.dumps(name)}: may not contain '{c}'" for c in "/%" if c in name
    ]


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: EventType
    resource: ResourceType
    object: dict[str, Any]


Subscriber = Callable[[WatchEvent], None]  # must not change the event's object


def now_rfc3339() -> str:
    return now_seconds()


class Store:
    """In-memory objects of every registered kind, keyed by (group, plural)."""

    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self._rv = 1
        self._history: deque[WatchEvent] = deque(maxlen=_HISTORY_LIMIT)
        self._subscribers: list[Subscriber] = []
        # Per kind, the stored objects that passed the kind's current validator (an update
        # need not validate again a top-level property it leaves as it was).
        self._trusted: dict[tuple[str, str], set[tuple[str, str]]] = {}
        # Per kind, the bucket's keys in LIST order; None after a create or a removal.
        self._order: dict[tuple[str, str], list[tuple[str, str]] | None] = {}
        # (key, value) of every label -> the keys of the objects that carry it, per kind:
        # a LIST by `vmsnap.io/snapshot=NAME` reads its few objects, not the collection.
        self._by_label: dict[tuple[str, str], dict[tuple[str, str], set[tuple[str, str]]]] = {}
        # A stored object's JSON, by (kind, scope, name, without type meta): valid while the
        # entry's object is the stored one (stored objects are never changed in place).
        self._encoded: dict[tuple[tuple[str, str], str, str, bool], tuple[dict[str, Any], bytes]]
        self._encoded = {}
        for resource in types:
            self.register(resource)

    # ---- kinds -------------------------------------------------------------------------

    def register(self, resource: ResourceType) -> None:
        self._types[resource.key] = resource
        self._objects.setdefault(resource.key, {})
        self._trusted[resource.key] = set()  # a new validator has checked nothing yet
        self._order[resource.key] = None

    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def resource(self, group: str, plural: str) -> ResourceType:
        try:
            return self._types[(group, plural)]
        except KeyError:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({plural})"
            ) from None

    def resource_for_kind(self, api_version: str, kind: str) -> ResourceType:
        group = api_version.rpartition("/")[0]
        for resource in self._types.values():
            if resource.group == group and resource.kind == kind:
                return resource
        raise bad_request(f'no matches for kind "{kind}" in version "{api_version}"')

    # ---- watching ----------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` after every committed change; returns an unsubscribe."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def events_since(self, resource: ResourceType, since: int) -> list[WatchEvent]:
        """Events of one kind after `since`; 410 Gone when history no longer reaches it."""
        if since and self._history and since < self._history[0].resource_version - 1:
            raise gone(f"too old resource version: {since} ({self._rv})")
        found = []
        for event in reversed(self._history):  # newest first: stop at `since`, not at the start
            if event.resource_version <= since:
                break
            if event.resource.key == resource.key:
                found.append(event)
        found.reverse()
        return found

    def _emit(self, type_: EventType, resource: ResourceType, obj: dict[str, Any]) -> None:
        """Announce a committed change. The event carries the stored object itself (never
        changed in place, like everything stored): subscribers read it, never change it."""
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), type_, resource, obj)
        self._history.append(event)
        for subscriber in list(self._subscribers):
            subscriber(event)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # ---- reads -------------------------------------------------------------------------

    def _bucket(self, resource: ResourceType) -> dict[tuple[str, str], dict[str, Any]]:
        return self._objects[resource.key]

    def _scope(self, resource: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if resource.namespaced else ""

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        return _copy(self.view(resource, namespace, name))

    def view(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object itself, not a copy: read it, never change it (GET answers)."""
        obj = self._bucket(resource).get((self._scope(resource, namespace), name))
        if obj is None:
            raise not_found(resource.group, resource.plural, name)
        return obj

    def find(
        self, resource: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        found = self.find_view(resource, namespace, name)
        return _copy(found) if found is not None else None

    def find_view(
        self, resource: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """`find` without the copy (the stored object itself): read it, never change it."""
        return self._bucket(resource).get((self._scope(resource, namespace), name))

    def list_view(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """`list` without the copies: the stored objects themselves, to read and encode only."""
        labels, fields = label_matcher(label_selector), field_matcher(field_selector)
        bucket = self._bucket(resource)
        required = required_labels(label_selector)
        order: list[tuple[str, str]]
        if required:
            index = self._by_label.get(resource.key, {})
            order = sorted(set.intersection(*(index.get(pair, set()) for pair in required)))
        else:
            cached = self._order.get(resource.key)
            if cached is None:
                cached = self._order[resource.key] = sorted(bucket)
            order = cached
        scoped = bool(namespace) and resource.namespaced
        items = []
        for key in order:
            obj = bucket[key]
            if (not scoped or key[0] == namespace) and labels(obj) and fields(obj):
                items.append(obj)
        return items, str(self._rv)

    def list(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        items, resource_version = self.list_view(
            resource, namespace, label_selector, field_selector
        )
        return [_copy(obj) for obj in items], resource_version

    def encoded(self, resource: ResourceType, obj: dict[str, Any], *, type_meta: bool) -> bytes:
        """`json.dumps(obj)` of a stored object (from `view` or `list_view`), computed once
        per version; without `apiVersion`/`kind` unless `type_meta` (built-in list items)."""
        meta = obj.get("metadata") or {}
        key = (resource.key, meta.get("namespace") or "", meta.get("name") or "", type_meta)
        cached = self._encoded.get(key)
        if cached is not None and cached[0] is obj:
            return cached[1]
        shown = obj if type_meta else {
            k: v for k, v in obj.items() if k not in ("apiVersion", "kind")
        }
        raw = json.dumps(shown).encode()
        if self._bucket(resource).get((self._scope(resource, key[1]), key[2])) is obj:
            self._encoded[key] = (obj, raw)  # only stored objects: removal forgets them
        return raw

    def _reindex(
        self,
        resource: ResourceType,
        key: tuple[str, str],
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        """Keep the label index in step with one object's change (None: absent)."""
        before = _label_pairs(old)
        after = _label_pairs(new)
        if before == after:
            return
        index = self._by_label.setdefault(resource.key, {})
        for pair in before - after:
            holders = index.get(pair)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del index[pair]
        for pair in after - before:
            index.setdefault(pair, set()).add(key)

    def _forget(
        self, resource: ResourceType, scope: str, name: str, removed: dict[str, Any]
    ) -> None:
        """Bookkeeping of an object that left the bucket."""
        self._order[resource.key] = None
        self._reindex(resource, (scope, name), removed, None)
        self._trusted.get(resource.key, set()).discard((scope, name))
        namespace = scope if resource.namespaced else ""
        for type_meta in (True, False):
            self._encoded.pop((resource.key, namespace, name, type_meta), None)

    # ---- writes ------------------------------------------------------------------------

    def _validate(
        self, resource: ResourceType, obj: dict[str, Any], valid: dict[str, Any] | None = None
    ) -> None:
        """Name, metadata and schema rules; `valid` is an object this kind's validator
        passed (the stored one), whose unchanged top-level properties need no new look."""
        name = obj["metadata"].get("name", "")
        causes: list[tuple[str, str]] = []
        if resource.path_segment_names:
            causes.extend(("metadata.name", m) for m in path_segment_name_errors(name))
        elif not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                    "lower case alphanumeric characters, '-' or '.'",
                )
            )
        if resource.validator is not None:
            causes.extend(resource.validator(obj, valid))
        if causes:
            raise invalid(
                resource.kind, resource.group, name, [{"field": f, "message": m} for f, m in causes]
            )

    def _generate_name(self, resource: ResourceType, scope: str, prefix: str) -> str:
        while True:
            suffix = "".join(
                _GENERATE_SUFFIX[b % len(_GENERATE_SUFFIX)] for b in uuid.uuid4().bytes[:5]
            )
            if (scope, prefix + suffix) not in self._bucket(resource):
                return prefix + suffix

    def create(
        self,
        resource: ResourceType,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        keep_status: bool = False,
        dry_run: bool = False,
        shared: bool = False,
        owned: bool = False,
    ) -> dict[str, Any]:
        """POST. `keep_status` is for seeding: a real server drops status on create.
        `shared`: answer the stored object itself (read only), not a copy.
        `owned`: `obj` is the caller's own new document, sharing nothing with a stored
        object and never used after: kept as it is rather than copied."""
        if not owned:
            obj = _copy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if resource.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            namespace = namespace or body_ns or "default"
            if resource.key != ("", "namespaces"):
                self._require_namespace(namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        scope = self._scope(resource, namespace)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    resource.kind,
                    resource.group,
                    "",
                    [
                        {
                            "field": "metadata.name",
                            "message": "Required value: name or generateName is required",
                        }
                    ],
                )
            meta["name"] = self._generate_name(resource, scope, meta["generateName"])
        name = meta["name"]
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        if resource.has_status and not keep_status:
            obj.pop("status", None)
        if resource.key == ("", "namespaces") and not keep_status:
            obj["status"] = {"phase": "Active"}
        self._validate(resource, obj)
        if (scope, name) in self._bucket(resource):
            raise already_exists(resource.group, resource.plural, name)
        meta.pop("deletionTimestamp", None)
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        if dry_run:
            return obj
        return self._insert(resource, scope, name, obj, shared=shared)

    def create_checked(
        self, resource: ResourceType, would_be: dict[str, Any], *, shared: bool = False
    ) -> dict[str, Any]:
        """Store what a dry-run `create` answered (named, stamped and validated there),
        the store unchanged since (the caller only ran checks in between, on this loop):
        a create validates once, not once for the dry run and again for the write."""
        meta = would_be["metadata"]
        scope = self._scope(resource, meta.get("namespace"))
        name = meta["name"]
        if (scope, name) in self._bucket(resource):
            raise already_exists(resource.group, resource.plural, name)
        return self._insert(resource, scope, name, would_be, shared=shared)

    def _insert(
        self, resource: ResourceType, scope: str, name: str, obj: dict[str, Any], *, shared: bool
    ) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._bucket(resource)[(scope, name)] = obj
        self._order[resource.key] = None
        self._reindex(resource, (scope, name), None, obj)
        self._trusted[resource.key].add((scope, name))
        self._emit("ADDED", resource, obj)
        return obj if shared else _copy(obj)

    def _require_namespace(self, namespace: str) -> None:
        namespaces = self._objects.get(("", "namespaces"), {})
        found = namespaces.get(("", namespace))
        if found is None:
            raise not_found("", "namespaces", namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def update(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        shared: bool = False,
        owned: bool = False,
    ) -> dict[str, Any]:
        """PUT of the object or of its status; a set `resourceVersion` must be current.
        `shared`: answer the stored (or would-be) object itself, to read only, not a copy.
        `owned`: `obj` is the caller's to give away (its own copy, sharing nothing with a
        stored object, never used again): kept as it is rather than copied once more."""
        scope = self._scope(resource, namespace)
        current = self._bucket(resource).get((scope, name))
        if current is None:
            raise not_found(resource.group, resource.plural, name)
        # A status write reads only the body's metadata and keeps only its status (copied
        # below): no copy of a spec that is dropped anyway (a VMI's is large).
        if subresource == "status":
            obj = dict(obj)
        elif not owned:
            obj = _copy(obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name "
                f"on the URL ({name})"
            )
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name)
        if subresource == "status":
            # Shallow: the stored object is never changed in place, so the new version may
            # share its unchanged parts (and `_validate` sees them as the same objects).
            updated = {**current, "metadata": dict(current["metadata"])}
            if "status" in obj:
                updated["status"] = obj["status"] if owned else _copy(obj["status"])
            else:
                updated.pop("status", None)
        elif subresource:
            raise bad_request(f"subresource {subresource!r} cannot be updated with PUT here")
        else:
            updated = obj
            updated["apiVersion"], updated["kind"] = resource.api_version, resource.kind
            if resource.has_status:
                if "status" in current:
                    updated["status"] = current["status"]  # shared, as above
                else:
                    updated.pop("status", None)
            new_meta = updated["metadata"]
            for immutable in ("uid", "creationTimestamp", "namespace", "deletionTimestamp"):
                if immutable in current["metadata"]:
                    new_meta[immutable] = current["metadata"][immutable]
                else:
                    new_meta.pop(immutable, None)
            new_meta["name"] = name
            generation = current["metadata"].get("generation", 1)
            if _spec_of(updated) != _spec_of(current):
                generation += 1
            new_meta["generation"] = generation
        trusted = (scope, name) in self._trusted[resource.key]
        self._validate(resource, updated, current if trusted else None)
        if dry_run:
            return updated if shared else _copy(updated)
        stored = self._commit(resource, scope, name, current, updated, validated=True)
        return stored if shared else _copy(stored)

    def update_checked(
        self, resource: ResourceType, namespace: str | None, name: str, would_be: dict[str, Any]
    ) -> dict[str, Any]:
        """Store what a dry-run `update(..., shared=True)` answered, the store unchanged
        since (see `create_checked`); answers the stored object itself, to read only."""
        scope = self._scope(resource, namespace)
        current = self._bucket(resource).get((scope, name))
        if current is None:
            raise not_found(resource.group, resource.plural, name)
        return self._commit(resource, scope, name, current, would_be, validated=True)

    def _commit(
        self,
        resource: ResourceType,
        scope: str,
        name: str,
        current: dict[str, Any],
        updated: dict[str, Any],
        *,
        validated: bool,
    ) -> dict[str, Any]:
        """Store `updated` (which may share parts with `current`, never to be changed);
        returns what is stored now (or what was removed), not a copy."""
        if _same_but_rv(updated, current):
            return current  # a no-op write changes nothing, as on a real server
        updated["metadata"]["resourceVersion"] = self._next_rv()
        if updated["metadata"].get("deletionTimestamp") and not updated["metadata"].get(
            "finalizers"
        ):
            del self._bucket(resource)[(scope, name)]
            self._forget(resource, scope, name, current)
            self._emit("DELETED", resource, updated)
            self._collect_garbage(updated["metadata"]["uid"])
            return updated
        self._bucket(resource)[(scope, name)] = updated
        self._reindex(resource, (scope, name), current, updated)
        if validated:
            self._trusted[resource.key].add((scope, name))
        else:
            self._trusted[resource.key].discard((scope, name))
        self._emit("MODIFIED", resource, updated)
        return updated

    def patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: PatchKind,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PATCH by kind (`simulator.patches`); an unchanged resourceVersion is no precondition."""
        current = self.get(resource, namespace, name)
        patched = apply_patch(patch_type, current, patch)
        sent_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if sent_rv == current["metadata"]["resourceVersion"]:
            patched["metadata"].pop("resourceVersion", None)  # unchanged: no precondition
        return self.update(
            resource, namespace, name, patched, subresource=subresource, dry_run=dry_run
        )

    def delete(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        *,
        precondition_uid: str | None = None,
        precondition_rv: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE: set `deletionTimestamp` while finalizers remain, else remove, then GC."""
        scope = self._scope(resource, namespace)
        current = self._bucket(resource).get((scope, name))
        if current is None:
            raise not_found(resource.group, resource.plural, name)
        meta = current["metadata"]
        if precondition_uid and precondition_uid != meta["uid"]:
            raise precondition_failed(resource.group, resource.kind, name, "UID",
                                      precondition_uid, meta["uid"])
        if precondition_rv and precondition_rv != meta["resourceVersion"]:
            raise precondition_failed(resource.group, resource.kind, name, "ResourceVersion",
                                      precondition_rv, meta["resourceVersion"])
        if dry_run:
            return _copy(current)
        if resource.key == ("", "namespaces"):
            return self._delete_namespace(resource, current)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return _copy(current)
            updated = _copy(current)
            updated["metadata"]["deletionTimestamp"] = now_rfc3339()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            return _copy(self._commit(resource, scope, name, current, updated, validated=False))
        stored = self._bucket(resource).pop((scope, name))
        self._forget(resource, scope, name, stored)
        removed = _fresh_metadata(stored)
        removed["metadata"]["resourceVersion"] = self._next_rv()
        self._emit("DELETED", resource, removed)
        self._collect_garbage(removed["metadata"]["uid"])
        return _copy(removed)

    def _delete_namespace(
        self, resource: ResourceType, namespace: dict[str, Any]
    ) -> dict[str, Any]:
        """Namespace deletion removes everything in it (the namespace controller's job)."""
        ns_name = namespace["metadata"]["name"]
        for kind in self._types.values():
            if not kind.namespaced:
                continue
            for scope, name in [k for k in self._bucket(kind) if k[0] == ns_name]:
                obj = self._bucket(kind).get((scope, name))
                if obj is None:
                    continue
                if obj["metadata"].get("finalizers"):
                    # Finalizers stay honoured: strip them as a terminating namespace would wait;
                    # the simulator has no controllers behind arbitrary finalizers.
                    stripped = _copy(obj)
                    stripped["metadata"]["finalizers"] = []
                    stripped["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                    self._commit(kind, scope, name, obj, stripped, validated=False)
                elif (scope, name) in self._bucket(kind):
                    self.delete(kind, scope, name)
        stored = self._bucket(resource).pop(("", ns_name))
        self._forget(resource, "", ns_name, stored)
        removed = _fresh_metadata(stored)
        removed["metadata"]["resourceVersion"] = self._next_rv()
        removed["metadata"]["deletionTimestamp"] = now_rfc3339()
        self._emit("DELETED", resource, removed)
        return _copy(removed)

    def _live_uids(self) -> set[str]:
        return {
            obj["metadata"]["uid"] for bucket in self._objects.values() for obj in bucket.values()
        }

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background deletion: dependents whose owners are all gone are deleted in turn."""
        live = self._live_uids()
        for resource in list(self._types.values()):
            for (scope, name), obj in list(self._bucket(resource).items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                if any(ref.get("uid") in live for ref in refs):
                    continue
                if (scope, name) in self._bucket(resource):
                    self.delete(resource, scope or None, name)


def _label_pairs(obj: dict[str, Any] | None) -> set[tuple[str, str]]:
    if obj is None:
        return set()
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {(str(k), str(v)) for k, v in labels.items()}


def _fresh_metadata(stored: dict[str, Any]) -> dict[str, Any]:
    """A removed object to stamp: a read-only view handed out earlier keeps its version."""
    return {**stored, "metadata": dict(stored["metadata"])}


def _spec_of(obj: dict[str, Any]) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    """A shallow view of `obj` without its resourceVersion, for comparisons only."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "resourceVersion" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}


def _same_but_rv(updated: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a write changes nothing but (at most) the resourceVersion."""
    return _without_rv(updated) == _without_rv(current)
