"""What kube-apiserver does to a write before it is stored, in its order.

Decode (unknown fields: Strict refuses with 400, Warn drops them with a
warning, Ignore drops them silently), default, validate (strategy rules,
admission webhooks, CEL transition rules against the old object; the
schema and metadata rules run in the store's validator), then store. The
seeding path uses the same pipeline (Strict, status kept) so a seed file is
held to the rules an API client is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from simulator.documents import copy_document
from simulator.errors import ApiError, bad_request, invalid
from simulator.patches import PatchKind, apply_patch
from simulator.registry import CRD_GROUP, Kind, Registry
from simulator.schemas import apply_defaults
from simulator.store import Store

FIELD_VALIDATION = ("Strict", "Warn", "Ignore")


def field_validation(value: str | None) -> str:
    """The `fieldValidation` query parameter (default Warn, as since Kubernetes 1.27)."""
    if not value:
        return "Warn"
    if value not in FIELD_VALIDATION:
        raise bad_request(
            f'fieldValidation: Unsupported value: "{value}": supported values: '
            '"Ignore", "Warn", "Strict"'
        )
    return value


def dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


@dataclass
class WriteResult:
    object: dict[str, Any]  # the stored (or would-be) object itself: read it, never change it
    warnings: list[str] = field(default_factory=list)


def _invalid(kind: Kind, name: str, errors: list[tuple[str, str]]) -> ApiError:
    return invalid(kind.kind, kind.group, name, [{"field": f, "message": m} for f, m in errors])


def _go_strings(values: list[str]) -> str:
    """`fmt.Sprintf("%#v", []string{...})`."""
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def _metadata_update_errors(new: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, str]]:
    """ValidateObjectMetaUpdate's rule on finalizers: none may be added once deleting."""
    old_meta = old.get("metadata") or {}
    if not old_meta.get("deletionTimestamp"):
        return []
    before = set(old_meta.get("finalizers") or [])
    added = sorted(
        {f for f in (new.get("metadata") or {}).get("finalizers") or [] if f not in before}
    )
    if not added:
        return []
    return [
        (
            "metadata.finalizers",
            "Forbidden: no new finalizers can be added if the object is being deleted, "
            f"found new finalizers {_go_strings(added)}",
        )
    ]


class Writer:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    # ---- decoding ------------------------------------------------------------------------

    def _check_type_meta(self, kind: Kind, body: Any, *, fresh: bool = False) -> dict[str, Any]:
        """`body` checked, as our own copy (`fresh`: it is one already, shared with nothing)."""
        if not isinstance(body, dict):
            raise bad_request(
                f"the object provided is unrecognized (must be of type {kind.kind}): "
                "couldn't get version/kind; json parse error"
            )
        api_version, kind_name = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != kind.resource.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({kind.resource.api_version})"
            )
        if kind_name and kind_name != kind.kind:
            raise bad_request(
                f"the kind in the data ({kind_name}) does not match the expected kind ({kind.kind})"
            )
        return body if fresh else copy_document(body)

    def _decode(
        self, kind: Kind, obj: dict[str, Any], validation: str, old: dict[str, Any] | None = None
    ) -> list[str]:
        """Drop unknown fields (refusing them under Strict); returns the warnings."""
        if kind.schema is None:
            return []
        unknown = kind.schema.unknown_fields(obj, prune=True)
        if old is not None and unknown:
            already = set(kind.schema.unknown_fields(old, prune=False))  # prune=False: read only
            unknown = [f for f in unknown if f not in already]
        if unknown and validation == "Strict":
            listed = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise bad_request(
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                f"strict decoding error: {listed}"
            )
        if kind.builtin:
            type_errors = [
                (f, m) for f, m in kind.schema.validate(obj) if "in body must be of type" in m
            ]
            if type_errors:
                field_name, message = type_errors[0]
                raise bad_request(
                    f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                    f"{field_name}: {message}"
                )
        if validation == "Warn":
            return [f'unknown field "{f}"' for f in unknown]
        return []

    def _mutating_admission(self, kind: Kind, obj: dict[str, Any]) -> None:
        """The DefaultStorageClass admission plugin: a PVC that names no class gets the default.

        As in kube-apiserver, an explicit `""` is left alone and, with several default
        classes, the newest wins.
        """
        if kind.resource.key != ("", "persistentvolumeclaims"):
            return
        spec = obj.get("spec")
        if not isinstance(spec, dict) or "storageClassName" in spec:
            return
        classes = self.registry.find("storage.k8s.io", "storageclasses")
        if classes is None:
            return
        items, _ = self.store.list(classes.resource)
        defaults = [
            item
            for item in items
            if (item["metadata"].get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class"
            )
            == "true"
        ]
        if defaults:
            newest = max(
                defaults, key=lambda c: (c["metadata"]["creationTimestamp"], c["metadata"]["name"])
            )
            spec["storageClassName"] = newest["metadata"]["name"]

    def _default(self, kind: Kind, obj: dict[str, Any]) -> None:
        if kind.defaulter is not None:
            kind.defaulter(obj)
        if kind.crd_defaults and kind.schema is not None:
            apply_defaults(kind.schema, obj)

    def _admit(self, kind: Kind, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Strategy validation, then validating webhooks, then CEL transition rules."""
        name = new.get("metadata", {}).get("name", "")
        if old is not None:
            errors = _metadata_update_errors(new, old)
            if errors:
                raise _invalid(kind, name, errors)
        if kind.strategy is not None:
            errors = kind.strategy(new, old)
            if errors:
                raise _invalid(kind, name, errors)
        if kind.webhook is not None:
            webhook, denials = kind.webhook
            messages = denials(new, old)
            if messages:
                raise ApiError(
                    422,
                    "Invalid",
                    f'admission webhook "{webhook}" denied the request: {", ".join(messages)}',
                    {
                        "name": name,
                        "group": kind.group,
                        "kind": kind.kind,
                        "causes": [{"reason": "FieldValueInvalid", "message": m} for m in messages],
                    },
                )
        if old is not None and kind.schema is not None:
            errors = kind.schema.transition_errors(new, old)
            if errors:
                raise _invalid(kind, name, errors)

    # ---- verbs -----------------------------------------------------------------------------

    def create(
        self,
        kind: Kind,
        namespace: str | None,
        body: Any,
        *,
        validation: str = "Warn",
        dry_run: bool = False,
        keep_status: bool = False,
    ) -> WriteResult:
        obj = self._check_type_meta(kind, body)
        warnings = self._decode(kind, obj, validation)
        self._default(kind, obj)
        self._mutating_admission(kind, obj)
        if kind.resource.key == (CRD_GROUP, "customresourcedefinitions"):
            self.registry.kind_from_crd(obj)  # refuses a CRD that cannot be served
            self.registry.prepare_crd(obj)
            keep_status = True
        # Dry run first: the store stamps and validates (schema, metadata); admission follows
        # (it only reads); then the would-be object itself is stored, not validated again.
        # `obj` is our own copy (`_check_type_meta`), handed over; a CRD's is kept apart from
        # what the registry built of it.
        crd = kind.resource.key == (CRD_GROUP, "customresourcedefinitions")
        would_be = self.store.create(
            kind.resource, namespace, obj, keep_status=keep_status, dry_run=True, owned=not crd
        )
        self._admit(kind, would_be, None)
        if dry_run:
            return WriteResult(would_be, warnings)
        created = self.store.create_checked(kind.resource, would_be, shared=True)
        return WriteResult(created, warnings)

    def update(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        validation: str = "Warn",
        dry_run: bool = False,
    ) -> WriteResult:
        obj = self._check_type_meta(kind, body)
        old = self.store.view(kind.resource, namespace, name)  # read only, as below
        warnings = self._decode(kind, obj, validation, old)
        meta = obj.get("metadata")
        if not kind.unconditional_update and not (
            isinstance(meta, dict) and meta.get("resourceVersion")
        ):
            # The generic registry's Update: without AllowUnconditionalUpdate a PUT must name
            # the version it replaces (checked before validation, after the object is found).
            raise invalid(
                kind.plural,
                kind.group,
                name,
                [
                    {
                        "field": "metadata.resourceVersion",
                        "message": "Invalid value: 0x0: must be specified for an update",
                    }
                ],
            )
        return self._store_update(kind, namespace, name, obj, old, subresource, dry_run, warnings)

    def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch_type: PatchKind,
        patch: Any,
        *,
        subresource: str | None = None,
        validation: str = "Warn",
        dry_run: bool = False,
    ) -> WriteResult:
        # The stored object itself: the patch makes a new one, and every check only reads.
        old = self.store.view(kind.resource, namespace, name)
        patched = apply_patch(patch_type, old, patch)
        # A merge result is a new document already (see `merge_patch`): no second copy.
        patched = self._check_type_meta(kind, patched, fresh=patch_type == "merge")
        warnings = self._decode(kind, patched, validation, old)
        return self._store_update(
            kind, namespace, name, patched, old, subresource, dry_run, warnings
        )

    def _store_update(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        old: dict[str, Any],
        subresource: str | None,
        dry_run: bool,
        warnings: list[str],
    ) -> WriteResult:
        self._default(kind, obj)
        if kind.resource.key == (CRD_GROUP, "customresourcedefinitions") and not subresource:
            self.registry.kind_from_crd(obj)
        # Dry run first: the store builds the would-be object (status or main write) and
        # validates schema and metadata; then the rules that compare it with the old one
        # (they only read); then that very object is stored, not built and validated again.
        result = self.store.update(
            kind.resource,
            namespace,
            name,
            obj,  # our own copy (`_check_type_meta`), handed over: not copied again
            subresource=subresource,
            dry_run=True,
            shared=True,  # read below, never changed
            owned=True,
        )
        if subresource:
            if kind.schema is not None:
                errors = kind.schema.transition_errors(result, old)
                if errors:
                    raise _invalid(kind, name, errors)
        else:
            self._admit(kind, result, old)
        if dry_run:
            return WriteResult(result, warnings)
        stored = self.store.update_checked(kind.resource, namespace, name, result)
        return WriteResult(stored, warnings)

    def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        *,
        options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        options = options or {}
        preconditions = options.get("preconditions") or {}
        policy = options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(
                f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if policy == "Orphan" and not dry_run:
            current = self.store.get(kind.resource, namespace, name)
            self._orphan_dependents(current["metadata"]["uid"])
        return self.store.delete(
            kind.resource,
            namespace,
            name,
            precondition_uid=preconditions.get("uid"),
            precondition_rv=preconditions.get("resourceVersion"),
            dry_run=dry_run,
        )

    def _orphan_dependents(self, owner_uid: str) -> None:
        """propagationPolicy Orphan: dependents lose the owner reference instead of being GC'd."""
        for kind in self.registry.kinds():
            items, _ = self.store.list(kind.resource)
            for item in items:
                refs = item["metadata"].get("ownerReferences") or []
                kept = [ref for ref in refs if ref.get("uid") != owner_uid]
                if len(kept) == len(refs):
                    continue
                item["metadata"]["ownerReferences"] = kept
                if not kept:
                    del item["metadata"]["ownerReferences"]
                meta = item["metadata"]
                self.store.update(kind.resource, meta.get("namespace"), meta["name"], item)
