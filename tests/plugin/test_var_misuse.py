"""A --var that no plan of the run declares or uses is a usage error with a did-you-mean."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from planhelpers import plan_doc, step

from conftest import RunPlan
from pytest_planrun.plan.load import load_plan, variable_names
from pytest_planrun.plan.variables import unknown_given

DECLARED = {"variables": {"BRANCH": {"description": "branch to merge"}, "REMOTE": "origin"}}


def test_a_typo_in_a_var_name_is_a_usage_error_naming_the_real_one(run_plan: RunPlan) -> None:
    result = run_plan([step("a", "echo", "${BRANCH}")], "--var", "BRANH=feature", plan_fields=DECLARED)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --var BRANH: no plan in this run declares or uses a variable BRANH (did you mean BRANCH?)",
            "ERROR: plan.json: field 'variables.BRANCH': variable 'BRANCH' has no value *",
        ]
    )
    assert result.stdout.str() == ""


def test_a_name_far_from_any_lists_the_plans_variables(run_plan: RunPlan) -> None:
    result = run_plan([step("a", "true")], "--var", "BRANCH=x", "--var", "ZZZ=1", plan_fields=DECLARED)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--var ZZZ: * (the plans' variables are BRANCH, REMOTE)"])
    assert "--var BRANCH" not in result.stderr.str()


def test_vars_declared_or_used_anywhere_in_any_plan_are_accepted(
    pytester: pytest.Pytester, write_plan: Callable[..., Path], mode: list[str]
) -> None:
    write_plan(
        [
            step("a", "true", condition="vars.ONLY_IN_CONDITION != 'x'"),
            step("b", "echo", "${UNDECLARED_BUT_USED}", env={"E": "${IN_ENV}"}),
        ],
        name="one.json",
        plan_fields={"variables": {"DECLARED_ONLY": "d"}},
    )
    write_plan([step("c", "echo", "${IN_SECOND_PLAN}")], name="two.json")
    given = ["ONLY_IN_CONDITION=1", "UNDECLARED_BUT_USED=2", "IN_ENV=3", "DECLARED_ONLY=4", "IN_SECOND_PLAN=5"]
    var_args = [arg for value in given for arg in ("--var", value)]
    result = pytester.runpytest_subprocess("--plan", "one.json", "--plan", "two.json", *var_args, *mode)
    result.assert_outcomes(passed=3)


def test_unknown_given_unit() -> None:
    assert unknown_given(["BRANCH"], {"BRANCH"}) == []
    assert unknown_given(["BRANH"], {"BRANCH", "REMOTE"}) == [
        "--var BRANH: no plan in this run declares or uses a variable BRANH (did you mean BRANCH?)"
    ]
    assert unknown_given(["X"], set()) == [
        "--var X: no plan in this run declares or uses a variable X (the plans have no variables)"
    ]


def test_variable_names_reads_declarations_references_and_conditions(tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    doc = plan_doc(
        [step("a", "echo", "${A}", "$${ESCAPED}", cwd="${B}", condition="vars.C == 'x'")],
        plan_fields={"variables": {"D": "d"}, "description": "uses ${E}"},
    )
    plan.write_text(json.dumps(doc))
    assert variable_names(plan) == frozenset({"A", "B", "C", "D", "E"})
    (tmp_path / "bad.json").write_text("{")
    assert variable_names(tmp_path / "bad.json") is None


def test_a_plan_loads_without_values_when_they_are_not_required(tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(plan_doc([step("a", "git", "merge", "${BRANCH}")], plan_fields=DECLARED)))
    loaded = load_plan(plan, require_values=False)
    assert loaded.steps[0].args == ("merge", "${BRANCH}")
    assert [str(p) for p in loaded.missing_values] == [
        f"{plan}: field 'variables.BRANCH': variable 'BRANCH' has no value (used in step 'a' field 'args[1]'); "
        'pass --var BRANCH=VALUE or give it a "default"'
    ]
    assert load_plan(plan, {"BRANCH": "x"}, require_values=False).missing_values == ()
