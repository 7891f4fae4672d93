"""Condition expressions: GitHub Actions syntax and meaning, errors with their column."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_planrun.core.conditions import ConditionError, compile_condition


@dataclass(frozen=True)
class Ctx:
    dependencies_ok: bool = True
    any_failed: bool = False
    cancelled: bool = False
    outcomes: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)


AFTER_FAILURE = Ctx(dependencies_ok=False, any_failed=True)
AFTER_ABORT = Ctx(dependencies_ok=False, any_failed=True, cancelled=True)


@pytest.mark.parametrize(
    ("text", "ok", "failed", "aborted"),
    [
        ("success()", True, False, False),
        ("failure()", False, True, True),
        ("always()", True, True, True),
        ("cancelled()", False, False, True),
        ("!cancelled()", True, True, False),
        ("failure() || cancelled()", False, True, True),
    ],
)
def test_status_functions(text: str, ok: bool, failed: bool, aborted: bool) -> None:
    condition = compile_condition(text)
    assert condition.uses_status_function
    assert [condition.evaluate(c) for c in (Ctx(), AFTER_FAILURE, AFTER_ABORT)] == [ok, failed, aborted]


def test_success_is_implied_without_a_status_function() -> None:
    condition = compile_condition("vars.BRANCH == 'main'")
    assert not condition.uses_status_function
    assert condition.evaluate(Ctx(variables={"BRANCH": "main"}))
    assert not condition.evaluate(Ctx(dependencies_ok=False, any_failed=True, variables={"BRANCH": "main"}))


def test_outcomes_variables_and_literals() -> None:
    ctx = Ctx(outcomes={"build": "failure", "my-step": "success", "a.b": "skipped"}, variables={"BRANCH": "Main"})
    assert compile_condition("steps.build.outcome == 'failure'").evaluate(ctx)
    assert compile_condition('steps.my-step.outcome == "success"').evaluate(ctx)
    assert compile_condition("steps['a.b'].outcome == 'skipped'").evaluate(ctx)
    assert compile_condition("steps.build.conclusion != 'success'").evaluate(ctx)
    assert compile_condition("vars.BRANCH == 'MAIN'").evaluate(ctx)  # case-insensitive, as GitHub
    assert compile_condition("'it''s' == \"it's\"").evaluate(ctx)
    assert not compile_condition("steps.unknown.outcome == 'success'").evaluate(ctx)
    assert compile_condition("!(false || null) && (true && 1 == 1)").evaluate(ctx)
    assert compile_condition("always() && steps.build.outcome == 'failure'").step_refs == frozenset({"build"})


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("success() &&", "ends too early", 13),
        ("steps.build.outcome == 'x", "unexpected", 24),
        ("foo()", "unknown function 'foo()'", 1),
        ("steps.build.result", "steps.<id>.outcome", 1),
        ("env.X == 'y'", "unknown name 'env'", 1),
        ("vars.BRANC == 'x'", "did you mean 'BRANCH'?", 6),
        ("steps.biuld.outcome == 'success'", "did you mean 'build'?", 7),
        ("success() & failure()", "unexpected", 11),
    ],
)
def test_errors_name_the_column(text: str, message: str, column: int) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(text, step_ids=["build"], variables=["BRANCH"])
    assert message in str(info.value)
    assert f"at column {column}" in str(info.value)


def test_no_python_is_reachable() -> None:
    for text in ("__import__('os')", "steps.a.outcome.__class__", "vars.X.__class__"):
        with pytest.raises(ConditionError):
            compile_condition(text)
    # a dunder is only a name to look up among the variables, never an attribute
    assert not compile_condition("vars.__class__").evaluate(Ctx())


@st.composite
def expressions(draw: st.DrawFn, depth: int = 3) -> tuple[str, bool]:
    """A random boolean expression and its value, built together from the same tree."""
    flags = {"success()": True, "failure()": False, "always()": True, "cancelled()": False}
    if depth == 0 or draw(st.booleans()):
        name = draw(st.sampled_from(sorted(flags)))
        return name, flags[name]
    kind = draw(st.sampled_from(["and", "or", "not"]))
    left, left_value = draw(expressions(depth - 1))
    if kind == "not":
        return f"!({left})", not left_value
    right, right_value = draw(expressions(depth - 1))
    if kind == "and":
        return f"({left} && {right})", left_value and right_value
    return f"({left} || {right})", left_value or right_value


@given(expressions())
def test_random_expressions_evaluate_like_python(case: tuple[str, bool]) -> None:
    text, expected = case
    assert compile_condition(text).evaluate(Ctx()) is expected
