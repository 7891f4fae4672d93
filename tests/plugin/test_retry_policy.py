"""Retry policies end to end: retry_on decides what is retried, backoff spaces the attempts, and every
reader (terminal, ledger, events, JUnit) says why an attempt was or was not retried."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

import pytest
from planhelpers import ledger_of, sh

from conftest import RunPlan


def assert_outcomes(result: pytest.RunResult, **expected: int) -> None:
    """Like ``RunResult.assert_outcomes``, counting rerun attempts too."""
    __tracebackhide__ = True
    outcomes = result.parseoutcomes()
    assert {k: outcomes.get(k, 0) for k in expected} == expected, outcomes


# fails with exit 1 on its first run, then succeeds: each run appends a line to its file
FLAKY_ONCE = 'echo x >> flaky.tries; [ "$(wc -l < flaky.tries)" -ge 2 ]'


def test_an_exit_code_outside_retry_on_is_not_retried(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    result = run_plan(
        [
            sh("usage", "echo x >> usage.tries; exit 2", retries=3, retry_on=[1], on_failure="continue"),
            sh("flaky", FLAKY_ONCE, retries=3, retry_on=[1]),
        ],
        "--junitxml=out.xml",
        *mode,
    )
    assert_outcomes(result, failed=1, passed=1, rerun=1)
    assert (pytester.path / "usage.tries").read_text().count("x") == 1
    assert (pytester.path / "flaky.tries").read_text().count("x") == 2
    # the failure report says why, under the attempt line
    result.stdout.fnmatch_lines(["*attempt 1 of 4, *exit code 2", "not retried: exit code 2 is not in retry_on"])
    attempts, events = ledger_of(pytester.path)
    rows = {(a["step_id"], a["attempt"]): a for a in attempts}
    assert set(rows) == {("usage", 1), ("flaky", 1), ("flaky", 2)}
    assert rows["usage", 1]["retry_reason"] == "not retried: exit code 2 is not in retry_on"
    assert rows["flaky", 1]["retry_reason"] == "retried at once: exit code 1 is in retry_on"
    assert rows["flaky", 1]["retry_delay_sec"] == 0.0
    assert rows["flaky", 2]["retry_reason"] is None  # it succeeded: nothing to explain
    (retry,) = [e["data"] for e in events if e["event_type"] == "step_retry"]
    assert (retry["step_id"], retry["retry_reason"]) == ("flaky", "retried at once: exit code 1 is in retry_on")
    (failed,) = [e["data"] for e in events if e["event_type"] == "step_failed"]
    assert (failed["step_id"], failed["retry_reason"]) == ("usage", "not retried: exit code 2 is not in retry_on")
    cases = {c.attrib["name"]: c for c in ET.parse(pytester.path / "out.xml").getroot().iter("testcase")}
    failure = cases["usage"].find("failure")
    assert failure is not None and "not retried: exit code 2 is not in retry_on" in (failure.text or "")
    flaky_text = "\n".join(e.text or "" for e in cases["flaky"].iter())
    assert "attempt 1: exit code 1 (" in flaky_text and "; retried at once: exit code 1 is in retry_on" in flaky_text


def test_backoff_spaces_the_attempts_more_each_time(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    script = 'echo x >> tries; [ "$(wc -l < tries)" -ge 4 ]'  # fails three times, then succeeds
    result = run_plan([sh("fetch", script, retries=3, retry_delay_sec=0.4, retry_backoff=2)], *mode)
    assert_outcomes(result, passed=1, rerun=3)
    attempts, _ = ledger_of(pytester.path)
    rows = sorted(attempts, key=lambda a: a["attempt"])
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert [r["retry_delay_sec"] for r in rows] == [0.4, 0.8, 1.6, None]
    start = [datetime.fromisoformat(r["started_at"]).timestamp() for r in rows]
    end = [datetime.fromisoformat(r["ended_at"]).timestamp() for r in rows]
    gaps = [start[i + 1] - end[i] for i in range(3)]
    # each attempt waited at least its recorded delay, and the waits grew
    assert all(gap >= row["retry_delay_sec"] for gap, row in zip(gaps, rows[:3], strict=True))
    assert gaps[0] < gaps[1] < gaps[2]


def test_retry_on_tells_a_silent_step_from_a_slow_one(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    """``no_output`` in retry_on retries the no-output timeout only; a wall-clock timeout is final then."""
    silent = "echo x >> {0}.tries; echo once; sleep 30"
    result = run_plan(
        [
            sh(
                "silent",
                silent.format("silent"),
                no_output_timeout_sec=1,
                retries=1,
                retry_on=["no_output"],
                on_failure="continue",
            ),
            sh(
                "slow",
                "echo x >> slow.tries; while true; do echo tick; sleep 0.1; done",
                timeout_sec=1,
                retries=1,
                retry_on=["no_output"],
                on_failure="continue",
            ),
        ],
    )
    assert_outcomes(result, failed=2, rerun=1)
    assert (pytester.path / "silent.tries").read_text().count("x") == 2
    assert (pytester.path / "slow.tries").read_text().count("x") == 1
    attempts, _ = ledger_of(pytester.path)
    rows = {(a["step_id"], a["attempt"]): a for a in attempts}
    assert rows["silent", 1]["retry_reason"].startswith("retried")
    assert rows["slow", 1]["retry_reason"].startswith("not retried")
