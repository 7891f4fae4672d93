"""A failed attempt is labelled with the core's verdict at its end, not with what was foreseen at its start.

The race these tests pin down: an attempt that would be retried fails on its own, and before the
controller hears of it the core cancels the step (an abort elsewhere, a cancel request). The core
then ends the step cancelled, so no report may say RERUN for that attempt. A conftest holds the
attempt's report on its process until the core's cancel has reached it, which makes the race certain.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from planhelpers import sh

from conftest import RunPlan

HOLD_REPORT = textwrap.dedent(
    """
    import select
    from pathlib import Path

    import pytest

    from pytest_planrun.plugin.items import StepItem, runtime_key, ticket_key
    from pytest_planrun.run.control import send_cancel

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        try:
            return (yield)
        finally:
            if isinstance(item, StepItem) and item.step.id == "flaky":
                hold(item)

    def hold(item):
        # the attempt has failed on its own (its process is gone): now let the core change its mind
        run_dir = item.config.stash[runtime_key].context.run_dir
        gate = Path(item.config.rootpath, "gate")
        if gate.exists():  # the other step fails once it hears from the fifo: an abort
            with gate.open("w") as fifo:
                fifo.write("go\\n")
        else:
            send_cancel(run_dir, "flaky")
        # ... and report the attempt only once the core's cancel has reached this process
        token = item.stash[ticket_key].token
        with token.watching() as fd:
            ready, _, _ = select.select([fd], [], [], 120)
        assert ready, "the core's cancel never reached the attempt"
    """
)


def test_a_retry_cancelled_on_request_after_its_attempt_failed_is_not_rerun(
    pytester: pytest.Pytester, run_plan: RunPlan, mode: list[str]
) -> None:
    pytester.makeconftest(HOLD_REPORT)
    result = run_plan([sh("flaky", "exit 3", retries=2), sh("after", "true", depends_on=["flaky"])], "-rs", *mode)
    assert "RERUN" not in result.stdout.str()
    assert "rerun" not in result.parseoutcomes()
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*cancelled on request*"])
    result.stdout.fnmatch_lines(["SKIPPED*dependency 'flaky' was cancelled*"])
    attempts = sorted(p.name for p in pytester.path.glob(".ledger/runs/*/steps/flaky/*.stdout.log"))
    assert attempts == ["attempt-1.stdout.log"]  # the retry the first attempt foresaw never ran


def test_a_retry_overtaken_by_an_abort_is_not_rerun(pytester: pytest.Pytester, run_plan: RunPlan) -> None:
    """Two steps run at once: only an xdist run can abort one while the other's attempt is under way."""
    pytester.makeconftest(HOLD_REPORT)
    os.mkfifo(pytester.path / "gate")
    result = run_plan([sh("flaky", "exit 3", retries=2), sh("breaker", "read line < gate; exit 1")], "-rfs", "-n", "2")
    assert "RERUN" not in result.stdout.str()
    assert "rerun" not in result.parseoutcomes()
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*cancelled: 'breaker' failed (abort)*"])
    result.stdout.fnmatch_lines(["FAILED*breaker*"])


def test_x_stops_on_a_step_failure_the_core_decided_not_on_a_retried_attempt(
    pytester: pytest.Pytester, run_plan: RunPlan, mode: list[str]
) -> None:
    fails_once = "if [ -e failed-once ]; then exit 0; fi; touch failed-once; exit 1"
    steps = [
        sh("flaky", fails_once, retries=1),
        sh("after", "true", depends_on=["flaky"]),
        sh("last", "exit 2", depends_on=["after"]),
    ]
    result = run_plan(steps, "-x", "-rs", *mode)
    assert result.parseoutcomes().get("rerun") == 1  # -x did not stop the run there...
    result.assert_outcomes(passed=2, failed=1)  # ... but at the step the core failed
    assert result.ret != pytest.ExitCode.OK
