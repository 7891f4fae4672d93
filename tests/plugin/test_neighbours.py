"""With the plugins projects commonly have: steps keep the plan's timeouts, retries and order.

These need pytest-timeout, pytest-rerunfailures and pytest-randomly installed beside planrun (a
separate environment: each changes every test session it is installed in); elsewhere they skip,
except under scripts/test-envs.sh, which installs them and sets PLANRUN_NEIGHBOURS=1.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
from planhelpers import plan_doc, sh

from conftest import RunPlan


def need(module: str) -> None:
    if os.environ.get("PLANRUN_NEIGHBOURS") == "1":
        importlib.import_module(module)  # installed on purpose: a missing plugin fails, never skips
    else:
        pytest.importorskip(module)


def attempt_logs(root: Path, step_id: str) -> list[str]:
    return sorted(p.name for p in root.glob(f".ledger/runs/*/steps/{step_id}/*.stdout.log"))


def test_a_step_runs_under_the_plans_timeout_not_pytest_timeouts(
    pytester: pytest.Pytester, run_plan: RunPlan, mode: list[str]
) -> None:
    need("pytest_timeout")
    pytester.makeini("[pytest]\ntimeout = 1\n")
    # the step outlives pytest-timeout's limit (1 s) and stays well inside its own (60 s)
    result = run_plan([sh("slow", "sleep 3")], *mode)
    assert "Timeout" not in result.stdout.str()
    result.assert_outcomes(passed=1)


def test_reruns_leave_steps_to_their_own_retries(pytester: pytest.Pytester, run_plan: RunPlan, mode: list[str]) -> None:
    need("pytest_rerunfailures")
    result = run_plan(
        [
            sh("other", "exit 1", on_failure="continue"),
            sh("flaky", "exit 1", retries=1, on_failure="continue"),
            sh("ok", "true"),
        ],
        "--reruns",
        "2",
        *mode,
    )
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(failed=2, passed=1)
    assert result.parseoutcomes()["rerun"] == 1  # flaky's own retry, nothing from --reruns
    assert attempt_logs(pytester.path, "other") == ["attempt-1.stdout.log"]
    assert attempt_logs(pytester.path, "flaky") == ["attempt-1.stdout.log", "attempt-2.stdout.log"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_order_keeps_the_dag_order(pytester: pytest.Pytester, seed: int) -> None:
    need("pytest_randomly")
    steps = [sh("d", "true", depends_on=["c"]), sh("c", "true", depends_on=["b"]), sh("b", "true"), sh("a", "true")]
    (pytester.path / "plan.json").write_text(json.dumps(plan_doc(steps)))
    pytester.makepyfile(test_plain="def test_one(): pass\ndef test_two(): pass\n")
    result = pytester.runpytest_subprocess(
        "--plan",
        "plan.json",
        "test_plain.py",
        "-p",
        "no:cacheprovider",
        "-p randomly",
        f"--randomly-seed={seed}",
        "--collect-only",
        "-q",
    )
    order = [line.rpartition("::")[2] for line in result.stdout.lines if line.startswith("plan.json::")]
    assert sorted(order) == ["a", "b", "c", "d"]
    assert order.index("b") < order.index("c") < order.index("d")
