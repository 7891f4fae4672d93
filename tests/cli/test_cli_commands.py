"""The planrun command: help, shipped plans, checking and drawing plans without values, pasteable commands."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from planhelpers import plan_doc, step

from pytest_planrun import demo
from pytest_planrun.cli import main as planrun

NEEDS_BRANCH = {"variables": {"BRANCH": {"description": "branch"}, "REMOTE": "origin"}}


@pytest.fixture
def plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "plan.json"
    steps = [step("fetch", "git", "fetch", "${REMOTE}", "${BRANCH}"), step("test", "true", depends_on=["fetch"])]
    path.write_text(json.dumps(plan_doc(steps, plan_fields=NEEDS_BRANCH)))
    return path


def test_help_starts_with_the_pytest_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_planrun.cli", "--help"], capture_output=True, text=True, check=True
    )
    usage, first, pytest_usage, rest = done.stdout.split("\n\n", 3)
    assert usage.startswith("usage: planrun ")
    assert first == "Plans run through pytest:"  # the first thing said, right under the usage line
    assert pytest_usage == "  pytest --plan PLAN [--var NAME=VALUE]... [-n N]"
    assert "planrun command is for what is not a run" in " ".join(rest.split())
    for command in ("validate", "graph", "plans", "runs", "show", "cancel", "demo"):
        assert f"    {command}" in done.stdout


def test_plans_lists_the_shipped_plans_with_their_variables(capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["plans"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("safe-merge  (PLAN-SAFE-MERGE, ")
    assert "  run: pytest --plan safe-merge --var BRANCH=..." in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("  --var ")}
    assert "required" in lines["BRANCH"] and "Branch to merge" in lines["BRANCH"]
    assert "default 'origin'" in lines["REMOTE"]
    assert "env PLANRUN_PYTHON" in lines["PYTHON"]
    assert planrun(["plans", "--json"]) == 0
    shipped = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    variables = {v["name"]: v for v in shipped["safe-merge"]["variables"]}
    assert variables["BRANCH"] == {
        "name": "BRANCH",
        "default": None,
        "env": None,
        "secret": False,
        "required": True,
        "description": variables["BRANCH"]["description"],
    }
    assert variables["REMOTE"]["default"] == "origin" and not variables["REMOTE"]["required"]
    assert Path(shipped["safe-merge"]["file"]).is_file()


def test_graph_draws_without_values_and_notes_the_missing_ones(plan: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["graph", str(plan)]) == 0
    captured = capsys.readouterr()
    assert "s0 --> s1" in captured.out
    assert captured.err.startswith("note: ") and "variable 'BRANCH' has no value" in captured.err
    assert planrun(["graph", str(plan), "--strict"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("ERROR: ") and "'BRANCH'" in captured.err
    assert planrun(["graph", str(plan), "--strict", "--var", "BRANCH=x"]) == 0
    assert capsys.readouterr().err == ""


def test_validate_without_values_is_ok_with_a_note(plan: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["validate", "plan.json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "plan.json: OK (2 steps)\n"
    assert "note: plan.json: field 'variables.BRANCH': variable 'BRANCH' has no value" in captured.err
    assert planrun(["validate", "plan.json", "--strict"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "ERROR: plan.json: field 'variables.BRANCH'" in captured.err


def test_validate_and_graph_refuse_a_var_no_plan_uses(plan: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["validate", "plan.json", "--var", "BRANH=x"]) == 1
    assert "ERROR: --var BRANH: no plan in this run declares or uses a variable BRANH (did you mean BRANCH?)" in (
        capsys.readouterr().err
    )
    assert planrun(["graph", "plan.json", "--var", "BRANH=x"]) == 1


def test_validate_and_graph_take_packaged_names(plan: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert planrun(["validate", "safe-merge"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "safe-merge: OK (7 steps)\n" and "'BRANCH' has no value" in captured.err
    assert planrun(["graph", "safe_merge", "--format", "dot"]) == 0
    assert '"preflight" -> "fetch";' in capsys.readouterr().out
    assert planrun(["validate", "safe-mrege"]) == 1
    assert "did you mean safe-merge?" in capsys.readouterr().err


def test_a_real_problem_still_fails_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(plan_doc([step("a", "true", depends_on=["b"])])))
    assert planrun(["validate", str(path)]) == 1
    assert "unknown step 'b'" in capsys.readouterr().err


def test_the_demo_prints_commands_that_can_be_pasted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[list[str]] = []

    def fake_run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    monkeypatch.setattr(demo, "prepare", lambda root: root / "my clone")
    monkeypatch.setattr(subprocess, "run", fake_run)
    assert demo.main() == 0
    out = capsys.readouterr().out
    echoed = next(line for line in out.splitlines() if line.startswith("$ "))
    assert shlex.split(echoed[2:]) == ran[0]  # a value with spaces survives the shell
    assert ran[0][3:5] == ["--plan", "safe-merge"]
    ledger_hint = out.rsplit("(", 1)[1].rstrip(")\n")
    assert shlex.split(ledger_hint)[:3] == ["planrun", "runs", "--ledger"]
    assert shlex.split(ledger_hint)[3].endswith("my clone/.ledger/framework.db")
