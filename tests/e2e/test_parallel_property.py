"""Random plans run for real with xdist, checked against the scheduling core as the reference."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planhelpers import plan_doc, stamped, stamps

from pytest_planrun.core.decide import RunCore
from pytest_planrun.core.state import Outcome, Start, StepRule

VERDICT = re.compile(
    r"(PASSED|FAILED|SKIPPED|XFAIL)\s+plan\.json::(\S+)|plan\.json::(\S+)\s+(PASSED|FAILED|SKIPPED|XFAIL)"
)


@st.composite
def random_plans(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, int]:
    count = draw(st.integers(2, 7))
    steps = []
    for i in range(count):
        deps = draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True, max_size=3)) if i else []
        fails = draw(st.booleans()) and draw(st.booleans())  # a quarter of the steps fail
        duration = draw(st.sampled_from(["0", "0.05", "0.2"]))
        # abort is left out: which steps it catches running depends on timing, not on the plan
        policy = draw(st.sampled_from(["skip_dependents", "continue"]))
        script = f"sleep {duration}; exit {1 if fails else 0}"
        steps.append(stamped(f"s{i}", script, depends_on=deps, on_failure=policy, critical=draw(st.booleans())))
    workers = draw(st.sampled_from([2, 3]))
    cap = draw(st.integers(1, workers))
    return steps, workers, cap


def expected_verdicts(steps: list[dict[str, Any]]) -> dict[str, str]:
    rules = [
        StepRule(s["id"], tuple(s["depends_on"]), on_failure=s["on_failure"], critical=s["critical"]) for s in steps
    ]
    failing = {s["id"] for s in steps if "exit 1" in s["args"][1]}
    core = RunCore(rules, slots=1)
    pending = [a for a in core.begin() if isinstance(a, Start)]
    while pending:
        start = pending.pop(0)
        pending += [
            a for a in core.attempt_ended(start.step_id, 1, start.step_id not in failing, 0.0) if isinstance(a, Start)
        ]
    names = {Outcome.SUCCEEDED: "PASSED", Outcome.SKIPPED: "SKIPPED", Outcome.CANCELED: "SKIPPED"}
    critical = {s["id"]: s["critical"] for s in steps}
    verdicts = {}
    for step_id in critical:
        outcome = core.outcome(step_id)
        assert outcome is not None
        if outcome is Outcome.FAILED:
            verdicts[step_id] = "FAILED" if critical[step_id] else "XFAIL"
        else:
            verdicts[step_id] = names[outcome]
    return verdicts


def verdicts_of(result: pytest.RunResult) -> dict[str, str]:
    found = {}
    for line in result.stdout.lines:
        match = VERDICT.search(line)
        if match:
            outcome, step_id = (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
            found[step_id] = outcome
    return found


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(random_plans())
def test_random_plans_run_in_parallel_like_the_reference(
    pytester: pytest.Pytester, plan: tuple[list[dict[str, Any]], int, int]
) -> None:
    steps, workers, cap = plan
    shutil.rmtree(pytester.path / "stamps", ignore_errors=True)
    (pytester.path / "plan.json").write_text(json.dumps(plan_doc(steps, max_concurrency=cap)))
    result = pytester.runpytest_subprocess("--plan", "plan.json", "-n", str(workers), "-v", "--no-ledger")
    assert verdicts_of(result) == expected_verdicts(steps), result.stdout.str()
    times = stamps(Path(pytester.path))
    for s in steps:
        for dep in s["depends_on"]:
            if s["id"] in times and dep in times:
                assert times[dep][1] <= times[s["id"]][0], (dep, s["id"])
    events = sorted([(t[0], 1) for t in times.values()] + [(t[1], -1) for t in times.values()])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= cap
