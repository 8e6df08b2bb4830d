"""Structural schemas of the served kinds: validation, unknown fields, CEL rules.

One `KindSchema` per kind wraps a JSON schema (KubeVirt's swagger
definitions, a CRD's `openAPIV3Schema`, or a built-in kind's schema from
`core_schemas`) and answers what kube-apiserver checks:
- `unknown_fields`: fields the schema does not know, found (Strict) or
  dropped (Warn/Ignore), as a real server prunes them;
- `validate`: jsonschema (Draft 4 semantics, which OpenAPI v2/v3.0 share),
  CEL rules that do not involve `oldSelf`, and duplicate entries of
  `x-kubernetes-list-type: set|map` lists;
- `transition_errors`: CEL rules with `oldSelf` (immutability and the like),
  on updates only.
"""

from __future__ import annotations

import copy
import json
import marshal
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import jsonschema

from simulator.cel import MISSING, CelEvalError, CelProgram, CelUnsupported, compile_rule
from simulator.schema_check import SchemaCheck

OBJECT_META = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
OBJECT_META_REF = {"$ref": f"#/definitions/{OBJECT_META}"}
# Definitions whose content is free-form JSON (no field list to prune against).
_FREE_FORM = (
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "k8s.io.apimachinery.pkg.runtime.RawExtension",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Patch",
)
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"

FieldErrors = list[tuple[str, str]]


def to_draft4(schema: Any) -> Any:
    """OpenAPI (v2 or v3.0) schema -> JSON Schema Draft 4 that jsonschema checks the same way.

    `nullable: true` becomes a `null` type; `x-kubernetes-int-or-string` an
    integer-or-string; the `x-kubernetes-*` markers stay for our own walks.
    """
    if isinstance(schema, list):
        return [to_draft4(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: to_draft4(value) for key, value in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.pop("nullable", False):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def swagger_definitions(swagger: dict[str, Any]) -> dict[str, Any]:
    """KubeVirt's definitions in Draft 4 form, with the fixes a real server's decoding implies."""
    definitions: dict[str, Any] = to_draft4(copy.deepcopy(swagger.get("definitions", {})))
    for name in _FREE_FORM:
        if name in definitions:
            definitions[name]["x-kubernetes-preserve-unknown-fields"] = True
    if _INT_OR_STRING in definitions:
        definitions[_INT_OR_STRING] = {
            "description": definitions[_INT_OR_STRING].get("description", ""),
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
        }
    return definitions


def field_path(parts: Iterator[Any] | list[Any]) -> str:
    """["spec", "volumes", 0, "name"] -> "spec.volumes[0].name", as Kubernetes prints fields."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quoted(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(_json_type(value))


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """One jsonschema error in kube-apiserver's words."""
    path = list(error.absolute_path)
    field = field_path(path) or "<root>"
    validator = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    if validator == "required":
        missing = [p for p in expected if isinstance(instance, dict) and p not in instance]
        return [(field_path([*path, name]), "Required value") for name in missing]
    if validator == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(k for k in kinds if k != "null")
        return [
            (
                field,
                f"Invalid value: {json.dumps(_json_type(instance))}: {field} in body must be of "
                f"type {wanted}: {json.dumps(_json_type(instance))}",
            )
        ]
    if validator == "enum":
        supported = ", ".join(json.dumps(v) for v in expected)
        return [(field, f"Unsupported value: {_quoted(instance)}: supported values: {supported}")]
    if validator == "pattern":
        return [
            (
                field,
                f"Invalid value: {_quoted(instance)}: {field} in body should match '{expected}'",
            )
        ]
    if validator == "minLength":
        return [
            (
                field,
                f"Invalid value: {_quoted(instance)}: {field} in body should be at least "
                f"{expected} chars long",
            )
        ]
    if validator == "maxLength":
        return [(field, f"Too long: may not be more than {expected} bytes")]
    if validator in ("minimum", "maximum"):
        relation = "greater than or equal to" if validator == "minimum" else "less than or equal to"
        return [
            (
                field,
                f"Invalid value: {json.dumps(instance)}: {field} in body should be {relation} "
                f"{expected}",
            )
        ]
    if validator in ("minItems", "maxItems"):
        word = "at least" if validator == "minItems" else "at most"
        return [
            (
                field,
                f"Invalid value: {len(instance)}: {field} in body should have {word} "
                f"{expected} items",
            )
        ]
    return [(field, f"Invalid value: {_quoted(instance)}: {error.message}")]


# Root keywords that validate the properties' values besides `properties` itself.
_ROOT_KEYWORDS_INTO_PROPERTIES = frozenset(
    {"allOf", "anyOf", "oneOf", "not", "patternProperties", "dependencies", "$ref"})
_SUBTREE_MEMO_SIZE = 512

# A split object schema: its validator without the properties, and one per property.
_Split = tuple[jsonschema.protocols.Validator, dict[str, jsonschema.protocols.Validator]]

# One schema error: its path (the sort key of a whole-document pass) and its description.
_SortedError = tuple[list[str], list[tuple[str, str]]]


# One schema node as the unknown-field walk reads it (see `KindSchema._unknown_node`):
# the node itself (keeps its id valid), items, skip dicts, map-of schema, properties,
# additionalProperties schema, unknown keys kept, embedded resource.
_UnknownNode = tuple[Any, Any, bool, Any, Any, Any, bool, bool]


def _sorted_error(error: jsonschema.ValidationError) -> _SortedError:
    return list(map(str, error.absolute_path)), _describe(error)


def _path_key(found: _SortedError) -> list[str]:
    return found[0]


class KindSchema:
    """The schema of one kind, with the definitions its `$ref`s point into."""

    def __init__(self, root: dict[str, Any], definitions: dict[str, Any]) -> None:
        self.root = root
        self.definitions = definitions
        document = {**root, "definitions": definitions}
        self._validator = jsonschema.Draft4Validator(document)
        self._check = SchemaCheck(definitions)
        self._split = self._split_by_property()
        # Per top-level property, its own split (see `_split_schema`), made when first needed.
        self._nested: dict[str, _Split | None] = {}
        self._subtree_errors: OrderedDict[tuple[str, bytes], list[_SortedError]] = OrderedDict()
        self._rules: dict[int, list[tuple[CelProgram, dict[str, Any]]]] = {}
        self._checks_below: dict[int, bool] = {}
        self._warned: set[str] = set()
        self._unknown_nodes: dict[int, _UnknownNode] = {}
        self._defaults_below: dict[int, tuple[Any, bool]] = {}

    @classmethod
    def for_crd_version(
        cls, open_api_v3_schema: dict[str, Any], definitions: dict[str, Any]
    ) -> KindSchema:
        """A CRD's schema: the root `metadata` is ObjectMeta, as on a real server."""
        root = to_draft4(copy.deepcopy(open_api_v3_schema)) or {}
        root.setdefault("type", "object")
        properties = root.setdefault("properties", {})
        properties["metadata"] = OBJECT_META_REF
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        return cls(root, definitions)

    @classmethod
    def for_definition(cls, name: str, definitions: dict[str, Any]) -> KindSchema:
        if name not in definitions:
            raise KeyError(f"definition {name!r} not in the reference swagger")
        return cls({"$ref": f"#/definitions/{name}"}, definitions)

    # ---- references ---------------------------------------------------------------------

    def resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/definitions/"):
                raise ValueError(f"unsupported $ref {ref!r}")
            schema = self.definitions.get(ref[len("#/definitions/") :], {})
            seen += 1
            if seen > 50:
                raise ValueError(f"$ref loop at {ref!r}")
        return schema if isinstance(schema, dict) else {}

    def property_schema(self, path: list[str]) -> dict[str, Any] | None:
        """The schema at a dotted field path (for OpenAPI documents and field checks)."""
        schema = self.resolve(self.root)
        for part in path:
            properties = schema.get("properties") or {}
            if part not in properties:
                return None
            schema = self.resolve(properties[part])
        return schema

    # ---- unknown fields -------------------------------------------------------------------

    def unknown_fields(self, obj: Any, *, prune: bool) -> list[str]:
        """Paths of fields the schema does not declare; removed from `obj` when `prune`."""
        found: list[str] = []
        self._walk_unknown(self.root, obj, [], prune, found)
        return found

    def _unknown_node(self, schema: Any) -> _UnknownNode:
        """What the unknown-field walk needs of one schema node, worked out once: every
        write walks its whole document, and resolving `$ref`s and reading the same
        keywords again at each node was most of that walk's time."""
        node = self._unknown_nodes.get(id(schema))
        if node is not None and node[0] is schema:
            return node
        resolved = self.resolve(schema)
        items = resolved.get("items")
        properties = resolved.get("properties")
        additional = resolved.get("additionalProperties")
        preserve = bool(resolved.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(resolved.get("x-kubernetes-embedded-resource"))
        map_of = None
        skip = False
        if properties is None and not embedded:
            if isinstance(additional, dict):
                map_of = additional
            elif (additional is True or preserve or "anyOf" in resolved
                  or "type" not in resolved):
                skip = True
        node = (schema, items if isinstance(items, dict) else None, skip, map_of,
                properties or None, additional if isinstance(additional, dict) else None,
                preserve or additional is True, embedded)
        self._unknown_nodes[id(schema)] = node
        return node

    def _walk_unknown(
        self, schema: Any, value: Any, path: list[Any], prune: bool, found: list[str]
    ) -> None:
        """`path` is this value's own, extended and restored in place by the walk."""
        kind = type(value)
        if kind is not dict and kind is not list:
            return
        _, items, skip, map_of, properties, additional, keep_unknown, embedded = (
            self._unknown_node(schema))
        if kind is list:
            if items is not None:
                for index, item in enumerate(value):
                    if type(item) is dict or type(item) is list:
                        path.append(index)
                        self._walk_unknown(items, item, path, prune, found)
                        path.pop()
            return
        if skip:
            return
        if map_of is not None:
            for key, item in value.items():
                path.append(key)
                self._walk_unknown(map_of, item, path, prune, found)
                path.pop()
            return
        for key in list(value):
            if properties is not None and key in properties:
                child = properties[key]
            elif embedded and key in ("apiVersion", "kind"):
                continue
            elif embedded and key == "metadata":
                child = OBJECT_META_REF
            elif additional is not None:
                child = additional
            elif keep_unknown:
                continue
            else:
                found.append(field_path([*path, key]))
                if prune:
                    del value[key]
                continue
            item = value[key]
            if type(item) is dict or type(item) is list:
                path.append(key)
                self._walk_unknown(child, item, path, prune, found)
                path.pop()

    # ---- validation -----------------------------------------------------------------------

    def validate(self, obj: Any, valid: Any = None) -> FieldErrors:
        """Schema errors, CEL rules without `oldSelf`, duplicate set/map entries.

        `valid`, when given, is an object this schema passed without an error (the stored
        version on an update): a top-level property of `obj` identical to its own, types
        included, cannot fail and is not looked at again. Rules at the root still see the
        whole object, and errors are exactly those of a full pass, in the same order.
        """
        unchanged = _unchanged_properties(obj, valid)
        if not isinstance(valid, dict) and self._check.proves_valid(self._validator.schema, obj):
            found: list[_SortedError] = []  # a create with nothing wrong: one compiled check
        else:
            found = self._schema_errors(obj, unchanged, valid if isinstance(valid, dict) else None)
        errors: FieldErrors = [e for _, described in sorted(found, key=_path_key)
                               for e in described]
        self._walk_checks(self.root, obj, MISSING, [], errors, transition=False,
                          skip=unchanged)
        return errors

    # The same errors as one pass of the whole document, but each top-level property
    # (spec, status, metadata) is validated on its own and its answer remembered by
    # content: a status write does not validate an unchanged spec again. A VMI's
    # status write spent 7 of its 9 ms validating (KubeVirt's schema is large).
    # Contents are keyed by `marshal` (version 2: no back-references), several times
    # cheaper than sorted JSON and type-exact (1, 1.0 and True differ); dicts in
    # another key order only miss the memo.

    def _split_by_property(self) -> _Split | None:
        return self._split_schema(self.root)

    def _split_schema(self, schema: Any) -> _Split | None:
        """Validators for an object schema without its properties, and for each property;
        None when a keyword other than `properties` looks into them (no split then)."""
        resolved = self.resolve(schema)
        properties = resolved.get("properties")
        if not isinstance(properties, dict) or _ROOT_KEYWORDS_INTO_PROPERTIES & resolved.keys():
            return None
        shallow = {**resolved, "properties": {key: {} for key in properties},
                   "definitions": self.definitions}
        return (jsonschema.Draft4Validator(shallow),
                {key: self._validator.evolve(schema=sub) for key, sub in properties.items()})

    def _schema_errors(
        self, obj: Any, unchanged: frozenset[str], valid: dict[str, Any] | None
    ) -> list[_SortedError]:
        if self._split is None or not isinstance(obj, dict):
            return [_sorted_error(e) for e in self._iter_errors(self._validator, obj)]
        shallow, by_property = self._split
        found = [_sorted_error(e) for e in self._iter_errors(shallow, obj)]
        for key, value in obj.items():
            validator = by_property.get(key)
            if validator is not None and key not in unchanged:
                before = valid.get(key, MISSING) if valid is not None else MISSING
                found.extend(self._property_errors(key, validator, value, before))
        return found

    def _property_errors(
        self, key: str, validator: jsonschema.protocols.Validator, value: Any, before: Any
    ) -> list[_SortedError]:
        """One top-level property's errors. With `before` (its value in an object that
        passed) and both objects, one level deeper likewise: only changed fields are
        validated (metadata on a finalizer or label write, status on a status write).

        The compiled check goes first: a valid value (nearly every one) then costs neither
        its `marshal` key nor a memo entry; the memo serves the values with errors."""
        nested = None
        if isinstance(value, dict) and isinstance(before, dict):
            if key not in self._nested:
                properties = self.resolve(self.root).get("properties") or {}
                self._nested[key] = self._split_schema(properties.get(key))
            nested = self._nested[key]
        if self._proves_property_valid(validator, nested, value, before):
            return []
        try:
            memo: tuple[str, bytes] | None = (key, marshal.dumps(value, 2))
        except ValueError:
            memo = None  # not plain data: validate, remember nothing
        if memo is not None and memo in self._subtree_errors:
            self._subtree_errors.move_to_end(memo)
            return self._subtree_errors[memo]
        found = []
        if nested is None:
            for error in self._iter_errors(validator, value):
                error.path.appendleft(key)
                found.append(_sorted_error(error))
        else:
            shallow, by_field = nested
            for error in self._iter_errors(shallow, value):
                error.path.appendleft(key)
                found.append(_sorted_error(error))
            unchanged = _unchanged_properties(value, before)
            for field, item in value.items():
                field_validator = by_field.get(field)
                if field_validator is None or field in unchanged:
                    continue
                for error in self._iter_errors(field_validator, item):
                    error.path.appendleft(field)
                    error.path.appendleft(key)
                    found.append(_sorted_error(error))
        if memo is not None:
            self._subtree_errors[memo] = found
            if len(self._subtree_errors) > _SUBTREE_MEMO_SIZE:
                self._subtree_errors.popitem(last=False)
        return found

    def _proves_property_valid(
        self, validator: jsonschema.protocols.Validator, nested: _Split | None, value: Any,
        before: Any,
    ) -> bool:
        """Whether the compiled check proves a top-level property has no error: as a whole,
        or (split one level deeper) its own keywords and each field changed from `before`."""
        proves_valid = self._check.proves_valid
        if nested is None:
            return proves_valid(validator.schema, value)
        shallow, by_field = nested
        if not proves_valid(shallow.schema, value):
            return False
        unchanged = _unchanged_properties(value, before)
        for field, item in value.items():
            field_validator = by_field.get(field)
            if field_validator is not None and field not in unchanged and not proves_valid(
                    field_validator.schema, item):
                return False
        return True

    def _iter_errors(
        self, validator: jsonschema.protocols.Validator, value: Any
    ) -> Iterator[jsonschema.ValidationError]:
        """jsonschema's errors, unless the compiled check proves there are none (the
        usual answer, at a fraction of the cost: see `simulator.schema_check`)."""
        if self._check.proves_valid(validator.schema, value):
            return iter(())
        return validator.iter_errors(value)

    def transition_errors(self, new: Any, old: Any) -> FieldErrors:
        """CEL rules that compare with `oldSelf`, evaluated where old and new correlate."""
        errors: FieldErrors = []
        self._walk_checks(self.root, new, old, [], errors, transition=True)
        return errors

    def _compiled_rules(self, schema: dict[str, Any]) -> list[tuple[CelProgram, dict[str, Any]]]:
        key = id(schema)
        if key not in self._rules:
            compiled = []
            for rule in schema.get("x-kubernetes-validations") or []:
                source = rule.get("rule", "")
                try:
                    compiled.append((compile_rule(source), rule))
                except CelUnsupported as exc:
                    if source not in self._warned:
                        self._warned.add(source)
                        print(
                            f"simulator: CEL rule not enforced ({exc}): {source}", file=sys.stderr
                        )
            self._rules[key] = compiled
        return self._rules[key]

    def _has_checks(self, schema: Any, visiting: frozenset[int] = frozenset()) -> bool:
        """Whether any rule or set/map list lives at or below this schema (memoised)."""
        schema = self.resolve(schema)
        key = id(schema)
        if key in self._checks_below:
            return self._checks_below[key]
        if key in visiting:
            return False
        result = bool(schema.get("x-kubernetes-validations")) or schema.get(
            "x-kubernetes-list-type"
        ) in ("set", "map")
        if not result:
            children = [
                *(schema.get("properties") or {}).values(),
                schema.get("items"),
                schema.get("additionalProperties"),
            ]
            result = any(
                self._has_checks(child, visiting | {key})
                for child in children
                if isinstance(child, dict)
            )
        self._checks_below[key] = result
        return result

    def has_defaults_below(self, schema: Any) -> bool:
        """Whether a property, item or map value at or below this schema node has a
        `default` (memoised; `apply_defaults` skips the subtrees that have none)."""
        return self._scan_defaults(schema, frozenset())[0]

    def _scan_defaults(self, schema: Any, visiting: frozenset[int]) -> tuple[bool, bool]:
        """(defaults below, answer cut short by a `$ref` loop); a cut-short "no" is not
        remembered, every other answer is (each definition is looked at once)."""
        schema = self.resolve(schema)
        key = id(schema)
        found = self._defaults_below.get(key)
        if found is not None and found[0] is schema:
            return found[1], False
        if key in visiting:
            return False, True
        children = [
            *(schema.get("properties") or {}).values(),
            schema.get("items"),
            schema.get("additionalProperties"),
        ]
        result = cut = False
        for child in children:
            if not isinstance(child, dict):
                continue
            if "default" in self.resolve(child):
                result = True
                break
            below, loop = self._scan_defaults(child, visiting | {key})
            cut = cut or loop
            if below:
                result = True
                break
        if result or not cut:
            self._defaults_below[key] = (schema, result)
        return result, cut and not result

    def _walk_checks(
        self,
        schema: Any,
        new: Any,
        old: Any,
        path: list[Any],
        errors: FieldErrors,
        *,
        transition: bool,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        """Rules and set/map lists at and below `schema`; properties in `skip` (of this
        level only) are known to pass and are not walked into."""
        schema = self.resolve(schema)
        if new is MISSING or not self._has_checks(schema):
            return
        for program, rule in self._compiled_rules(schema):
            if program.uses_old_self != transition or (transition and old is MISSING):
                continue
            self._apply_rule(program, rule, new, old, path, errors)
        if not transition:
            errors.extend(_duplicates(schema, new, path))
        if isinstance(new, dict):
            properties = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            for key, value in new.items():
                child = properties.get(key, additional if isinstance(additional, dict) else None)
                if child is None or key in skip:
                    continue
                old_value = old.get(key, MISSING) if isinstance(old, dict) else MISSING
                self._walk_checks(
                    child, value, old_value, [*path, key], errors, transition=transition
                )
        elif isinstance(new, list) and isinstance(schema.get("items"), dict):
            old_items = _correlate(schema, new, old)
            for index, value in enumerate(new):
                self._walk_checks(
                    schema["items"],
                    value,
                    old_items[index],
                    [*path, index],
                    errors,
                    transition=transition,
                )

    def _apply_rule(
        self,
        program: CelProgram,
        rule: dict[str, Any],
        new: Any,
        old: Any,
        path: list[Any],
        errors: FieldErrors,
    ) -> None:
        where = field_path(path)
        if rule.get("fieldPath"):
            where = (where + str(rule["fieldPath"])).lstrip(".")
        message = rule.get("message") or f"failed rule: {program.source}"
        try:
            passed = program.evaluate(new, old)
        except CelEvalError as exc:
            errors.append((where or "<root>", f"Invalid value: {_quoted(new)}: {message}: {exc}"))
            return
        if passed is not True:
            reason = rule.get("reason", "FieldValueInvalid")
            if reason == "FieldValueRequired":
                errors.append((where or "<root>", f"Required value: {message}"))
            elif reason == "FieldValueForbidden":
                errors.append((where or "<root>", f"Forbidden: {message}"))
            else:
                errors.append(
                    (where or "<root>", f"Invalid value: {json.dumps(_json_type(new))}: {message}")
                )


def _unchanged_properties(obj: Any, valid: Any) -> frozenset[str]:
    """Top-level keys whose value in `obj` is the very one of `valid`, or equal to it with
    the same types throughout (`==` alone holds 1 == 1.0 == True)."""
    if not isinstance(obj, dict) or not isinstance(valid, dict):
        return frozenset()
    same = []
    for key, value in obj.items():
        before = valid.get(key, MISSING)
        if value is before or (
            before is not MISSING and value == before and same_data(value, before)
        ):
            same.append(key)
    return frozenset(same)


def same_data(left: Any, right: Any) -> bool:
    """Equal with the same types throughout (`marshal` tells 1, 1.0 and True apart).
    Dicts whose values are the very same objects are the same without encoding them
    (a status write's metadata: a new dict of the stored version's values)."""
    if type(left) is dict and type(right) is dict and len(left) == len(right):
        for key, value in left.items():
            if right.get(key, MISSING) is not value:
                break
        else:
            return True
    try:
        return marshal.dumps(left, 2) == marshal.dumps(right, 2)
    except ValueError:
        return False


def _map_key(schema: dict[str, Any], item: Any) -> tuple[Any, ...] | None:
    keys = schema.get("x-kubernetes-list-map-keys") or []
    if not keys or not isinstance(item, dict):
        return None
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)


def _duplicates(schema: dict[str, Any], value: Any, path: list[Any]) -> FieldErrors:
    list_type = schema.get("x-kubernetes-list-type")
    if not isinstance(value, list) or list_type not in ("set", "map"):
        return []
    seen: set[Any] = set()
    errors: FieldErrors = []
    for index, item in enumerate(value):
        key = json.dumps(item, sort_keys=True) if list_type == "set" else _map_key(schema, item)
        if key is None:
            continue
        if key in seen:
            shown = (
                item
                if list_type == "set"
                else dict(
                    zip(
                        schema.get("x-kubernetes-list-map-keys") or [],
                        (json.loads(k) for k in key),
                        strict=True,
                    )
                )
            )
            errors.append((field_path([*path, index]), f"Duplicate value: {json.dumps(shown)}"))
        seen.add(key)
    return errors


def _correlate(schema: dict[str, Any], new: list[Any], old: Any) -> list[Any]:
    """Old counterparts of list items: by key for `map` lists, none otherwise (as in k8s)."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return [MISSING] * len(new)
    by_key = {}
    for item in old:
        key = _map_key(schema, item)
        if key is not None:
            by_key[key] = item
    return [by_key.get(_map_key(schema, item) or (), MISSING) for item in new]


def apply_defaults(schema_set: KindSchema, obj: Any) -> None:
    """Structural defaulting of a CRD: set each absent field that has a `default`."""
    _default_walk(schema_set, schema_set.root, obj, root=True)


def _default_walk(schema_set: KindSchema, schema: Any, value: Any, *, root: bool = False) -> None:
    schema = schema_set.resolve(schema)
    if not schema_set.has_defaults_below(schema):
        return  # nothing to set anywhere in this subtree (most of every document)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, child in properties.items():
            if root and key == "metadata":
                continue
            child = schema_set.resolve(child)
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                _default_walk(schema_set, child, value[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in properties:
                    _default_walk(schema_set, additional, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_walk(schema_set, schema["items"], item)
