"""Variables: `${NAME}` substituted after parsing, value sources, undefined ones, secrets masked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from planhelpers import COMPAT

from pytest_planrun.plan import (
    LoadedPlan,
    Masker,
    PlanError,
    VariableSpec,
    find_references,
    load_plan,
    resolve_variables,
    substitute,
)

FILE = "plans/vars.json"

Load = Callable[..., LoadedPlan]


def step(step_id: str, command: str = "true", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "command": command, **fields}


def plan(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"plan_id": "P", "version": "1", "globals": {}, "steps": list(steps), **top}


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """Write a plan and load it; keyword arguments go to `load_plan` (``environ`` defaults to empty)."""

    def load(data: dict[str, Any], **kwargs: Any) -> LoadedPlan:
        path = tmp_path / "vars.json"
        path.write_text(json.dumps(data))
        kwargs.setdefault("environ", {})
        return load_plan(path, display_path=FILE, **kwargs)

    return load


def problem_lines(load: Load, data: dict[str, Any], **kwargs: Any) -> list[str]:
    __tracebackhide__ = True
    with pytest.raises(PlanError) as excinfo:
        load(data, **kwargs)
    return [str(problem) for problem in excinfo.value.problems]


# --- text ------------------------------------------------------------------------------------------


def test_find_references() -> None:
    assert find_references("${A}/${B_2}-${A} $${C} ${1D} ${E") == ["A", "B_2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("origin/${BRANCH}", "origin/main"),
        ("${BRANCH}${BRANCH}", "mainmain"),
        ("$${BRANCH}", "${BRANCH}"),  # escaped: literal, even though BRANCH is defined
        ("$$${BRANCH}", "$${BRANCH}"),
        ("$BRANCH ${HOME:-/tmp} ${ x } ${", "$BRANCH ${HOME:-/tmp} ${ x } ${"),  # not references
        ("no variables", "no variables"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, {"BRANCH": "main"}) == expected


def test_substituted_values_are_not_rescanned() -> None:
    assert substitute("${A}", {"A": "${B}", "B": "no"}) == "${B}"


def test_substitute_raises_for_an_undefined_name() -> None:
    with pytest.raises(KeyError, match="MISSING"):
        substitute("${MISSING}", {})


@given(st.text())
def test_text_without_dollar_is_unchanged(text: str) -> None:
    text = text.replace("$", "")
    assert substitute(text, {}) == text and find_references(text) == []


@given(st.text())
def test_any_value_arrives_verbatim(value: str) -> None:
    assert substitute("${V}", {"V": value}) == value


# --- in a plan -------------------------------------------------------------------------------------

AWKWARD = "a \"quoted\" \\back\\slashed ${NOT_A_VAR} $${X} 'single' with spaces"


def test_cli_value_arrives_verbatim_in_one_argument(load: Load) -> None:
    data = plan(
        step("a", "${CMD}", args=["--name", "${V}", "x=${V}"], cwd="dir/${V}", env={"E": "${V}"}),
        globals={"env": {"G": "<${V}>"}},
    )
    a = load(data, cli_vars={"V": AWKWARD, "CMD": "my tool"}).step("a")
    assert a.command == "my tool"
    assert a.args == ("--name", AWKWARD, f"x={AWKWARD}")
    assert a.cwd == f"dir/{AWKWARD}"
    assert a.env == {"G": f"<{AWKWARD}>", "E": AWKWARD}


def test_escaped_reference_is_literal_in_a_plan(load: Load) -> None:
    a = load(plan(step("a", "sh", args=["-c", "echo $${HOME}"], shell=True))).step("a")
    assert a.args == ("-c", "echo ${HOME}")


def test_only_runnable_fields_are_substituted(load: Load) -> None:
    data = plan(step("a", name="${V}", description="${V}", condition="vars.V == '${V}'", tags=["${V}"]))
    a = load(data, cli_vars={"V": "x"}).step("a")
    assert (a.name, a.condition, a.tags) == ("${V}", "vars.V == '${V}'", ("${V}",))


def test_safe_merge_takes_branch_from_var() -> None:
    loaded = load_plan(COMPAT / "safe_merge.json", {"BRANCH": "release/2.0"})
    assert loaded.step("git_merge").args == ("merge", "--no-ff", "origin/release/2.0")
    push = loaded.step("guarded_push").args
    assert "pwsh -ExecutionPolicy Bypass -File scripts/safe_pull_and_push.ps1 -Branch release/2.0" in push
    assert loaded.variables == {"BRANCH": "release/2.0"}


def test_safe_merge_without_branch_lists_where_it_is_used() -> None:
    with pytest.raises(PlanError) as excinfo:
        load_plan(COMPAT / "safe_merge.json", display_path="safe_merge.json")
    (problem,) = excinfo.value.problems
    assert str(problem) == (
        "safe_merge.json: undefined variable 'BRANCH' (used in step 'env_scan' field 'args[5]', "
        "step 'env_scan' field 'args[7]', step 'sync_health_check' field 'args[2]', "
        "step 'nested_repos_detect' field 'args[2]', step 'nested_repos_normalize' field 'args[2]', "
        "step 'nested_repos_normalize' field 'args[4]' and 10 more); "
        'pass --var BRANCH=VALUE or declare it under "variables"'
    )


# --- sources ---------------------------------------------------------------------------------------

DECLARED = {"V": {"env": "PLAN_V", "default": "from-default"}}


@pytest.mark.parametrize(
    ("cli_vars", "environ", "expected"),
    [
        ({"V": "from-cli"}, {"PLAN_V": "from-env"}, "from-cli"),
        ({}, {"PLAN_V": "from-env"}, "from-env"),
        ({}, {"PLAN_V": ""}, ""),  # set but empty is still set
        ({}, {"OTHER": "x"}, "from-default"),
    ],
    ids=["cli-first", "then-env", "empty-env", "then-default"],
)
def test_source_precedence(load: Load, cli_vars: dict[str, str], environ: dict[str, str], expected: str) -> None:
    loaded = load(plan(step("a", args=["${V}"]), variables=DECLARED), cli_vars=cli_vars, environ=environ)
    assert loaded.step("a").args == (expected,)
    assert loaded.variables["V"] == expected


def test_bare_string_is_a_default(load: Load) -> None:
    data = plan(step("a", args=["${V}"]), variables={"V": "main"})
    assert load(data).step("a").args == ("main",)
    assert load(data, cli_vars={"V": "dev"}).step("a").args == ("dev",)


def test_environ_defaults_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANRUN_TEST_V", "from-os")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan(step("a", args=["${V}"]), variables={"V": {"env": "PLANRUN_TEST_V"}})))
    assert load_plan(path).step("a").args == ("from-os",)


def test_process_environment_is_not_a_source_by_itself(load: Load) -> None:
    lines = problem_lines(load, plan(step("a", args=["${V}"])), environ={"V": "ignored"})
    assert lines == [
        f"{FILE}: undefined variable 'V' (used in step 'a' field 'args[0]'); "
        'pass --var V=VALUE or declare it under "variables"'
    ]


def test_undeclared_cli_var_is_allowed(load: Load) -> None:
    loaded = load(plan(step("a")), cli_vars={"EXTRA": "1"})
    assert loaded.variables == {"EXTRA": "1"}


def test_resolve_variables_directly() -> None:
    declared: dict[str, str | VariableSpec] = {
        "A": "a",
        "B": VariableSpec(env="B_ENV"),
        "T": VariableSpec(env="T_ENV", secret=True),
        "U": VariableSpec(description="no value anywhere"),
    }
    values, secrets = resolve_variables(declared, {"A": "cli", "X": "x"}, {"B_ENV": "b", "T_ENV": "tok"})
    assert values == {"A": "cli", "X": "x", "B": "b", "T": "tok"}
    assert secrets == ("tok",)


# --- undefined -------------------------------------------------------------------------------------


def test_one_problem_per_undefined_variable_listing_every_use(load: Load) -> None:
    data = plan(
        step("fetch", "git", args=["fetch", "origin", "${BRANCH}"]),
        step("merge", "git", args=["merge", "origin/${BRANCH}"], cwd="${REPO}", env={"T": "${TOKEN}"}),
        globals={"env": {"R": "${REPO}"}},
        variables={"TOKEN": {"env": "GH_TOKEN", "secret": True}, "NOTE": {"description": "unused, no value"}},
    )
    assert problem_lines(load, data) == [  # in order of first use
        f"{FILE}: undefined variable 'REPO' (used in field 'globals.env.R', step 'merge' field 'cwd'); "
        'pass --var REPO=VALUE or declare it under "variables"',
        f"{FILE}: undefined variable 'BRANCH' (used in step 'fetch' field 'args[2]', "
        "step 'merge' field 'args[1]'); "
        'pass --var BRANCH=VALUE or declare it under "variables"',
        f"{FILE}: field 'variables.TOKEN': variable 'TOKEN' has no value "
        "(used in step 'merge' field 'env.T'); "
        "pass --var TOKEN=VALUE or set the environment variable GH_TOKEN",
    ]


def test_declared_without_source_suggests_a_default(load: Load) -> None:
    data = plan(step("a", args=["${V}"]), variables={"V": {"description": "the version"}})
    assert problem_lines(load, data) == [
        f"{FILE}: field 'variables.V': variable 'V' has no value (used in step 'a' field 'args[0]'); "
        'pass --var V=VALUE or give it a "default"'
    ]


def test_undefined_variables_are_found_even_when_the_model_fails(load: Load) -> None:
    data = plan(step("a", args=["${V}"], retries="x"), step("b", "${W}", shell="no"), variables={"W": {"env": 5}})
    lines = problem_lines(load, data)
    assert len(lines) == 4
    assert lines[-1].startswith(f"{FILE}: undefined variable 'V' (used in step 'a' field 'args[0]')")
    assert not any("'W'" in line and "undefined" in line for line in lines)  # declared, though malformed


# --- secrets ---------------------------------------------------------------------------------------


def test_masker() -> None:
    masker = Masker(["tok", "", "token-123", "tok"])
    assert masker.secrets == ("token-123", "tok")
    assert masker.mask("Bearer token-123 and tok, tokens") == "Bearer *** and ***, ***ens"
    assert Masker([]).mask("nothing ${X}") == "nothing ${X}"
    assert Masker(["a.b"]).mask("a.b axb") == "*** axb"  # values are literal, not patterns


def test_secret_values_are_masked(load: Load) -> None:
    data = plan(
        step("a", args=["--token=${TOKEN}", "${USER}"]),
        variables={"TOKEN": {"env": "GH_TOKEN", "secret": True}, "USER": "me"},
    )
    loaded = load(data, environ={"GH_TOKEN": "s3cr3t"})
    assert loaded.step("a").args == ("--token=s3cr3t", "me")  # the runner gets the real value
    assert loaded.secret_values == ("s3cr3t",)
    assert loaded.masked_variables() == {"TOKEN": "***", "USER": "me"}
    assert loaded.masker.mask(" ".join(loaded.step("a").args)) == "--token=*** me"


def test_secret_given_with_var_is_masked_too(load: Load) -> None:
    data = plan(step("a"), variables={"TOKEN": {"secret": True}})
    loaded = load(data, cli_vars={"TOKEN": "from-cli"})
    assert loaded.masked_variables() == {"TOKEN": "***"}
    assert loaded.masker.mask("x from-cli") == "x ***"
