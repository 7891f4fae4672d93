"""Variables, secrets, environment overlay and working directory of steps."""

from __future__ import annotations

import json
import os

import pytest
from planhelpers import PY, sh, step

from conftest import RunPlan

ARGV_DUMP = "import json, sys; json.dump(sys.argv[1:], open('argv.json', 'w'))"


def test_values_with_quotes_backslashes_and_braces_stay_one_argument(
    run_plan: RunPlan, pytester: pytest.Pytester
) -> None:
    tricky = 'it\'s "quoted" \\back ${NOT_A_VAR} $${X} ; rm -rf /'
    result = run_plan([step("dump", PY, "-c", ARGV_DUMP, "${V}", "$${LITERAL}")], "--var", f"V={tricky}")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "argv.json").read_text()) == [tricky, "${LITERAL}"]


def test_declared_defaults_and_env_sources(
    run_plan: RunPlan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANRUN_TEST_FROM_ENV", "from-env")
    variables = {
        "A": "default-a",
        "B": {"env": "PLANRUN_TEST_FROM_ENV", "default": "unused"},
        "C": "default-c",
    }
    result = run_plan(
        [step("dump", PY, "-c", ARGV_DUMP, "${A}", "${B}", "${C}")],
        "--var",
        "C=from-cli",
        plan_fields={"variables": variables},
    )
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "argv.json").read_text()) == ["default-a", "from-env", "from-cli"]


def test_secrets_are_masked_in_terminal_logs_and_reports(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    variables = {"TOKEN": {"secret": True, "default": "hunter2-s3cret"}}
    result = run_plan(
        [sh("leak", "echo token=${TOKEN}; echo ${TOKEN} >&2; exit 1")],
        "-v",
        plan_fields={"variables": variables},
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str() + result.stderr.str()
    assert "hunter2-s3cret" not in out
    assert "token=***" in out
    for log in pytester.path.glob(".ledger/runs/*/steps/leak/*.log"):
        assert "hunter2-s3cret" not in log.read_text()


def test_env_overlays_the_process_environment(
    run_plan: RunPlan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANRUN_TEST_INHERITED", "kept")
    names = ("PLANRUN_TEST_INHERITED", "G", "S", "PATH")
    script = f"import json, os; json.dump({{k: os.environ.get(k) for k in {names!r}}}, open('env.json', 'w'))"
    result = run_plan([step("env", PY, "-c", script, env={"S": "step", "G": "step-wins"})], env={"G": "global"})
    result.assert_outcomes(passed=1)
    env = json.loads((pytester.path / "env.json").read_text())
    assert env["PLANRUN_TEST_INHERITED"] == "kept"
    assert env["G"] == "step-wins" and env["S"] == "step"
    assert env["PATH"] == os.environ["PATH"]


def test_cwd_is_relative_to_the_invocation_directory(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    (pytester.path / "sub").mkdir()
    result = run_plan([sh("here", "pwd > where.txt", cwd="sub")])
    result.assert_outcomes(passed=1)
    assert (pytester.path / "sub" / "where.txt").read_text().strip() == str(pytester.path / "sub")


def test_shell_true_runs_shell_text(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan([step("shell", "echo $((6*7)) > answer.txt", shell=True)])
    result.assert_outcomes(passed=1)
    assert (pytester.path / "answer.txt").read_text().strip() == "42"
