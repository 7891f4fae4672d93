"""Random plans run for real (xdist, or steps at once in one process), checked against the reference model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from planhelpers import ledger_of, plan_doc, stamped, stamps
from reference_model import REASONS, ModelStep, Policy, Verdict, run

VERDICT = re.compile(
    r"(PASSED|FAILED|SKIPPED|XFAIL)\s+plan\.json::(\S+)|plan\.json::(\S+)\s+(PASSED|FAILED|SKIPPED|XFAIL)"
)


@st.composite
def random_plans(draw: st.DrawFn) -> tuple[list[ModelStep], int, int]:
    workers = draw(st.sampled_from([2, 3]))
    cap = draw(st.integers(1, workers))
    ids = [f"s{i}" for i in range(draw(st.integers(2, 7)))]
    steps = []
    for i, step_id in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=3)) if i else []
        on_failure: Policy = draw(st.sampled_from(["abort", "skip_dependents", "continue"]))
        # A critical abort only with one step at a time: which steps it catches running otherwise
        # depends on timing, not on the plan.
        critical = draw(st.booleans()) if cap == 1 or on_failure != "abort" else False
        failures = draw(st.sampled_from([0, 0, 0, 1, 9]))  # some fail for good, some pass on a retry
        steps.append(ModelStep(step_id, tuple(deps), on_failure, critical, draw(st.integers(0, 1)), failures))
    return steps, workers, cap


def plan_step(step: ModelStep, duration: str) -> dict[str, Any]:
    """A real step failing its first ``failures`` attempts (counted in a file), timed in ``stamps/``."""
    count = f"count.{step.id}"
    attempt = f"n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}"
    script = f"sleep {duration}; {attempt}; [ $n -gt {step.failures} ]"
    fields = {"on_failure": step.on_failure, "critical": step.critical, "retries": step.retries}
    return stamped(step.id, script, depends_on=list(step.depends_on), **fields)


def pytest_verdict(verdict: Verdict, step: ModelStep) -> str:
    if verdict.outcome == "failed":
        return "FAILED" if step.critical else "XFAIL"
    return "PASSED" if verdict.outcome == "succeeded" else "SKIPPED"


def verdicts_of(result: pytest.RunResult) -> dict[str, str]:
    found = {}
    for line in result.stdout.lines:
        match = VERDICT.search(line)
        if match:
            outcome, step_id = (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
            found[step_id] = outcome
    return found


# Every rule at least once, whatever hypothesis draws: continue, a retry that passes, an allowed
# failure that skips its dependent, and an abort that cancels what has not run.
EVERY_RULE = [
    ModelStep("s0"),
    ModelStep("s1", on_failure="continue", failures=9),
    ModelStep("s2", ("s1",)),
    ModelStep("s3", retries=1, failures=1),
    ModelStep("s4", failures=9, critical=False),
    ModelStep("s5", ("s4",)),
    ModelStep("s6", ("s2", "s3"), failures=9),
]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(plan=(EVERY_RULE, 2, 1), durations=["0"] * 7, in_process=False)
@example(plan=(EVERY_RULE, 2, 2), durations=["0"] * 7, in_process=True)
@given(random_plans(), st.lists(st.sampled_from(["0", "0.05", "0.2"]), min_size=7, max_size=7), st.booleans())
def test_random_plans_run_in_parallel_like_the_reference(
    pytester: pytest.Pytester, plan: tuple[list[ModelStep], int, int], durations: list[str], in_process: bool
) -> None:
    steps, workers, cap = plan
    for leftover in ("stamps", ".ledger"):
        shutil.rmtree(pytester.path / leftover, ignore_errors=True)
    for count in pytester.path.glob("count.*"):
        count.unlink()
    doc = plan_doc([plan_step(s, d) for s, d in zip(steps, durations, strict=False)], max_concurrency=cap)
    (pytester.path / "plan.json").write_text(json.dumps(doc))
    # in one process the plan's cap alone says how many steps run at once
    mode = [] if in_process else ["-n", str(workers)]
    result = pytester.runpytest_subprocess("--plan", "plan.json", *mode, "-v")
    rows, events = ledger_of(Path(pytester.path))
    last = {row["step_id"]: row for row in rows}  # a step's last attempt carries its verdict
    # the order steps ended in, which decides what an abort catches (one step at a time here)
    ended = [e["data"]["step_id"] for e in events if e["event_type"] in ("step_succeeded", "step_failed")]
    ended_order = sorted(set(ended), key=lambda s: len(ended) - ended[::-1].index(s))
    expected, state = run(steps, ended_order)
    out = result.stdout.str()
    assert verdicts_of(result) == {s.id: pytest_verdict(expected[s.id], s) for s in steps}, out
    for s in steps:
        verdict, row = expected[s.id], last[s.id]
        assert row["outcome"] == verdict.outcome, (s, row, verdict)
        if verdict.outcome in REASONS:
            named = REASONS[verdict.outcome].fullmatch(row["reason"] or "")
            assert named and named.group(1) in verdict.names, (s, row["reason"], verdict)
        else:
            assert sum(r["step_id"] == s.id for r in rows) == verdict.attempts, (s, rows)
    assert result.ret == (1 if state == "failed" else 0), out
    times = stamps(Path(pytester.path))
    for s in steps:
        for dep in s.depends_on:
            if s.id in times and dep in times:
                assert times[dep][1] <= times[s.id][0], (dep, s.id)
    events_in_time = sorted([(t[0], 1) for t in times.values()] + [(t[1], -1) for t in times.values()])
    running = peak = 0
    for _, delta in events_in_time:
        running += delta
        peak = max(peak, running)
    assert peak <= cap
