"""The condition grammar and its parser: text to condition nodes, a syntax error to a ``ConditionError``
naming the column.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .condition_nodes import And, Call, Compare, Literal, Node, Not, Or, Reference

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


def _unquote(text: str) -> str:
    if text[0] == "'":
        return text[1:-1].replace("''", "'")  # GitHub's only escape
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)  # a backslash keeps the next character


class _Build(Transformer[Token, Node]):
    """Called by the LALR parser as it reduces, so no lark tree is ever built."""

    def or_test(self, children: list[Node]) -> Node:
        return Or(tuple(children))

    def and_test(self, children: list[Node]) -> Node:
        return And(tuple(children))

    def comparison(self, children: list[Node | Token]) -> Node:
        node = children[0]
        for operator, right in zip(children[1::2], children[2::2], strict=True):  # left-associative, as GitHub
            assert isinstance(node, Node) and isinstance(right, Node)
            node = Compare(node, operator == "!=", right)
        assert isinstance(node, Node)
        return node

    def negation(self, children: list[Node]) -> Node:
        return Not(children[0])

    def string(self, children: list[Token]) -> Node:
        return Literal(_unquote(str(children[0])))

    def number(self, children: list[Token]) -> Node:
        text = str(children[0])
        return Literal(float(int(text, 16)) if text.startswith("0x") else float(text))

    def true(self, children: list[Token]) -> Node:
        return Literal(True)

    def false(self, children: list[Token]) -> Node:
        return Literal(False)

    def null(self, children: list[Token]) -> Node:
        return Literal(None)

    def arguments(self, children: list[Node]) -> tuple[Node, ...]:
        return tuple(children)

    def call(self, children: list[Token | tuple[Node, ...] | None]) -> Node:
        name, arguments = children  # arguments is None for `name()`: lark's maybe_placeholders
        assert isinstance(name, Token) and not isinstance(arguments, Token)
        return Call(str(name), arguments or (), _offset(name))

    def reference(self, children: list[Token]) -> Node:
        parts = tuple(_unquote(str(t)) if t.type == "STRING" else str(t) for t in children)
        return Reference(parts, tuple(_offset(t) for t in children))


def _offset(token: Token) -> int:
    return token.start_pos if token.start_pos is not None else 0


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # No `cache=True`: it writes a file, and the core does no I/O; building the parser takes ~30 ms once.
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", transformer=_Build())


def parse(text: str) -> Node:
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
    assert isinstance(root, Node)
    return root
