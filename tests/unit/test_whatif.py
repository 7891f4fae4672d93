"""The what-if forecast (core/whatif.py): the run's core fed assumed outcomes, no process started."""

from __future__ import annotations

import pytest

from pytest_planrun.core.conditions import compile_condition
from pytest_planrun.core.state import Outcome, StepRule
from pytest_planrun.core.whatif import Forecast, StepForecast, parse_assumption, unknown_steps, what_if


def fates(forecast: Forecast) -> dict[str, tuple[str, str, int, str | None]]:
    return {s.step_id: (s.would, s.outcome_words(), s.attempts, s.reason) for s in forecast.steps}


def rule(step_id: str, *deps: str, condition: str | None = None, **fields: object) -> StepRule:
    compiled = compile_condition(condition) if condition else None
    return StepRule(step_id, tuple(deps), condition=compiled, **fields)  # type: ignore[arg-type]


def test_conditions_read_the_assumed_outcomes() -> None:
    rules = [
        rule("build", on_failure="skip_dependents"),
        rule("test", "build"),
        rule("notify", "build", condition="failure()"),
        rule("report", "build", condition="always() && steps.build.outcome == 'failure' && vars.MODE == 'ci'"),
        rule("deploy", "test", condition="success()"),
    ]
    forecast = what_if(rules, {"build": "failed"}, {"MODE": "ci"})
    assert fates(forecast) == {
        "build": ("run", "failed", 1, None),
        "test": ("skipped", "skipped", 0, "dependency 'build' failed"),
        "notify": ("run", "succeeded", 1, None),
        "report": ("run", "succeeded", 1, None),
        "deploy": ("skipped", "skipped", 0, "condition false: success()"),
    }
    assert (forecast.state, forecast.reason) == ("failed", "step 'build' failed")
    calm = what_if(rules, {}, {"MODE": "ci"})
    assert fates(calm)["notify"] == ("skipped", "skipped", 0, "condition false: failure()")
    assert fates(calm)["report"] == (
        "skipped",
        "skipped",
        0,
        "condition false: always() && steps.build.outcome == 'failure' && vars.MODE == 'ci'",
    )
    assert calm.state == "succeeded"


def test_abort_skip_allowed_failure_retries_and_unused_assumptions() -> None:
    rules = [
        rule("lint", critical=False),
        rule("fetch", retries=2, retry_delay=5.0, retry_backoff=2.0),
        rule("unit", "fetch", on_failure="skip_dependents"),
        rule("docs", "unit"),
        rule("push", "fetch"),
        rule("cleanup", "push", condition="always()"),
    ]
    forecast = what_if(rules, {"lint": "failed", "unit": "timed_out", "push": "skipped", "docs": "failed"})
    assert fates(forecast) == {
        "lint": ("run", "allowed failure", 1, None),
        "fetch": ("run", "succeeded", 1, None),
        "unit": ("run", "failed", 1, None),
        "docs": ("skipped", "skipped", 0, "dependency 'unit' failed"),
        "push": ("skipped", "skipped", 0, "assumed skipped"),
        "cleanup": ("run", "succeeded", 1, None),
    }
    used = {s.step_id: s.assumption_used for s in forecast.steps if s.assumed}
    assert used == {"lint": True, "unit": True, "push": True, "docs": False}
    aborted = what_if(rules, {"fetch": "failed"})
    fetch = aborted.steps[1]
    assert (fetch.attempts, fetch.retry_delays) == (3, (5.0, 10.0))
    assert fates(aborted)["unit"] == ("cancelled", "cancelled", 0, "cancelled: 'fetch' failed (abort)")
    assert fates(aborted)["cleanup"] == ("run", "succeeded", 1, None)  # always() still runs after an abort
    assert aborted.steps[1].outcome is Outcome.FAILED


def test_retry_on_decides_for_assumed_timeouts_too() -> None:
    rules = [rule("a", retries=3, retry_on=("failure",)), rule("b", retries=1, retry_on=("timeout",))]
    forecast = what_if(rules, {"a": "timed_out", "b": "timed_out"})
    assert [s.attempts for s in forecast.steps] == [1, 0]  # b: cancelled by a's abort
    forecast = what_if([rules[1]], {"b": "timed_out"})
    assert forecast.steps[0].attempts == 2


def test_table_and_json() -> None:
    forecast = what_if([rule("a", retries=1, retry_delay=2.0), rule("b", "a")], {"a": "failed", "b": "failed"})
    assert forecast.table() == [
        "STEP  WOULD      OUTCOME          ATTEMPTS  REASON",
        "a     run        failed                  2  retried after 2 s; assumed failed",
        "b     cancelled  cancelled               0  cancelled: 'a' failed (abort); assumed failed, not reached",
        "run: failed (step 'a' failed)",
    ]
    document = forecast.to_dict()
    assert document["steps"][0] == {
        "step_id": "a",
        "would": "run",
        "outcome": "failed",
        "attempts": 2,
        "allowed_failure": False,
        "reason": None,
        "retry_delays": [2.0],
        "assumed": "failed",
        "assumption_used": True,
    }
    assert isinstance(forecast.steps[0], StepForecast)


def test_assumptions_are_checked() -> None:
    assert parse_assumption("build=timed_out") == ("build", "timed_out")
    with pytest.raises(ValueError, match=r"expects STEP=OUTCOME, got 'build'"):
        parse_assumption("build")
    with pytest.raises(
        ValueError, match=r"must be one of failed, succeeded, skipped, timed_out \(did you mean 'timed_out'\?\)"
    ):
        parse_assumption("build=timedout")
    assert unknown_steps({"buidl": "failed", "test": "failed"}, ["build", "test"]) == [
        "--assume buidl=failed: no step 'buidl' in the plan (did you mean 'build'?)"
    ]
