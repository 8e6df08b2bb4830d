"""The CEL subset that enforces CRD `x-kubernetes-validations` in the simulator."""

from __future__ import annotations

import pytest

from simulator.cel import MISSING, CelEvalError, CelUnsupported, compile_rule, unescape_property

EXACTLY_ONE = (
    "(has(self.volumeSnapshotContentName) && !has(self.persistentVolumeClaimName)) || "
    "(!has(self.volumeSnapshotContentName) && has(self.persistentVolumeClaimName))"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"persistentVolumeClaimName": "a"}, True),
        ({"volumeSnapshotContentName": "b"}, True),
        ({}, False),
        ({"persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}, False),
    ],
)
def test_the_volume_snapshot_source_rule(value: dict[str, str], expected: bool) -> None:
    assert compile_rule(EXACTLY_ONE).evaluate(value) is expected


def test_transition_rules_compare_with_old_self() -> None:
    immutable = compile_rule("self == oldSelf")
    assert immutable.uses_old_self
    assert immutable.evaluate("a", "a") is True
    assert immutable.evaluate("b", "a") is False
    required_once_set = compile_rule("!has(oldSelf.x) || has(self.x)")
    assert required_once_set.evaluate({}, {}) is True
    assert required_once_set.evaluate({}, {"x": 1}) is False
    assert not compile_rule("size(self) > 0").uses_old_self


def test_escaped_property_names() -> None:
    rule = compile_rule("has(self.name) && has(self.__namespace__)")
    assert rule.evaluate({"name": "a", "namespace": "b"}) is True
    assert rule.evaluate({"name": "a"}) is False
    assert unescape_property("__dot__a__dash__b") == ".a-b"


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("size(self) > 0", "", False),
        ("self.size() <= 3", [1, 2, 3], True),
        ("self.startsWith('vm-') && self.endsWith('x')", "vm-x", True),
        ("self.matches('^[a-z]+$')", "abc1", False),
        ("self.all(x, x > 0)", [1, 2], True),
        ("self.exists(x, x == 'b')", ["a", "b"], True),
        ("self.exists_one(x, x == 'a')", ["a", "a"], False),
        ("self.a + self.b == 5", {"a": 2, "b": 3}, True),
        ("self.a / 2 == 1", {"a": 3}, True),
        ("'Retain' in self", ["Delete", "Retain"], True),
        ("self.phase == 'Failed' ? has(self.error) : true", {"phase": "Failed"}, False),
        ("self.x[1] == 'b'", {"x": ["a", "b"]}, True),
        ("self['k'] == 1", {"k": 1}, True),
        ("true == 1", None, False),
    ],
)
def test_expressions(rule: str, value: object, expected: bool) -> None:
    assert compile_rule(rule).evaluate(value) is expected


def test_or_absorbs_an_error_on_the_other_side() -> None:
    # cel-go's || is commutative: `true` wins over a missing key on either side.
    assert compile_rule("self.missing == 1 || true").evaluate({}) is True
    assert compile_rule("false && self.missing == 1").evaluate({}) is False
    with pytest.raises(CelEvalError):
        compile_rule("self.missing == 1 || false").evaluate({})


def test_old_self_is_unavailable_on_create() -> None:
    with pytest.raises(CelEvalError):
        compile_rule("self == oldSelf").evaluate("a", MISSING)


@pytest.mark.parametrize("rule", ["self.quantity().isGreaterThan(1)", "self ~ 1", "has(self)"])
def test_unsupported_rules_are_refused_at_compile_time(rule: str) -> None:
    with pytest.raises(CelUnsupported):
        compile_rule(rule)
