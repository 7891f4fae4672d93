"""Step conditions in GitHub Actions' expression syntax: parse once into our own nodes, evaluate per run.

We parse with lark rather than cel-python because lark is already a dependency (cel-python 0.5 would
add lark plus pendulum, PyYAML, jmespath and the native google-re2) and CEL's syntax differs from
GitHub's exactly where users notice (``'it''s'`` quoting, case-insensitive ``==``, ``steps.my-step``),
which would mean rewriting the text before CEL sees it. The evaluator is sandboxed by construction: the
grammar admits only literals, ``!``, ``==``, ``!=``, ``&&``, ``||``, parentheses, calls and dotted or
``['...']`` names, and the nodes below know only the four status functions, ``steps.<id>.outcome``
and ``vars.NAME``; no ``eval``, no attribute access, no loops.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

# Precedence as GitHub documents it: `!` binds tighter than `==`/`!=`, which bind tighter than `&&`,
# then `||`; so `!a == b` is `(!a) == b`. KEY (what may follow a dot) is wider than NAME so that
# `steps.1st.outcome` and `steps.true.outcome` work: lark's contextual lexer only tries KEY there.
GRAMMAR = r"""
?start: or_test
?or_test: and_test (_OR and_test)*
?and_test: comparison (_AND comparison)*
?comparison: unary (COMPARE unary)*
?unary: _BANG unary -> negation
      | atom
?atom: STRING -> string
     | NUMBER -> number
     | "true" -> true
     | "false" -> false
     | "null" -> null
     | NAME "(" [arguments] ")" -> call
     | NAME ("." KEY | "[" STRING "]")* -> reference
     | "(" or_test ")"
arguments: or_test ("," or_test)*

_OR: "||"
_AND: "&&"
_BANG: "!"
COMPARE: "==" | "!="
NAME: /[A-Za-z_][A-Za-z0-9_-]*/
KEY: /[A-Za-z0-9_-]+/
STRING: /'(?:[^']|'')*'/ | /"(?:[^"\\]|\\.)*"/
NUMBER: /0x[0-9A-Fa-f]+/ | /-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/
%ignore /[ \t\r\n]+/
"""

STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")
ROOTS = ("steps", "vars")
STEP_PROPERTIES = ("outcome", "conclusion")  # equal here: `continue-on-error` has no twin in our plans
MAX_DEPTH = 100  # evaluation recurses once per level; no real condition nests this deep

Value = str | float | bool | None
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9A-Fa-f]+")


class ConditionError(ValueError):
    """A condition that does not parse, or names a function, property, step or variable that does not exist."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position  # 0-based offset into the expression text

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} at column {self.position + 1}"  # users count columns from 1


@dataclass(frozen=True, slots=True)
class ConditionContext:
    """What a condition sees when all the dependencies of its step have ended."""

    dependencies_ok: bool  # every transitive dependency succeeded (or failed under on_failure=continue)
    any_failed: bool  # some transitive dependency failed
    cancelled: bool  # the run was aborted or interrupted
    outcomes: Mapping[str, str]  # step id -> 'success' | 'failure' | 'skipped' | 'cancelled', ended steps only
    variables: Mapping[str, str]


# -- values, with GitHub's coercions (actions/runner ExpressionUtility: AbstractEqual, ConvertToNumber) --


def _truthy(value: Value) -> bool:
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


class _Node:
    __slots__ = ()

    def value(self, ctx: ConditionContext) -> Value:
        raise NotImplementedError

    def children(self) -> tuple[_Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class _Literal(_Node):
    constant: Value

    def value(self, ctx: ConditionContext) -> Value:
        return self.constant


@dataclass(frozen=True, slots=True)
class _Not(_Node):
    operand: _Node

    def value(self, ctx: ConditionContext) -> Value:
        return not _truthy(self.operand.value(ctx))

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class _And(_Node):
    operands: tuple[_Node, ...]

    def value(self, ctx: ConditionContext) -> Value:
        # GitHub's && yields the first falsy operand (else the last), so `vars.X && 'y'` is a value.
        result: Value = None
        for operand in self.operands:
            result = operand.value(ctx)
            if not _truthy(result):
                break
        return result

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class _Or(_Node):
    operands: tuple[_Node, ...]

    def value(self, ctx: ConditionContext) -> Value:
        # GitHub's || yields the first truthy operand (else the last): `(vars.X || 'main') == 'main'`.
        result: Value = None
        for operand in self.operands:
            result = operand.value(ctx)
            if _truthy(result):
                break
        return result

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class _Compare(_Node):
    left: _Node
    negated: bool  # `!=`
    right: _Node

    def value(self, ctx: ConditionContext) -> Value:
        return _equal(self.left.value(ctx), self.right.value(ctx)) is not self.negated

    def children(self) -> tuple[_Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class _Call(_Node):
    name: str
    arguments: tuple[_Node, ...]
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

    def children(self) -> tuple[_Node, ...]:
        return self.arguments


@dataclass(frozen=True, slots=True)
class _Reference(_Node):
    parts: tuple[str, ...]  # ('steps', id, 'outcome') or ('vars', NAME), as checked by compile_condition
    positions: tuple[int, ...]

    def value(self, ctx: ConditionContext) -> Value:
        # Lookups in plain mappings only: `vars.__class__` is a variable name, never an attribute.
        if self.parts[0] == "vars":
            return ctx.variables.get(self.parts[1], "")
        return ctx.outcomes.get(self.parts[1], "")  # a step that has not ended has no outcome yet


def _unquote(text: str) -> str:
    if text[0] == "'":
        return text[1:-1].replace("''", "'")  # GitHub's only escape
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)  # a backslash keeps the next character


class _Build(Transformer[Token, _Node]):
    """Called by the LALR parser as it reduces, so no lark tree is ever built."""

    def or_test(self, children: list[_Node]) -> _Node:
        return _Or(tuple(children))

    def and_test(self, children: list[_Node]) -> _Node:
        return _And(tuple(children))

    def comparison(self, children: list[_Node | Token]) -> _Node:
        node = children[0]
        for operator, right in zip(children[1::2], children[2::2], strict=True):  # left-associative, as GitHub
            assert isinstance(node, _Node) and isinstance(right, _Node)
            node = _Compare(node, operator == "!=", right)
        assert isinstance(node, _Node)
        return node

    def negation(self, children: list[_Node]) -> _Node:
        return _Not(children[0])

    def string(self, children: list[Token]) -> _Node:
        return _Literal(_unquote(str(children[0])))

    def number(self, children: list[Token]) -> _Node:
        text = str(children[0])
        return _Literal(float(int(text, 16)) if text.startswith("0x") else float(text))

    def true(self, children: list[Token]) -> _Node:
        return _Literal(True)

    def false(self, children: list[Token]) -> _Node:
        return _Literal(False)

    def null(self, children: list[Token]) -> _Node:
        return _Literal(None)

    def arguments(self, children: list[_Node]) -> tuple[_Node, ...]:
        return tuple(children)

    def call(self, children: list[Token | tuple[_Node, ...] | None]) -> _Node:
        name, arguments = children  # arguments is None for `name()`: lark's maybe_placeholders
        assert isinstance(name, Token) and not isinstance(arguments, Token)
        return _Call(str(name), arguments or (), _offset(name))

    def reference(self, children: list[Token]) -> _Node:
        parts = tuple(_unquote(str(t)) if t.type == "STRING" else str(t) for t in children)
        return _Reference(parts, tuple(_offset(t) for t in children))


def _offset(token: Token) -> int:
    return token.start_pos if token.start_pos is not None else 0


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # No `cache=True`: it writes a file, and the core does no I/O; building the parser takes ~30 ms once.
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", transformer=_Build())


# -- compiling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition; evaluating it walks our own nodes only."""

    text: str
    uses_status_function: bool
    step_refs: frozenset[str]
    var_refs: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, ctx: ConditionContext) -> bool:
        """Whether the step runs, with GitHub's semantics.

        Without a status function in the text, ``success()`` is implied: the result is
        ``success() && expr``. ``success()`` is ``ctx.dependencies_ok and not ctx.cancelled``,
        ``failure()`` is ``ctx.any_failed``, ``cancelled()`` is ``ctx.cancelled``, ``always()`` is true.
        ``steps.X.outcome`` of a step that has not ended is ``''``, and so is ``vars.NAME`` of an
        undefined name. The final value is true unless it is ``false``, ``0``, ``''`` or ``null``.
        """
        if not self.uses_status_function and not (ctx.dependencies_ok and not ctx.cancelled):
            return False
        return _truthy(self._root.value(ctx))


def _did_you_mean(name: str, known: Collection[str], otherwise: str = "", suffix: str = "") -> str:
    """`` (did you mean 'x'?)`` for a close match, else `` (otherwise)`` when given."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return f" (did you mean '{close[0]}{suffix}'?)"
    return f" ({otherwise})" if otherwise else ""


def _parse(text: str) -> _Node:
    if not text.strip():
        raise ConditionError("the condition is empty; write always() to run the step whatever happens", None)
    try:
        root = _parser().parse(text)
    except UnexpectedCharacters as error:
        position = error.pos_in_stream or 0
        char = text[position]
        if char in "'\"":
            raise ConditionError("unterminated string starting", position) from None
        if char == ":":  # legal in our step ids, not in a dotted path
            message = "unexpected ':' (a step id with ':' is written steps['id'].outcome)"
            raise ConditionError(message, position) from None
        raise ConditionError(f"unexpected {char!r}", position) from None
    except UnexpectedToken as error:
        token = error.token
        if token.type == "$END":
            raise ConditionError("the expression ends too early", len(text)) from None
        shown = f"string {token}" if token.type == "STRING" else repr(str(token))
        raise ConditionError(f"unexpected {shown}", _offset(token)) from None
    except UnexpectedEOF:  # pragma: no cover - LALR reports the end as an UnexpectedToken($END)
        raise ConditionError("the expression ends too early", len(text)) from None
    except UnexpectedInput as error:  # pragma: no cover - the three above are all lark's LALR raises
        raise ConditionError(f"cannot parse the expression: {error}", None) from None
    assert isinstance(root, _Node)
    return root


def _check_call(node: _Call) -> None:
    if node.name not in STATUS_FUNCTIONS:
        known = "conditions know " + ", ".join(f"{f}()" for f in STATUS_FUNCTIONS)
        hint = _did_you_mean(node.name, STATUS_FUNCTIONS, known, suffix="()")
        raise ConditionError(f"unknown function '{node.name}()'{hint}", node.position)
    if node.arguments:
        raise ConditionError(f"{node.name}() takes no arguments", node.position)


def _check_step(node: _Reference, step_ids: Collection[str] | None) -> str:
    parts, positions = node.parts, node.positions
    if len(parts) == 1:
        raise ConditionError("write a step's outcome as steps.<id>.outcome", positions[0])
    step_id = parts[1]
    if len(parts) == 3 and parts[2] in STEP_PROPERTIES:
        if step_ids is not None and step_id not in step_ids:
            raise ConditionError(f"unknown step '{step_id}'{_did_you_mean(step_id, step_ids)}", positions[1])
        return step_id
    # Our step ids may contain '.', which a dotted path cannot tell from a property.
    for end in range(3, len(parts)):
        dotted = ".".join(parts[1:end])
        if step_ids is not None and dotted in step_ids:
            raise ConditionError(f"write steps['{dotted}'].outcome for a step id with '.'", positions[1])
    if len(parts) == 2:
        raise ConditionError(f"steps.{step_id} is not a value; write steps.{step_id}.outcome", positions[0])
    prop = parts[2]
    if len(parts) > 3 and prop in STEP_PROPERTIES:
        raise ConditionError(f"unexpected '{parts[3]}' after steps.{step_id}.{prop}", positions[3])
    hint = _did_you_mean(prop, STEP_PROPERTIES, "conditions read steps.<id>.outcome")
    raise ConditionError(f"unknown step property '{prop}'{hint}", positions[2])


def _check_variable(node: _Reference, variables: Collection[str] | None) -> str:
    parts, positions = node.parts, node.positions
    if len(parts) == 1:
        raise ConditionError("write a variable as vars.NAME", positions[0])
    if len(parts) > 2:
        raise ConditionError(f"unexpected '{parts[2]}' after vars.{parts[1]}", positions[2])
    name = parts[1]
    if variables is not None and name not in variables:
        raise ConditionError(f"unknown variable '{name}'{_did_you_mean(name, variables)}", positions[1])
    return name


def compile_condition(
    text: str, *, step_ids: Collection[str] | None = None, variables: Collection[str] | None = None
) -> Condition:
    """Parse ``text`` once and check every name in it.

    Raises ``ConditionError`` (with the position) on a syntax error, an unknown function, a step
    property other than ``outcome``/``conclusion``, a root name other than ``steps`` and ``vars``,
    and, when ``step_ids``/``variables`` are given, a step id or variable name not among them.
    """
    root = _parse(text)
    uses_status = False
    step_refs: set[str] = set()
    var_refs: set[str] = set()
    stack: list[tuple[_Node, int]] = [(root, 1)]
    while stack:  # iterative, so a hostile nesting depth is an error message, not a RecursionError
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConditionError(f"the expression nests deeper than {MAX_DEPTH} levels", None)
        if isinstance(node, _Call):
            _check_call(node)
            uses_status = True
        elif isinstance(node, _Reference):
            if node.parts[0] == "steps":
                step_refs.add(_check_step(node, step_ids))
            elif node.parts[0] == "vars":
                var_refs.add(_check_variable(node, variables))
            else:
                root_name = node.parts[0]
                if root_name in STATUS_FUNCTIONS:
                    hint = f" (did you mean '{root_name}()'?)"
                else:
                    hint = _did_you_mean(root_name, ROOTS, "conditions read steps.<id>.outcome and vars.NAME")
                raise ConditionError(f"unknown name '{root_name}'{hint}", node.positions[0])
        stack.extend((child, depth + 1) for child in reversed(node.children()))
    return Condition(text, uses_status, frozenset(step_refs), frozenset(var_refs), root)
