"""What a compiled condition is made of: the values GitHub's expressions compute, with its coercions,
and the only nodes a condition can hold (``conditions.py`` checks them, ``condition_grammar.py`` builds them).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

Value = str | float | bool | None
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9A-Fa-f]+")


@dataclass(frozen=True, slots=True)
class ConditionContext:
    """What a condition sees when all the dependencies of its step have ended."""

    dependencies_ok: bool  # every transitive dependency succeeded (or failed under on_failure=continue)
    any_failed: bool  # some transitive dependency failed
    cancelled: bool  # the run was aborted or interrupted
    outcomes: Mapping[str, str]  # step id -> 'success' | 'failure' | 'skipped' | 'cancelled', ended steps only
    variables: Mapping[str, str]


# -- values, with GitHub's coercions (actions/runner ExpressionUtility: AbstractEqual, ConvertToNumber) --


def truthy(value: Value) -> bool:
    if isinstance(value, float):
        return value != 0 and not math.isnan(value)
    return value not in (None, False, "")


def _to_number(value: Value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float):
        return value
    text = value.strip()
    if not text:
        return 0.0
    if _NUMBER.fullmatch(text):
        return float(int(text, 16)) if text[:2] in ("0x", "0X") else float(text)
    return math.nan  # never equal to anything, as in GitHub: '1.2.3' == 1 is false, not an error


def _equal(left: Value, right: Value) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()  # GitHub compares strings ignoring case
    if left is None and right is None:
        return True
    if isinstance(left, bool) and isinstance(right, bool):
        return left is right
    # Different kinds (or two numbers): GitHub converts both to numbers; NaN equals nothing.
    return _to_number(left) == _to_number(right)


# -- nodes: the only things a condition can do ------------------------------------------------------


class Node:
    __slots__ = ()

    def value(self, ctx: ConditionContext) -> Value:
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Literal(Node):
    constant: Value

    def value(self, ctx: ConditionContext) -> Value:
        return self.constant


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node

    def value(self, ctx: ConditionContext) -> Value:
        return not truthy(self.operand.value(ctx))

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class And(Node):
    operands: tuple[Node, ...]

    def value(self, ctx: ConditionContext) -> Value:
        # GitHub's && yields the first falsy operand (else the last), so `vars.X && 'y'` is a value.
        result: Value = None
        for operand in self.operands:
            result = operand.value(ctx)
            if not truthy(result):
                break
        return result

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Or(Node):
    operands: tuple[Node, ...]

    def value(self, ctx: ConditionContext) -> Value:
        # GitHub's || yields the first truthy operand (else the last): `(vars.X || 'main') == 'main'`.
        result: Value = None
        for operand in self.operands:
            result = operand.value(ctx)
            if truthy(result):
                break
        return result

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Compare(Node):
    left: Node
    negated: bool  # `!=`
    right: Node

    def value(self, ctx: ConditionContext) -> Value:
        return _equal(self.left.value(ctx), self.right.value(ctx)) is not self.negated

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    arguments: tuple[Node, ...]
    position: int

    def value(self, ctx: ConditionContext) -> Value:
        # compile_condition has checked the name and that there are no arguments.
        if self.name == "success":
            return ctx.dependencies_ok and not ctx.cancelled
        if self.name == "failure":
            return ctx.any_failed
        if self.name == "cancelled":
            return ctx.cancelled
        return True  # always()

    def children(self) -> tuple[Node, ...]:
        return self.arguments


@dataclass(frozen=True, slots=True)
class Reference(Node):
    parts: tuple[str, ...]  # ('steps', id, 'outcome') or ('vars', NAME), as checked by compile_condition
    positions: tuple[int, ...]

    def value(self, ctx: ConditionContext) -> Value:
        # Lookups in plain mappings only: `vars.__class__` is a variable name, never an attribute.
        if self.parts[0] == "vars":
            return ctx.variables.get(self.parts[1], "")
        return ctx.outcomes.get(self.parts[1], "")  # a step that has not ended has no outcome yet
