"""Step conditions in the GitHub Actions expression syntax, parsed by lark and interpreted here.

lark is a maintained parser library: the grammar below admits only the operators of SPEC §4, and
the interpreter knows only our four status functions, ``steps.<id>.outcome`` and ``vars.NAME``, so
nothing in a plan can reach Python (no ``eval``). A general-purpose evaluator such as CEL would need
the text rewritten first (GitHub's ``'it''s'`` quoting, case-insensitive ``==``), which we avoid.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr ("||" and_expr)*
?and_expr: not_expr ("&&" not_expr)*
?not_expr: "!" not_expr -> not_
         | comparison
?comparison: atom (COMPARE atom)?
?atom: call
     | reference
     | STRING_SINGLE -> single
     | STRING_DOUBLE -> double
     | NUMBER -> number
     | "true" -> true
     | "false" -> false
     | "null" -> null
     | "(" or_expr ")"
call: NAME "(" ")"
reference: NAME (("." NAME) | ("[" (STRING_SINGLE | STRING_DOUBLE) "]"))*
COMPARE: "==" | "!="
NAME: /[A-Za-z_][A-Za-z0-9_-]*/
STRING_SINGLE: /'(?:[^']|'')*'/
STRING_DOUBLE: /"(?:[^"\\]|\\.)*"/
NUMBER: /-?\d+(\.\d+)?/
%import common.WS
%ignore WS
"""

STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")
Value = str | float | bool | None


class ConditionError(ValueError):
    """A condition that cannot be parsed or names something that does not exist."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position  # 0-based column in the expression

    def __str__(self) -> str:
        where = f" at column {self.position + 1}" if self.position is not None else ""
        return f"{self.message}{where}"


class ConditionContext(Protocol):
    """What a condition can see when the core evaluates it."""

    @property
    def dependencies_ok(self) -> bool: ...
    @property
    def any_failed(self) -> bool: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def outcomes(self) -> Mapping[str, str]: ...
    @property
    def variables(self) -> Mapping[str, str]: ...


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True)


@dataclass(frozen=True)
class Condition:
    """A compiled condition: evaluate it as often as needed, it is parsed once."""

    text: str
    uses_status_function: bool
    step_refs: frozenset[str]
    var_refs: frozenset[str]
    _tree: Tree[Token] = field(repr=False, compare=False)

    def evaluate(self, ctx: ConditionContext) -> bool:
        """GitHub's rule: without a status function, ``success() && (expr)`` is what runs."""
        value = _truthy(_evaluate(self._tree, ctx))
        if not self.uses_status_function:
            return value and ctx.dependencies_ok and not ctx.cancelled
        return value


def _unquote(token: Token, tree_name: str) -> str:
    text = str(token)
    if tree_name == "single" or text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return text[1:-1].encode().decode("unicode_escape")


def _reference_parts(tree: Tree[Token]) -> list[tuple[str, int]]:
    parts = []
    for child in tree.children:
        assert isinstance(child, Token)
        value = _unquote(child, "") if child.type.startswith("STRING") else str(child)
        parts.append((value, (child.column or 1) - 1))
    return parts


def _truthy(value: Value) -> bool:
    return value not in (None, False, "", 0, 0.0)


def _equal(left: Value, right: Value) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()  # GitHub compares strings ignoring case
    return left == right


def _evaluate(node: Tree[Token] | Token, ctx: ConditionContext) -> Value:
    if isinstance(node, Token):  # pragma: no cover - the grammar wraps every leaf
        raise ValueError(f"unexpected token {node!r}")
    kind = node.data
    if kind == "or_expr":
        return any(_truthy(_evaluate(child, ctx)) for child in node.children if isinstance(child, Tree))
    if kind == "and_expr":
        return all(_truthy(_evaluate(child, ctx)) for child in node.children if isinstance(child, Tree))
    if kind == "not_":
        (operand,) = node.children
        assert isinstance(operand, Tree)
        return not _truthy(_evaluate(operand, ctx))
    if kind == "comparison":
        left, operator, right = node.children
        assert isinstance(left, Tree) and isinstance(right, Tree)
        same = _equal(_evaluate(left, ctx), _evaluate(right, ctx))
        return same if str(operator) == "==" else not same
    if kind == "call":
        name = str(node.children[0])
        if name == "success":
            return ctx.dependencies_ok and not ctx.cancelled
        if name == "failure":
            return ctx.any_failed
        if name == "cancelled":
            return ctx.cancelled
        return True  # always()
    if kind == "reference":
        parts = [p for p, _ in _reference_parts(node)]
        if parts[0] == "vars":
            return ctx.variables.get(parts[1], "")
        return ctx.outcomes.get(parts[1], "")  # steps.<id>.outcome / .conclusion
    if kind in ("single", "double"):
        token = node.children[0]
        assert isinstance(token, Token)
        return _unquote(token, kind)
    if kind == "number":
        return float(str(node.children[0]))
    return {"true": True, "false": False, "null": None}[kind]


def _suggest(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def compile_condition(
    text: str, *, step_ids: Collection[str] | None = None, variables: Collection[str] | None = None
) -> Condition:
    """Parse ``text`` once and check every name in it; raises ``ConditionError`` with a position."""
    try:
        tree = _parser().parse(text)
    except UnexpectedEOF:
        raise ConditionError("the expression ends too early", len(text)) from None
    except UnexpectedCharacters as error:
        raise ConditionError(f"unexpected {error.char!r}", error.column - 1) from None
    except UnexpectedToken as error:
        token = error.token
        if token.type == "$END":
            raise ConditionError("the expression ends too early", len(text)) from None
        raise ConditionError(f"unexpected {str(token)!r}", (token.column or 1) - 1) from None
    except UnexpectedInput as error:  # pragma: no cover - the three above are all lark raises here
        raise ConditionError("cannot parse the expression", getattr(error, "column", 1) - 1) from None
    uses_status = False
    step_refs: set[str] = set()
    var_refs: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "call":
            token = node.children[0]
            assert isinstance(token, Token)
            if str(token) not in STATUS_FUNCTIONS:
                known = ", ".join(f"{f}()" for f in STATUS_FUNCTIONS)
                raise ConditionError(f"unknown function '{token}()'; conditions know {known}", (token.column or 1) - 1)
            uses_status = True
        elif node.data == "reference":
            parts = _reference_parts(node)
            root, column = parts[0]
            if root == "steps":
                if len(parts) != 3 or parts[2][0] not in ("outcome", "conclusion"):
                    raise ConditionError("write a step's outcome as steps.<id>.outcome", column)
                step_id = parts[1][0]
                if step_ids is not None and step_id not in step_ids:
                    raise ConditionError(f"unknown step '{step_id}'{_suggest(step_id, step_ids)}", parts[1][1])
                step_refs.add(step_id)
            elif root == "vars":
                if len(parts) != 2:
                    raise ConditionError("write a variable as vars.NAME", column)
                name = parts[1][0]
                if variables is not None and name not in variables:
                    raise ConditionError(f"unknown variable '{name}'{_suggest(name, variables)}", parts[1][1])
                var_refs.add(name)
            else:
                raise ConditionError(f"unknown name '{root}'; conditions know steps.<id>.outcome and vars.NAME", column)
    return Condition(text, uses_status, frozenset(step_refs), frozenset(var_refs), tree)
