"""Condition expressions: GitHub Actions syntax and meaning, errors with their column."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_planrun.core.conditions import MAX_DEPTH, ConditionContext, ConditionError, compile_condition


def ctx(
    *,
    ok: bool = True,
    failed: bool = False,
    cancelled: bool = False,
    outcomes: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
) -> ConditionContext:
    return ConditionContext(ok, failed, cancelled, outcomes or {}, variables or {})


ALL_OK = ctx()
AFTER_FAILURE = ctx(ok=False, failed=True)
CONTINUED = ctx(ok=True, failed=True)  # a dependency failed under on_failure=continue
AFTER_ABORT = ctx(ok=False, failed=True, cancelled=True)
INTERRUPTED = ctx(ok=True, cancelled=True)  # Ctrl-C while the dependencies had all succeeded
CONTEXTS = [ALL_OK, AFTER_FAILURE, CONTINUED, AFTER_ABORT, INTERRUPTED]
IDS = ["build", "my-step", "lint.py", "unit:fast"]
VARS = ["BRANCH", "DEPLOY", "EMPTY"]


def check(text: str, context: ConditionContext = ALL_OK) -> bool:
    return compile_condition(text, step_ids=IDS, variables=VARS).evaluate(context)


def error_of(text: str) -> ConditionError:
    __tracebackhide__ = True
    with pytest.raises(ConditionError) as info:
        compile_condition(text, step_ids=IDS, variables=VARS)
    return info.value


# -- status functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ALL_OK, AFTER_FAILURE, CONTINUED, AFTER_ABORT, INTERRUPTED
        ("success()", [True, False, True, False, False]),
        ("failure()", [False, True, True, True, False]),
        ("always()", [True, True, True, True, True]),
        ("cancelled()", [False, False, False, True, True]),
        ("!cancelled()", [True, True, True, False, False]),
        ("failure() || cancelled()", [False, True, True, True, True]),
        ("success() && !failure()", [True, False, False, False, False]),
    ],
)
def test_status_functions_in_each_context(text: str, expected: list[bool]) -> None:
    condition = compile_condition(text)
    assert condition.uses_status_function
    assert [condition.evaluate(c) for c in CONTEXTS] == expected


def test_success_is_implied_without_a_status_function() -> None:
    condition = compile_condition("vars.BRANCH == 'main'")
    assert not condition.uses_status_function
    on_main = {"BRANCH": "main"}
    assert condition.evaluate(ctx(variables=on_main))
    assert condition.evaluate(ctx(failed=True, variables=on_main))  # failed under `continue`: still clean
    assert not condition.evaluate(ctx(ok=False, failed=True, variables=on_main))
    assert not condition.evaluate(ctx(cancelled=True, variables=on_main))
    assert not compile_condition("true").evaluate(AFTER_FAILURE)
    assert compile_condition("always() && true").evaluate(AFTER_FAILURE)


# -- values and comparisons ------------------------------------------------------------------------


OUTCOMES = {"build": "failure", "my-step": "success", "lint.py": "skipped", "unit:fast": "cancelled"}


@pytest.mark.parametrize(
    "text",
    [
        "steps.build.outcome == 'failure'",
        "steps.build.conclusion == 'failure'",
        "steps.build.outcome == 'FAILURE'",  # GitHub compares strings ignoring case
        "steps.my-step.outcome == 'success'",
        "steps['lint.py'].outcome == 'skipped'",
        'steps["unit:fast"].outcome == "cancelled"',
        "steps['build']['outcome'] == 'failure'",
        "steps.build.outcome == 'failure' && steps.my-step.outcome == 'success'",
    ],
)
def test_step_outcomes(text: str) -> None:
    assert check(text, ctx(outcomes=OUTCOMES))
    assert not check(text, ctx(outcomes={}))  # no step has ended: every outcome is ''
    assert check(text.replace("==", "!="), ctx(outcomes={}))


def test_the_outcome_of_a_step_that_has_not_ended_is_empty() -> None:
    assert check("steps.build.outcome == ''")
    assert check("!steps.build.outcome")
    refs = compile_condition("steps.build.outcome == '' || steps['lint.py'].outcome == 'x'")
    assert refs.step_refs == frozenset({"build", "lint.py"})
    assert refs.var_refs == frozenset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vars.BRANCH == 'main'", True),
        ("vars.BRANCH == 'MAIN'", True),
        ("vars.BRANCH != 'Main'", False),
        ("vars.DEPLOY == 'yes'", False),
        ("vars.DEPLOY == 'Ÿes'", True),  # casefold, not ASCII-only lowering
        ("vars.UNDEFINED == ''", True),
        ("vars.EMPTY", False),
        ("vars.BRANCH", True),
        ("(vars.EMPTY || 'fallback') == 'fallback'", True),  # || yields a value, as GitHub's does
        ("vars['BRANCH'] == 'main'", True),
        ("vars.__class__ == ''", True),  # a name to look up among the variables, never an attribute
    ],
)
def test_variables_are_values_compared_ignoring_case(text: str, expected: bool) -> None:
    variables = {"BRANCH": "Main", "DEPLOY": "ÿES", "EMPTY": ""}
    assert compile_condition(text).evaluate(ctx(variables=variables)) is expected


def test_a_variable_value_is_never_read_as_an_expression() -> None:
    condition = compile_condition("vars.BRANCH == 'main'")
    assert not condition.evaluate(ctx(variables={"BRANCH": "x' || 'a' == 'a"}))
    assert not condition.evaluate(ctx(variables={"BRANCH": "always()"}))
    assert condition.var_refs == frozenset({"BRANCH"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'it''s' == \"it's\"", True),
        ("'' == \"\"", True),
        ("'''' == \"'\"", True),
        ('"say \\"hi\\"" == \'say "hi"\'', True),
        ("\"back\\\\slash\" == 'back\\slash'", True),
        ("'a' == 'b'", False),
        ("'é' == 'É'", True),
        ("true", True),
        ("false", False),
        ("null", False),
        ("0", False),
        ("''", False),
        ("'false'", True),  # a non-empty string is truthy, whatever it says
        ("1.5", True),
        ("-0.0", False),
        ("0x10 == 16", True),
        ("'16' == 16", True),  # mixed kinds compare as numbers, as GitHub does
        ("' 2 ' == 2", True),
        ("'abc' == 0", False),  # NaN equals nothing
        ("'abc' != 0", True),
        ("'' == 0", True),
        ("null == 0", True),
        ("null == ''", True),
        ("null == null", True),
        ("true == 1", True),
        ("true == 'true'", False),  # 1 vs NaN
        ("false == ''", True),
        ("-2.5e1 == '-25'", True),
    ],
)
def test_literals_and_github_equality(text: str, expected: bool) -> None:
    assert check(text) is expected


# -- operators -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true || false && false", True),  # && binds tighter than ||
        ("(true || false) && false", False),
        ("false && false || true", True),
        ("!false && false", False),  # ! binds tighter than &&
        ("!(false && false)", True),
        ("!!true", True),
        ("!'' == true", True),  # ! binds tighter than ==, as GitHub documents: (!'') == true
        ("!('' == true)", True),
        ("!'x' == true", False),
        ("1 == 1 == true", True),  # left-associative: (1 == 1) == true
        ("true == false || true", True),  # == binds tighter than ||
        ("((((true))))", True),
        ("  true\n&&\ttrue  ", True),
    ],
)
def test_precedence_and_parentheses(text: str, expected: bool) -> None:
    assert check(text) is expected


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("success() &&", "the expression ends too early", 13),
        ("((( nonsense", "the expression ends too early", 13),
        ("success() & failure()", "unexpected '&'", 11),
        ("success() &&& failure()", "unexpected '&'", 13),
        ("vars.BRANCH = 'main'", "unexpected '='", 13),
        ("steps.build.outcome == 'x", "unterminated string starting", 24),
        ('vars.BRANCH == "main', "unterminated string starting", 16),
        ("'x' 'y'", "unexpected string 'y'", 5),
        ("success() always()", "unexpected 'always'", 11),
        ("()", "unexpected ')'", 2),
        ("foo()", "unknown function 'foo()' (conditions know success(), failure(), always(), cancelled())", 1),
        ("Success()", "unknown function 'Success()' (did you mean 'success()'?)", 1),
        ("always() && fail()", "unknown function 'fail()' (did you mean 'failure()'?)", 13),
        ("success(1)", "success() takes no arguments", 1),
        ("success", "unknown name 'success' (did you mean 'success()'?)", 1),
        ("steps.build.result", "unknown step property 'result' (conditions read steps.<id>.outcome)", 13),
        ("steps.build.outcom", "unknown step property 'outcom' (did you mean 'outcome'?)", 13),
        ("steps.build.outputs.x", "unknown step property 'outputs' (conditions read steps.<id>.outcome)", 13),
        ("steps.build.outcome.x", "unexpected 'x' after steps.build.outcome", 21),
        ("steps.build", "steps.build is not a value; write steps.build.outcome", 1),
        ("steps == ''", "write a step's outcome as steps.<id>.outcome", 1),
        ("env.X == 'y'", "unknown name 'env' (conditions read steps.<id>.outcome and vars.NAME)", 1),
        ("var.BRANCH", "unknown name 'var' (did you mean 'vars'?)", 1),
        ("vars", "write a variable as vars.NAME", 1),
        ("vars.BRANCH.length", "unexpected 'length' after vars.BRANCH", 13),
        ("true && vars.BRANC == 'x'", "unknown variable 'BRANC' (did you mean 'BRANCH'?)", 14),
        ("steps.biuld.outcome == 'success'", "unknown step 'biuld' (did you mean 'build'?)", 7),
        ("steps['my_step'].outcome", "unknown step 'my_step' (did you mean 'my-step'?)", 7),
        ("steps.lint.py.outcome", "write steps['lint.py'].outcome for a step id with '.'", 7),
        ("steps.unit:fast.outcome", "unexpected ':' (a step id with ':' is written steps['id'].outcome)", 11),
    ],
)
def test_errors_name_the_column(text: str, message: str, column: int) -> None:
    error = error_of(text)
    assert str(error) == f"{message} at column {column}"
    assert error.position == column - 1
    assert error.message == message


def test_an_empty_condition_says_so() -> None:
    error = error_of("  ")
    assert error.position is None
    assert str(error) == "the condition is empty; write always() to run the step whatever happens"


def test_unknown_steps_and_variables_are_only_errors_when_the_names_are_given() -> None:
    condition = compile_condition("steps.later.outcome == 'success' && vars.NEW == ''")
    assert condition.step_refs == frozenset({"later"})
    assert condition.var_refs == frozenset({"NEW"})
    assert "unknown step 'later'" in str(error_of("steps.later.outcome == 'success'"))
    assert str(error_of("vars.ZZZ")) == "unknown variable 'ZZZ' at column 6"  # nothing close: no guess


def test_no_python_is_reachable() -> None:
    for text in ("__import__('os')", "steps.build.outcome.__class__", "vars.X.__class__", "().__class__", "1 + 1"):
        with pytest.raises(ConditionError):
            compile_condition(text)


def test_nesting_is_bounded_by_an_error_not_a_recursion_error() -> None:
    assert check("!" * (MAX_DEPTH - 1) + "true") is ((MAX_DEPTH - 1) % 2 == 0)  # the deepest allowed
    assert "nests deeper than" in str(error_of("!" * 5000 + "true"))
    assert check("(" * 5000 + "true" + ")" * 5000)  # parentheses add no node


def test_a_compiled_condition_is_a_plain_value() -> None:
    text = "always() && steps['lint.py'].outcome == 'failure'"
    condition = compile_condition(text)
    assert condition == compile_condition(text)
    copy = pickle.loads(pickle.dumps(condition))  # the controller may hand plans to other processes
    assert copy.evaluate(ctx(outcomes={"lint.py": "failure"}))
    assert repr(condition).startswith(f"Condition(text={text!r}, uses_status_function=True")


# -- properties ------------------------------------------------------------------------------------

Expected = Callable[[bool, bool, bool, bool], bool]  # success, failure, cancelled, always -> value
LEAVES: dict[str, Expected] = {
    "success()": lambda s, f, c, a: s,
    "failure()": lambda s, f, c, a: f,
    "cancelled()": lambda s, f, c, a: c,
    "always()": lambda s, f, c, a: a,
}
OR, AND, NOT, ATOM = range(4)  # binding strength, loosest first
REDUNDANT = st.sampled_from([False, False, False, True])  # mostly parentheses only where precedence needs them


@st.composite
def status_expressions(draw: st.DrawFn, depth: int = 4) -> tuple[str, int, Expected]:
    """Text (with only the parentheses precedence needs, sometimes more), its binding and its value."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(sorted(LEAVES)))
        return name, ATOM, LEAVES[name]
    kind = draw(st.sampled_from([OR, AND, NOT]))
    left_text, left_binding, left = draw(status_expressions(depth - 1))
    left_text = wrap(left_text, left_binding < kind or draw(REDUNDANT))
    if kind == NOT:
        return f"!{left_text}", NOT, lambda *flags: not left(*flags)
    right_text, right_binding, right = draw(status_expressions(depth - 1))
    right_text = wrap(right_text, right_binding <= kind or draw(REDUNDANT))
    if kind == AND:
        return f"{left_text} && {right_text}", AND, lambda *flags: left(*flags) and right(*flags)
    return f"{left_text} || {right_text}", OR, lambda *flags: left(*flags) or right(*flags)


def wrap(text: str, parenthesise: bool) -> str:
    return f"({text})" if parenthesise else text


@given(status_expressions(), st.booleans(), st.booleans(), st.booleans())
def test_status_expressions_evaluate_like_python(
    case: tuple[str, int, Expected], ok: bool, failed: bool, cancelled: bool
) -> None:
    text, _, expected = case
    context = ctx(ok=ok, failed=failed, cancelled=cancelled)
    condition = compile_condition(text)
    assert condition.uses_status_function
    assert condition.evaluate(context) is expected(ok and not cancelled, failed, cancelled, True)


@given(st.text())
def test_any_string_round_trips_through_both_quote_styles(value: str) -> None:
    single = "'" + value.replace("'", "''") + "'"
    double = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    variables = {"X": value}
    assert compile_condition(f"vars.X == {single}").evaluate(ctx(variables=variables))
    assert compile_condition(f"{double} == vars.X").evaluate(ctx(variables=variables))


@given(st.text(alphabet="sucefailrwydtnpov.[]()'\"!=&| -_0x1:"), st.sampled_from([None, IDS]))
def test_any_text_either_compiles_or_raises_condition_error(text: str, step_ids: list[str] | None) -> None:
    try:
        condition = compile_condition(text, step_ids=step_ids)
    except ConditionError as error:
        assert error.position is None or 0 <= error.position <= len(text)
    else:
        for context in CONTEXTS:
            assert isinstance(condition.evaluate(context), bool)
