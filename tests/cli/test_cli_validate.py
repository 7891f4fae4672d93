"""``planrun validate PLAN...``: the checks pytest makes before a run, every problem of every plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli.helpers import Planrun, write_plan
from planhelpers import step


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # plans are named as a user types them, relative to here


def test_valid_plans(planrun: Planrun) -> None:
    write_plan(Path("a.json"), [step("build", "true"), step("test", "true", depends_on=["build"])])
    write_plan(Path("b.json"), [step("only", "true")])
    result = planrun("validate", "a.json", "b.json")
    assert (result.code, result.err) == (0, "")
    assert result.lines == ["a.json: OK (2 steps)", "b.json: OK (1 steps)"]


def test_every_problem_of_every_plan_names_file_step_and_field(planrun: Planrun) -> None:
    write_plan(Path("good.json"), [step("a", "true")])
    write_plan(
        Path("bad.json"),
        [
            step("build", "true", timeout_sec=-1),
            step("test", "true", depends_on=["buidl"], dependson=[]),
            step("x", "true", depends_on=["y"]),
            step("y", "true", depends_on=["x"]),
        ],
    )
    write_plan(Path("also_bad.json"), [{"id": "a"}])
    result = planrun("validate", "bad.json", "good.json", "also_bad.json")
    assert result.code == 1
    assert result.lines == ["good.json: OK (1 steps)"]
    assert result.err.splitlines() == [
        "ERROR: bad.json: step 'build', field 'timeout_sec': must be greater than 0, got -1",
        "ERROR: bad.json: step 'test', field 'dependson': unknown field (did you mean 'depends_on'?)",
        "ERROR: bad.json: step 'test', field 'depends_on': unknown step 'buidl' (did you mean 'build'?)",
        "ERROR: bad.json: steps: cycle x -> y -> x",
        "ERROR: also_bad.json: step 'a', field 'command': required field is missing",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "ERROR: plan.json: plan file not found"),
        ('{\n  "plan_id": "P"\n  "version": "1"\n}\n', "ERROR: plan.json: invalid JSON at line 3, column 3: "),
        ("[]", "ERROR: plan.json: the plan must be a JSON object, got a list"),
    ],
    ids=["missing", "invalid-json", "not-an-object"],
)
def test_a_file_that_is_no_plan(planrun: Planrun, text: str | None, error: str) -> None:
    if text is not None:
        Path("plan.json").write_text(text)
    result = planrun("validate", "plan.json")
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(error) and len(result.err.splitlines()) == 1


def test_variables(planrun: Planrun) -> None:
    write_plan(Path("plan.json"), [step("a", "echo", "${BRANCH}")])
    undefined = planrun("validate", "plan.json")  # a missing value is a note, unless --strict
    assert (undefined.code, undefined.lines) == (0, ["plan.json: OK (1 steps)"])
    assert undefined.err.startswith("note: plan.json: undefined variable 'BRANCH' (used in step 'a' field 'args[0]')")
    strict = planrun("validate", "plan.json", "--strict")
    assert (strict.code, strict.out) == (1, "")
    assert strict.err.startswith("ERROR: plan.json: undefined variable 'BRANCH' (used in step 'a' field 'args[0]')")
    assert planrun("validate", "plan.json", "--var", "BRANCH=main").lines == ["plan.json: OK (1 steps)"]


def test_bad_arguments(planrun: Planrun) -> None:
    write_plan(Path("plan.json"), [step("a", "true")])
    no_plan = planrun("validate")
    assert no_plan.code == 2 and "usage: planrun" in no_plan.err
    bad_var = planrun("validate", "plan.json", "--var", "no-equals-sign")
    assert (bad_var.code, bad_var.out) == (1, "")
    assert bad_var.err == "planrun: --var expects NAME=VALUE, got 'no-equals-sign'\n"
