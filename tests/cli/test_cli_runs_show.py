"""The run's variables (secrets masked) on its ledger row, in `planrun runs` and `planrun show`, and their --json."""

from __future__ import annotations

import json
from typing import Any

import pytest
from planhelpers import step

from conftest import RunPlan
from pytest_planrun.cli import VARS_WIDTH, given_variables
from pytest_planrun.cli import main as planrun
from pytest_planrun.ledger import queries

SECRET = "hunter2-s3cret"
VARIABLES = {
    "variables": {
        "BRANCH": {"description": "branch"},
        "REMOTE": "origin",
        "TOKEN": {"secret": True},
        "NOTE": "",
    }
}


@pytest.fixture
def recorded(run_plan: RunPlan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    result = run_plan(
        [step("a", "echo", "${BRANCH}", "${REMOTE}", "${TOKEN}", "${NOTE}")],
        "--var",
        "BRANCH=feature",
        "--var",
        f"TOKEN={SECRET}",
        "--var",
        "NOTE=a b",
        plan_fields=VARIABLES,
    )
    result.assert_outcomes(passed=1)
    monkeypatch.chdir(pytester.path)  # the default ledger, .ledger/framework.db
    (run,) = queries.list_runs(pytester.path / ".ledger" / "framework.db")
    return run


def test_the_run_row_holds_the_masked_variables(recorded: dict[str, Any]) -> None:
    assert recorded["variables"] == {"BRANCH": "feature", "REMOTE": "origin", "TOKEN": "***", "NOTE": "a b"}


def test_runs_shows_the_variables_given_with_var(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["runs"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()
    assert header.split() == ["RUN", "STATE", "EXIT", "PLAN", "CREATED", "VARIABLES"]
    assert row.startswith(recorded["run_id"])
    assert row.endswith("BRANCH=feature NOTE='a b' TOKEN=***")  # REMOTE, a default, is left to `show`
    assert SECRET not in out


def test_runs_json_carries_the_variables(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["runs", "--json"]) == 0
    out = capsys.readouterr().out
    (run,) = json.loads(out)
    assert run["run_id"] == recorded["run_id"]
    assert run["variables"]["TOKEN"] == "***" and run["variables"]["BRANCH"] == "feature"
    assert SECRET not in out


def test_show_prints_every_variable(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["show", recorded["run_id"]]) == 0
    out = capsys.readouterr().out
    assert "  variables BRANCH=feature NOTE='a b' REMOTE=origin TOKEN=***\n" in out
    assert SECRET not in out
    assert planrun(["show", recorded["run_id"], "--json", "--events"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out)
    assert document["run"]["variables"]["TOKEN"] == "***"
    assert [s["step_id"] for s in document["steps"]] == ["a"]
    assert document["events"][0]["event_type"] == "run_created"
    assert SECRET not in out


def test_a_long_variables_column_is_cut() -> None:
    run = {"variables": {"A": "x" * 100, "B": "y"}, "metadata": {"planrun_given_variables": ["A"]}}
    shown = given_variables(run)
    assert len(shown) == VARS_WIDTH and shown.startswith("A=xxx") and shown.endswith("…")
    # a run recorded without the list of given names shows every variable that has a value
    assert given_variables({"variables": {"A": "1", "B": "", "C": "3"}, "metadata": {}}) == "A=1 C=3"
    assert given_variables({"variables": None, "metadata": None}) == ""
