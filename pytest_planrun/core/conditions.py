"""Step conditions in GitHub Actions' expression syntax: parse once into our own nodes, check every name
in them here, evaluate per run.

We parse with lark rather than cel-python because lark is already a dependency (cel-python 0.5 would
add lark plus pendulum, PyYAML, jmespath and the native google-re2) and CEL's syntax differs from
GitHub's exactly where users notice (``'it''s'`` quoting, case-insensitive ``==``, ``steps.my-step``),
which would mean rewriting the text before CEL sees it. The evaluator is sandboxed by construction: the
grammar (``condition_grammar.py``) admits only literals, ``!``, ``==``, ``!=``, ``&&``, ``||``,
parentheses, calls and dotted or ``['...']`` names, and the nodes (``condition_nodes.py``) know only
the four status functions, ``steps.<id>.outcome`` and ``vars.NAME``; no ``eval``, no attribute
access, no loops.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field

from .condition_grammar import ConditionError, parse
from .condition_nodes import Call, ConditionContext, Node, Reference, truthy

__all__ = ["MAX_DEPTH", "Condition", "ConditionContext", "ConditionError", "compile_condition"]

STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")
ROOTS = ("steps", "vars")
STEP_PROPERTIES = ("outcome", "conclusion")  # equal here: `continue-on-error` has no twin in our plans
MAX_DEPTH = 100  # evaluation recurses once per level; no real condition nests this deep


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition; evaluating it walks our own nodes only."""

    text: str
    uses_status_function: bool
    step_refs: frozenset[str]
    var_refs: frozenset[str]
    _root: Node = field(repr=False, compare=False)

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
        return truthy(self._root.value(ctx))


def _did_you_mean(name: str, known: Collection[str], otherwise: str = "", suffix: str = "") -> str:
    """`` (did you mean 'x'?)`` for a close match, else `` (otherwise)`` when given."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return f" (did you mean '{close[0]}{suffix}'?)"
    return f" ({otherwise})" if otherwise else ""


def _check_call(node: Call) -> None:
    if node.name not in STATUS_FUNCTIONS:
        known = "conditions know " + ", ".join(f"{f}()" for f in STATUS_FUNCTIONS)
        hint = _did_you_mean(node.name, STATUS_FUNCTIONS, known, suffix="()")
        raise ConditionError(f"unknown function '{node.name}()'{hint}", node.position)
    if node.arguments:
        raise ConditionError(f"{node.name}() takes no arguments", node.position)


def _check_step(node: Reference, step_ids: Collection[str] | None) -> str:
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


def _check_variable(node: Reference, variables: Collection[str] | None) -> str:
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
    root = parse(text)
    uses_status = False
    step_refs: set[str] = set()
    var_refs: set[str] = set()
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:  # iterative, so a hostile nesting depth is an error message, not a RecursionError
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConditionError(f"the expression nests deeper than {MAX_DEPTH} levels", None)
        if isinstance(node, Call):
            _check_call(node)
            uses_status = True
        elif isinstance(node, Reference):
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
