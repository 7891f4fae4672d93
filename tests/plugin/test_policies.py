"""Failure policies, criticality, retries and timeouts, in serial and xdist runs alike."""

from __future__ import annotations

import pytest
from planhelpers import alive, processes_of_run, sh, stamped, stamps, step

from conftest import RunPlan
from pytest_planrun.ledger import queries


def test_all_succeed_in_dependency_order(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    # 'late' is declared first but depends on 'early': it must still run after it.
    result = run_plan(
        [
            stamped("late", depends_on=["early"]),
            stamped("early", "sleep 0.2"),
            stamped("last", depends_on=["late"]),
        ],
        *mode,
    )
    result.assert_outcomes(passed=3)
    assert result.ret == 0
    times = stamps(pytester.path)
    assert times["early"][1] <= times["late"][0]
    assert times["late"][1] <= times["last"][0]


def test_abort_cancels_the_rest_naming_the_failed_step(run_plan: RunPlan, mode: list[str]) -> None:
    result = run_plan(
        [
            sh("lint", "exit 3"),
            step("build", "true", depends_on=["lint"]),
            step("docs", "true", depends_on=["build"]),
        ],
        "-rs",
        *mode,
    )
    result.assert_outcomes(failed=1, skipped=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*cancelled: 'lint' failed (abort)*"])
    result.stdout.fnmatch_lines(["*exit code 3*"])


def test_skip_dependents_names_the_failed_step_and_independent_branch_goes_on(
    run_plan: RunPlan, mode: list[str]
) -> None:
    result = run_plan(
        [
            sh("a", "exit 1", on_failure="skip_dependents"),
            step("b", "true", depends_on=["a"]),
            step("c", "true", depends_on=["b"]),
            step("other", "true"),
        ],
        "-rs",
        *mode,
    )
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(["*dependency 'a' failed*"])
    assert "cancelled" not in result.stdout.str()


def test_continue_lets_dependents_run(run_plan: RunPlan, mode: list[str]) -> None:
    result = run_plan([sh("a", "exit 1", on_failure="continue"), step("b", "true", depends_on=["a"])], *mode)
    result.assert_outcomes(failed=1, passed=1)
    assert result.ret == 1


def test_non_critical_failure_is_allowed_and_exit_code_stays_zero(run_plan: RunPlan, mode: list[str]) -> None:
    # critical: false with abort acts as skip_dependents: the dependent is skipped, the run passes.
    result = run_plan(
        [
            sh("flaky", "exit 2", critical=False),
            step("after", "true", depends_on=["flaky"]),
            step("x", "true"),
        ],
        "-rxs",
        *mode,
    )
    result.assert_outcomes(xfailed=1, skipped=1, passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*allowed failure (critical: false): exit code 2*", "*dependency 'flaky' failed*"])


def test_retries_until_success_counted_by_attempts(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    # Fails on attempts 1 and 2, passes on 3.
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 3 ]'
    result = run_plan([sh("fetch", script, retries=2)], *mode)
    assert_outcomes(result, passed=1, rerun=2)
    assert (pytester.path / "count").read_text().strip() == "3"
    result.stdout.fnmatch_lines(["*passed after retries*", "*FLAKY fetch: passed on attempt 3*"])


def test_explicit_zero_retries_beats_default(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    script = "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; exit 1"
    result = run_plan(
        [sh("once", script, retries=0), sh("thrice", script.replace("count", "count3"))], default_retries=2
    )
    assert (pytester.path / "count").read_text().strip() == "1"
    result.assert_outcomes(failed=1, skipped=1)


def test_retries_exhausted_report_attempts(run_plan: RunPlan, mode: list[str]) -> None:
    result = run_plan([sh("bad", "echo oops >&2; exit 2", retries=2)], *mode)
    assert_outcomes(result, failed=1, rerun=2)
    result.stdout.fnmatch_lines(["*exit code 2 after 3 attempts*", "*oops*"])


def test_timeout_kills_the_whole_process_tree(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    script = "sleep 300 & echo $! > child.pid; sh -c 'sleep 300 & echo $! > grandchild.pid; wait' & wait"
    result = run_plan([sh("hang", script, timeout_sec=1)], *mode)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 1 s*"])
    for name in ("child.pid", "grandchild.pid"):
        pid = int((pytester.path / name).read_text())
        assert not alive(pid), f"{name} {pid} survived the timeout"


def test_failure_report_shows_command_output_and_logs_not_a_traceback(run_plan: RunPlan, mode: list[str]) -> None:
    result = run_plan([sh("build", "echo building; echo broken >&2; exit 4")], *mode)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*step 'build' failed: exit code 4*", "*command: sh -c*", "*building*", "*broken*"])
    assert "attempt-1.stdout.log" in out
    assert "Traceback" not in out and "pytest_planrun" not in out.split("short test summary")[0]


def test_missing_executable_fails_with_its_name(run_plan: RunPlan, mode: list[str]) -> None:
    result = run_plan([step("ghost", "no-such-tool-xyz", "--help"), step("next", "true", depends_on=["ghost"])], *mode)
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no-such-tool-xyz*"])
    assert "Traceback" not in result.stdout.str()


def test_ten_megabytes_of_output_do_not_deadlock(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    script = "head -c 10485760 /dev/zero | tr '\\0' x; head -c 10485760 /dev/zero | tr '\\0' y >&2"
    result = run_plan([sh("loud", script, timeout_sec=60)], *mode)
    result.assert_outcomes(passed=1)
    logs = list(pytester.path.glob(".ledger/runs/*/steps/loud/attempt-1.std*.log"))
    assert sorted(p.stat().st_size for p in logs) == [10485760, 10485760]


def test_x_stops_after_the_first_failure(run_plan: RunPlan) -> None:
    result = run_plan([sh("a", "exit 1", on_failure="continue"), step("b", "true", depends_on=["a"])], "-x", "-rs")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*cancelled*"])


def assert_outcomes(result: pytest.RunResult, **expected: int) -> None:
    """Like ``RunResult.assert_outcomes``, counting rerun attempts too."""
    __tracebackhide__ = True
    outcomes = result.parseoutcomes()
    assert {k: outcomes.get(k, 0) for k in expected} == expected, outcomes


def test_no_step_process_survives(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    # A step that leaves a daemon behind in its own session: the sweep ends it with the run. The daemon
    # reports the run id it inherited through a pipe, so it is known to run before the step ends.
    script = (
        "python3 -c \"import subprocess; p = subprocess.Popen(['sh', '-c', 'echo $PLANRUN_RUN_ID; exec sleep 300'], "
        "stdout=subprocess.PIPE, start_new_session=True); "
        "open('daemon.run', 'wb').write(p.stdout.readline()); open('daemon.pid', 'w').write(str(p.pid))\""
    )
    result = run_plan([sh("daemon", script)])
    result.assert_outcomes(passed=1)
    (run,) = queries.list_runs(pytester.path / ".ledger" / "framework.db")
    assert (pytester.path / "daemon.run").read_text().strip() == run["run_id"]
    assert not alive(int((pytester.path / "daemon.pid").read_text()))
    assert processes_of_run(run["run_id"]) == []
