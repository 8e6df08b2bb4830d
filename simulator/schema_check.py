"""A compiled yes/no check of Draft 4 schemas: the fast path of schema validation.

Why: jsonschema builds an evolved validator and an error generator at every level
of a document even when nothing is wrong, and almost every write the simulator
validates is valid (a VolumeSnapshotContent create spent most of its time there).
`SchemaCheck.proves_valid` answers True only when jsonschema (Draft 4, no format
checker) would find no error; anything it does not model exactly (a keyword it
does not implement, a value of an unusual Python type) answers False, and the
caller then asks jsonschema for the errors as before. So errors, their wording
and their order still come from jsonschema alone; this only skips the search
when there is nothing to find.

Why not fastjsonschema for this yes/no: it generates code for everything a schema
node reaches, and the simulator validates node by node (top-level properties and
their fields apart, see `KindSchema._split_schema`): compiling KubeVirt's VM schema
once took 0.39 s of CPU against 0.008 s here, paid again in every simulator the
test suite starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Draft 4 keywords that do not constrain a value (format: no format checker is used).
_INERT = frozenset({
    "description", "title", "default", "format", "example", "examples", "definitions",
    "$schema", "readOnly", "externalDocs", "discriminator", "xml",
})
# The exact Python types of each JSON type (bool is not an integer; subclasses are left
# to jsonschema): a type check is one set membership.
_TYPES: dict[str, frozenset[type]] = {
    "object": frozenset({dict}),
    "array": frozenset({list}),
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
    "null": frozenset({type(None)}),
    "integer": frozenset({int}),
    "number": frozenset({int, float}),
}
_SCALARS = (str, int, float, bool, type(None))


def _ignores(value: Any, kind: type) -> bool:
    """Whether a keyword about `kind` values leaves `value` alone (jsonschema checks
    subclasses too: those are not ignored, and the exact-type test then fails)."""
    return not isinstance(value, kind)


def _never(_: Any) -> bool:
    return False


def _always(_: Any) -> bool:
    return True


class SchemaCheck:
    """Compiled checks of the schema nodes of one document, `$ref`s resolved into
    `definitions` (`#/definitions/NAME` only, as `KindSchema.resolve`)."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self._definitions = definitions
        # id(node) -> (node, its check): the node is kept so that its id stays its own.
        self._compiled: dict[int, tuple[Any, Check]] = {}

    def proves_valid(self, schema: Any, value: Any) -> bool:
        """True only if `value` has no Draft 4 error against `schema`."""
        return self.check_for(schema)(value)

    def check_for(self, schema: Any) -> Check:
        found = self._compiled.get(id(schema))
        if found is not None and found[0] is schema:
            return found[1]
        # A placeholder first: a recursive `$ref` reaches this node again while compiling.
        target: list[Check] = []

        def deferred(value: Any) -> bool:
            return target[0](value)

        self._compiled[id(schema)] = (schema, deferred)
        check = self._compile(schema)
        target.append(check)
        self._compiled[id(schema)] = (schema, check)
        return check

    def _compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return _always
        if not isinstance(schema, dict):
            return _never
        if "$ref" in schema:  # Draft 4: the siblings of `$ref` are ignored
            ref = schema["$ref"]
            name = ref[len("#/definitions/"):] if isinstance(ref, str) else ""
            if not ref.startswith("#/definitions/") or name not in self._definitions:
                return _never
            return self.check_for(self._definitions[name])
        checks: list[Check] = []
        for keyword, argument in schema.items():
            if keyword in _INERT or keyword.startswith("x-"):
                continue
            made = self._keyword(keyword, argument, schema)
            if made is None:
                return _never  # not modelled: let jsonschema decide
            checks.append(made)
        if not checks:
            return _always
        return _all_of(checks)

    def _keyword(self, keyword: str, argument: Any, schema: dict[str, Any]) -> Check | None:
        """The check of one keyword, or None when it is not modelled exactly."""
        if keyword == "type":
            names = argument if isinstance(argument, list) else [argument]
            if not names or any(name not in _TYPES for name in names):
                return None
            allowed = frozenset().union(*(_TYPES[name] for name in names))
            return lambda value: type(value) in allowed
        if keyword == "properties":
            if not isinstance(argument, dict):
                return None
            return self._properties(argument)
        if keyword == "additionalProperties":
            return self._additional(argument, schema)
        if keyword == "required":
            if not isinstance(argument, list) or not all(isinstance(n, str) for n in argument):
                return None
            needed = frozenset(argument)
            return lambda value: (needed <= value.keys() if type(value) is dict
                                  else _ignores(value, dict))
        if keyword == "items":
            if not isinstance(argument, dict):
                return None  # tuple form
            item_check = self.check_for(argument)
            return lambda value: (all(map(item_check, value)) if type(value) is list
                                  else _ignores(value, list))
        if keyword == "enum":
            return _enum(argument)
        if keyword in ("anyOf", "allOf"):
            if not isinstance(argument, list) or not argument:
                return None
            subs = [self.check_for(sub) for sub in argument]
            if keyword == "anyOf":
                return _any_of(subs)
            return _all_of(subs)
        if keyword == "pattern":
            if not isinstance(argument, str):
                return None
            search = re.compile(argument).search
            return lambda value: _ignores(value, str) or (
                type(value) is str and search(value) is not None)
        return _bound(keyword, argument, schema)

    def _properties(self, properties: dict[str, Any]) -> Check:
        checks = {name: self.check_for(sub) for name, sub in properties.items()}

        def check(value: Any) -> bool:
            if type(value) is not dict:
                return _ignores(value, dict)  # a dict subclass: let jsonschema decide
            for name, item in value.items():  # usually fewer than the schema's properties
                sub = checks.get(name)
                if sub is not None and not sub(item):
                    return False
            return True

        return check

    def _additional(self, argument: Any, schema: dict[str, Any]) -> Check | None:
        if "patternProperties" in schema:
            return None
        known = frozenset(schema.get("properties") or ())
        if argument is True or argument == {}:
            return _always
        if argument is False:
            return lambda value: _ignores(value, dict) or (
                type(value) is dict and all(k in known for k in value))
        if not isinstance(argument, dict):
            return None
        extra = self.check_for(argument)

        def additional(value: Any) -> bool:
            if type(value) is not dict:
                return _ignores(value, dict)  # a dict subclass: let jsonschema decide
            for key, item in value.items():  # noqa: SIM110 (no generator per value)
                if key not in known and not extra(item):
                    return False
            return True

        return additional


def _all_of(checks: list[Check]) -> Check:
    """All of `checks` (a loop, not a generator per value: this runs for every node)."""
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)
    bound = tuple(checks)

    def every(value: Any) -> bool:
        for check in bound:  # noqa: SIM110 (no generator per value)
            if not check(value):
                return False
        return True

    return every


def _any_of(checks: list[Check]) -> Check:
    bound = tuple(checks)

    def some(value: Any) -> bool:
        for check in bound:  # noqa: SIM110 (no generator per value)
            if check(value):
                return True
        return False

    return some


def _enum(argument: Any) -> Check | None:
    """Membership by type and value (jsonschema's `equal` tells bools from numbers; a
    value that is only `==` to a member, 1 and 1.0, is left to jsonschema)."""
    if not isinstance(argument, list) or not all(
        type(v) in _SCALARS and type(v) is not float for v in argument
    ):
        return None
    members = frozenset((type(v), v) for v in argument)
    return lambda value: type(value) in _SCALARS and (type(value), value) in members


def _bound(keyword: str, argument: Any, schema: dict[str, Any]) -> Check | None:
    """minimum/maximum (not exclusive) and the length and item-count bounds."""
    if type(argument) not in (int, float):
        return None
    if keyword in ("minimum", "maximum"):
        if schema.get("exclusiveMinimum") or schema.get("exclusiveMaximum"):
            return None

        def number_in_bound(value: Any) -> bool:
            if type(value) is bool or not isinstance(value, (int, float)):
                return type(value) in _SCALARS or type(value) in (dict, list)
            return value >= argument if keyword == "minimum" else value <= argument

        return number_in_bound
    measured: dict[str, type[str] | type[list[Any]]] = {
        "minLength": str, "maxLength": str, "minItems": list, "maxItems": list,
    }
    if keyword not in measured:
        return None
    kind = measured[keyword]
    at_least = keyword.startswith("min")

    def length_in_bound(value: Any) -> bool:
        if not isinstance(value, kind):
            return True
        if type(value) is not kind:
            return False  # a subclass: let jsonschema decide
        size = len(value)
        return size >= argument if at_least else size <= argument

    return length_in_bound
