"""A small CEL interpreter for the `x-kubernetes-validations` rules CRDs carry.

Real API servers evaluate these rules with cel-go. The simulator needs the
subset that CRD authors write in practice (`has()`, `self == oldSelf`,
`size()`, boolean logic, comparisons, string methods, `all`/`exists`
macros) so that, for example, a VolumeSnapshot with no source or with both
sources is refused as on a real cluster. A rule outside the subset fails to
compile with `CelUnsupported`; the caller skips it rather than guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class CelUnsupported(Exception):
    """The rule uses syntax or a function this interpreter does not implement."""


class CelEvalError(Exception):
    """A runtime error, as cel-go reports it (`no such key`, type mismatch)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

Env = dict[str, Any]
Node = Callable[[Env], Any]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<float>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0x[0-9a-fA-F]+u?|\d+u?)
  | (?P<string>[rR]?(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE,
)

_RESERVED = {
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
    "in",
    "true",
    "false",
    "null",
}

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def unescape_property(name: str) -> str:
    """Kubernetes' CEL property escaping: `__namespace__`, `__dot__`, `__dash__`, ..."""
    if name.startswith("__") and name.endswith("__") and name[2:-2] in _RESERVED:
        return name[2:-2]
    return (
        name.replace("__underscores__", "\0")
        .replace("__dot__", ".")
        .replace("__dash__", "-")
        .replace("__slash__", "/")
        .replace("\0", "__")
    )


@dataclass
class _Tok:
    kind: str
    text: str


def _tokenize(source: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match:
            raise CelUnsupported(f"unexpected character {source[pos]!r} at {pos}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group()))
    tokens.append(_Tok("eof", ""))
    return tokens


def _string_literal(text: str) -> str:
    raw = text[0] in "rR"
    body = text[2:-1] if raw else text[1:-1]
    if raw:
        return body
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return "null_type"


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    if isinstance(left, int | float) and isinstance(right, int | float):
        return bool(left == right)
    if type(left) is not type(right) and not (left is None or right is None):
        return False
    return bool(left == right)


def _compare(op: str, left: Any, right: Any) -> bool:
    numbers = (int, float)
    comparable = (
        isinstance(left, numbers)
        and isinstance(right, numbers)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ) or (type(left) is type(right) and isinstance(left, str | bool))
    if not comparable:
        raise CelEvalError(f"no such overload: {_type_name(left)} {op} {_type_name(right)}")
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _arith(op: str, left: Any, right: Any) -> Any:
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op == "+" and isinstance(left, list) and isinstance(right, list):
        return left + right
    if not (
        isinstance(left, int | float)
        and isinstance(right, int | float)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        raise CelEvalError(f"no such overload: {_type_name(left)} {op} {_type_name(right)}")
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        raise CelEvalError("division by zero" if op == "/" else "modulus by zero")
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right) * (1 if (left >= 0) == (right >= 0) else -1)
        return quotient if op == "/" else left - quotient * right
    return left / right if op == "/" else left % right


def _size(value: Any) -> int:
    if isinstance(value, str | list | dict | bytes):
        return len(value)
    raise CelEvalError(f"no such overload: size({_type_name(value)})")


def _select(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        raise CelEvalError(f"no such key: {field} (on {_type_name(value)})")
    if field not in value:
        raise CelEvalError(f"no such key: {field}")
    return value[field]


def _require_str(value: Any, method: str) -> str:
    if not isinstance(value, str):
        raise CelEvalError(f"no such overload: {_type_name(value)}.{method}()")
    return value


_METHODS: dict[str, Callable[..., Any]] = {
    "size": lambda target: _size(target),
    "startsWith": lambda target, arg: _require_str(target, "startsWith").startswith(arg),
    "endsWith": lambda target, arg: _require_str(target, "endsWith").endswith(arg),
    "contains": lambda target, arg: arg in _require_str(target, "contains"),
    "matches": lambda target, arg: re.search(arg, _require_str(target, "matches")) is not None,
    "lowerAscii": lambda target: _require_str(target, "lowerAscii").lower(),
    "upperAscii": lambda target: _require_str(target, "upperAscii").upper(),
    "trim": lambda target: _require_str(target, "trim").strip(),
}


def _to_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CelEvalError(f"cannot convert {value!r} to int") from exc


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "int": _to_int,
    "uint": _to_int,
    "double": lambda value: float(value),
    "string": lambda value: (
        value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    ),
    "bool": lambda value: value if isinstance(value, bool) else value == "true",
    "type": _type_name,
    "matches": lambda target, arg: re.search(arg, _require_str(target, "matches")) is not None,
}

_MACROS = {"all", "exists", "exists_one", "map", "filter"}


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.pos = 0

    def peek(self, offset: int = 0) -> _Tok:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self, text: str | None = None) -> _Tok:
        token = self.tokens[self.pos]
        if text is not None and token.text != text:
            raise CelUnsupported(f"expected {text!r}, found {token.text or 'end'!r}")
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("op", "ident"):
            self.pos += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "eof":
            raise CelUnsupported(f"unexpected {self.peek().text!r}")
        return node

    def expr(self) -> Node:
        condition = self.or_expr()
        if not self.accept("?"):
            return condition
        then = self.or_expr()
        self.take(":")
        otherwise = self.expr()

        def ternary(env: Env) -> Any:
            chosen = condition(env)
            if not isinstance(chosen, bool):
                raise CelEvalError("ternary condition is not a bool")
            return then(env) if chosen else otherwise(env)

        return ternary

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.accept("||"):
            node = _logical(node, self.and_expr(), short_circuit_on=True)
        return node

    def and_expr(self) -> Node:
        node = self.relation()
        while self.accept("&&"):
            node = _logical(node, self.relation(), short_circuit_on=False)
        return node

    def relation(self) -> Node:
        node = self.addition()
        while self.peek().text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take().text
            right = self.addition()
            node = _relation(op, node, right)
        return node

    def addition(self) -> Node:
        node = self.multiplication()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            node = _binary(op, node, self.multiplication())
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", "%"):
            op = self.take().text
            node = _binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("!"):
            operand = self.unary()

            def negate(env: Env) -> Any:
                value = operand(env)
                if not isinstance(value, bool):
                    raise CelEvalError(f"no such overload: !{_type_name(value)}")
                return not value

            return negate
        if self.accept("-"):
            operand = self.unary()
            return lambda env: _arith("-", 0, operand(env))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                name = self.take().text
                if self.peek().text == "(":
                    node = self.method_call(node, name)
                else:
                    node = _field(node, unescape_property(name))
            elif self.accept("["):
                index = self.expr()
                self.take("]")
                node = _index(node, index)
            else:
                return node

    def args(self) -> list[Node]:
        self.take("(")
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.expr())
            while self.accept(","):
                args.append(self.expr())
        self.take(")")
        return args

    def method_call(self, target: Node, name: str) -> Node:
        if name in _MACROS:
            self.take("(")
            variable = self.take().text
            self.take(",")
            body = self.expr()
            self.take(")")
            return _macro(name, target, variable, body)
        method = _METHODS.get(name)
        if method is None:
            raise CelUnsupported(f"method {name}() is not supported")
        args = self.args()
        return lambda env: method(target(env), *(arg(env) for arg in args))

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "int":
            value = int(token.text.rstrip("u"), 0)
            return lambda env: value
        if token.kind == "float":
            number = float(token.text)
            return lambda env: number
        if token.kind == "string":
            text = _string_literal(token.text)
            return lambda env: text
        if token.kind == "ident":
            return self.identifier(token.text)
        if token.text == "(":
            node = self.expr()
            self.take(")")
            return node
        if token.text == "[":
            items: list[Node] = []
            while self.peek().text != "]":
                items.append(self.expr())
                if not self.accept(","):
                    break
            self.take("]")
            return lambda env: [item(env) for item in items]
        if token.text == "{":
            entries: list[tuple[Node, Node]] = []
            while self.peek().text != "}":
                key = self.expr()
                self.take(":")
                entries.append((key, self.expr()))
                if not self.accept(","):
                    break
            self.take("}")
            return lambda env: {key(env): value(env) for key, value in entries}
        raise CelUnsupported(f"unexpected {token.text or 'end'!r}")

    def identifier(self, name: str) -> Node:
        if name == "true":
            return lambda env: True
        if name == "false":
            return lambda env: False
        if name == "null":
            return lambda env: None
        if self.peek().text == "(":
            if name == "has":
                return self.has_macro()
            function = _FUNCTIONS.get(name)
            if function is None:
                raise CelUnsupported(f"function {name}() is not supported")
            args = self.args()
            return lambda env: function(*(arg(env) for arg in args))

        def variable(env: Env) -> Any:
            if name not in env:
                raise CelEvalError(f"undeclared reference to {name!r}")
            value = env[name]
            if value is MISSING:
                raise CelEvalError(f"no value for {name}")
            return value

        return variable

    def has_macro(self) -> Node:
        self.take("(")
        start = self.pos
        target = self.primary()
        last_field: str | None = None
        while self.peek().text in (".", "["):
            if self.peek().text == "[":
                raise CelUnsupported("has() takes a field selection")
            self.take(".")
            name = unescape_property(self.take().text)
            if self.peek().text in (".", "["):
                target = _field(target, name)
            else:
                last_field = name
        self.take(")")
        if last_field is None or self.pos == start:
            raise CelUnsupported("has() needs a field selection such as has(self.x)")
        field = last_field

        def has(env: Env) -> bool:
            value = target(env)
            if not isinstance(value, dict):
                raise CelEvalError(f"has() on {_type_name(value)}")
            return field in value

        return has


def _logical(left: Node, right: Node, *, short_circuit_on: bool) -> Node:
    """CEL's commutative && and ||: an error on one side is absorbed by a decisive other."""

    def evaluate(env: Env) -> bool:
        errors: list[CelEvalError] = []
        values: list[bool] = []
        for side in (left, right):
            try:
                value = side(env)
            except CelEvalError as exc:
                errors.append(exc)
                continue
            if not isinstance(value, bool):
                errors.append(CelEvalError(f"no such overload: logical op on {_type_name(value)}"))
                continue
            if value is short_circuit_on:
                return short_circuit_on
            values.append(value)
        if errors:
            raise errors[0]
        return not short_circuit_on

    return evaluate


def _relation(op: str, left: Node, right: Node) -> Node:
    def evaluate(env: Env) -> bool:
        a, b = left(env), right(env)
        if op == "==":
            return _equal(a, b)
        if op == "!=":
            return not _equal(a, b)
        if op == "in":
            if isinstance(b, dict):
                return a in b
            if isinstance(b, list):
                return any(_equal(a, item) for item in b)
            raise CelEvalError(f"no such overload: in {_type_name(b)}")
        return _compare(op, a, b)

    return evaluate


def _binary(op: str, left: Node, right: Node) -> Node:
    return lambda env: _arith(op, left(env), right(env))


def _field(target: Node, name: str) -> Node:
    return lambda env: _select(target(env), name)


def _index(target: Node, index: Node) -> Node:
    def evaluate(env: Env) -> Any:
        container, key = target(env), index(env)
        if isinstance(container, list):
            if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < len(container):
                raise CelEvalError(f"index out of range: {key}")
            return container[key]
        if isinstance(container, dict):
            if key not in container:
                raise CelEvalError(f"no such key: {key}")
            return container[key]
        raise CelEvalError(f"no such overload: index on {_type_name(container)}")

    return evaluate


def _macro(name: str, target: Node, variable: str, body: Node) -> Node:
    def evaluate(env: Env) -> Any:
        collection = target(env)
        if isinstance(collection, dict):
            items = list(collection.keys())
        elif isinstance(collection, list):
            items = collection
        else:
            raise CelEvalError(f"{name}() on {_type_name(collection)}")
        results = [body({**env, variable: item}) for item in items]
        if name == "map":
            return results
        if any(not isinstance(r, bool) for r in results):
            raise CelEvalError(f"{name}() predicate is not a bool")
        if name == "all":
            return all(results)
        if name == "exists":
            return any(results)
        if name == "exists_one":
            return sum(results) == 1
        return [item for item, keep in zip(items, results, strict=True) if keep]

    return evaluate


@dataclass(frozen=True)
class CelProgram:
    """One compiled rule. `uses_old_self` marks a transition rule (updates only)."""

    source: str
    uses_old_self: bool
    _node: Node

    def evaluate(self, self_value: Any, old_self: Any = MISSING) -> Any:
        return self._node({"self": self_value, "oldSelf": old_self})


def compile_rule(source: str) -> CelProgram:
    """Compile a rule; raises `CelUnsupported` when it is outside the supported subset."""
    node = _Parser(source).parse()
    uses_old_self = re.search(r"\boldSelf\b", source) is not None
    return CelProgram(source, uses_old_self, node)
