"""PATCH bodies by content type: JSON patch, merge patch, strategic merge patch.

Strategic merge patch is what kubectl and the Python client send for
built-in kinds; for the fields of the kinds we serve it differs from a
merge patch only in a few lists (finalizers merge as sets, owner
references by uid, conditions by type) and in `$patch`/`$retainKeys`/
`$setElementOrder`/`$deleteFromPrimitiveList` directives, handled here.
Custom resources do not support it (415), as on a real server.
"""

from __future__ import annotations

from typing import Any, Literal

import jsonpatch

from simulator.documents import copy_document
from simulator.errors import ApiError, bad_request

PatchKind = Literal["json", "merge", "strategic"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: a new document, sharing nothing with `target` or `patch`
    (a write may change it in place: pruning, defaults, stamps)."""
    if not isinstance(patch, dict):
        return copy_document(patch)
    result = copy_document(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge `patch` into `result`, a copy already: nested objects are merged in place,
    not copied once more per level."""
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            if not isinstance(current, dict):
                current = result[key] = {}
            _merge_into(current, value)
        else:
            result[key] = copy_document(value)


CONTENT_TYPES: dict[str, PatchKind] = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
_ACCEPTED = ", ".join(CONTENT_TYPES)

# Lists merged by a key (patchStrategy=merge, patchMergeKey) in the built-in kinds we serve.
_MERGE_KEYS = {
    "metadata.ownerReferences": "uid",
    "metadata.managedFields": "manager",
    "status.conditions": "type",
}
_SET_LISTS = {"metadata.finalizers"}


def patch_kind(content_type: str, *, builtin: bool) -> PatchKind:
    media = content_type.split(";")[0].strip().lower()
    kind = CONTENT_TYPES.get(media)
    if kind is None or (kind == "strategic" and not builtin):
        accepted = (
            _ACCEPTED if builtin else "application/json-patch+json, application/merge-patch+json"
        )
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + accepted,
        )
    return kind


def apply_patch(kind: PatchKind, current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """The patched object (a new one; `current` is left alone). A merge or strategic
    merge result shares nothing with `current`; it may share parts of `patch`."""
    if kind == "json":
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            result = jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {exc}",
            ) from exc
    elif kind == "merge":
        if not isinstance(patch, dict):
            raise bad_request(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        result = merge_patch(current, patch)
    else:
        if not isinstance(patch, dict):
            raise bad_request(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        result = strategic_merge(current, patch)
    if not isinstance(result, dict):
        raise bad_request("the patch did not produce an object")
    return result


def strategic_merge(target: Any, patch: Any, path: str = "") -> Any:
    if not isinstance(patch, dict):
        return copy_document(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy_document(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy_document(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in (value or [])]
            continue
        child = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child)
        else:
            merged = strategic_merge(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: Any, patch: list[Any], path: str) -> list[Any]:
    existing = copy_document(current) if isinstance(current, list) else []
    if path in _SET_LISTS:
        return existing + [item for item in patch if item not in existing]
    key = _MERGE_KEYS.get(path)
    if key is None:
        return copy_document(patch)
    for item in patch:
        if not isinstance(item, dict):
            continue
        match = next(
            (
                i
                for i, e in enumerate(existing)
                if isinstance(e, dict) and e.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if match is not None:
                existing.pop(match)
        elif match is not None:
            existing[match] = strategic_merge(existing[match], item, path)
        else:
            existing.append({k: v for k, v in item.items() if k != "$patch"})
    return existing
