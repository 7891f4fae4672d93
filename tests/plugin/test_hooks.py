"""The hooks planrun offers (plugin/hookspecs.py), implemented in a conftest.py of the run."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from planhelpers import sh, step

from conftest import RunPlan
from pytest_planrun.ledger import queries

CONFTEST = """
import json


def pytest_planrun_retry_delay(config, step, record):
    if step.id == "flaky":
        assert record.state == "failed" and record.exit_code == 1
        return 0.4
    return None


def pytest_planrun_step_finished(config, result):
    with open("finished.jsonl", "a") as out:
        out.write(json.dumps([result.step_id, result.outcome, len(result.attempts), result.reason]) + "\\n")
"""

FLAKY = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 2 ]'


def test_retry_delay_and_step_finished_hooks(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    pytester.makeconftest(CONFTEST)
    result = run_plan(
        [
            sh("flaky", FLAKY, retries=1),
            sh("broken", "exit 3", depends_on=["flaky"], on_failure="skip_dependents"),
            step("after", "true", depends_on=["broken"]),
            step("other", "true"),
        ],
        *mode,
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    lines = (pytester.path / "finished.jsonl").read_text().splitlines()
    finished: dict[str, list[object]] = {}
    for step_id, *rest in (json.loads(line) for line in lines):
        assert step_id not in finished  # once per step
        finished[step_id] = rest
    assert finished == {
        "flaky": ["succeeded", 2, None],
        "broken": ["failed", 1, None],
        "after": ["skipped", 0, "dependency 'broken' failed"],
        "other": ["succeeded", 1, None],
    }
    order = list(finished)
    assert order.index("flaky") < order.index("broken") < order.index("after")
    # the hook's delay, not the plan's (none), separated the two attempts
    db = pytester.path / ".ledger" / "framework.db"
    (run,) = queries.list_runs(db)
    first, second = [r for r in queries.get_run_steps(db, run["run_id"]) if r["step_id"] == "flaky"]
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["ended_at"])
    assert gap.total_seconds() >= 0.4
