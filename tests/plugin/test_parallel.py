"""Parallel runs through the DAG-aware xdist scheduler: overlap, the cap, abort across workers, crashes."""

from __future__ import annotations

import pytest
from planhelpers import alive, event_order, ledger_of, sh, stamped, stamps, step, write_pid

from conftest import RunPlan


def max_overlap(times: dict[str, tuple[float, float]]) -> int:
    """The largest number of steps running at one instant (from their recorded start/end times)."""
    events = sorted([(s, 1) for s, _ in times.values()] + [(e, -1) for _, e in times.values()])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_independent_branches_overlap_and_dependencies_hold(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [
            stamped("root"),
            stamped("slow_branch", "sleep 1", depends_on=["root"]),
            stamped("fast1", "sleep 0.2", depends_on=["root"]),
            stamped("fast2", "sleep 0.2", depends_on=["fast1"]),
            stamped("join", depends_on=["slow_branch", "fast2"]),
        ],
        "-n",
        "2",
    )
    result.assert_outcomes(passed=5)
    t = stamps(pytester.path)
    assert t["root"][1] <= min(t["slow_branch"][0], t["fast1"][0])
    # a long branch never blocks an independent one: fast2 starts while slow_branch still runs
    assert t["fast2"][0] < t["slow_branch"][1]
    assert t["join"][0] >= max(t["slow_branch"][1], t["fast2"][1])


def test_the_plans_cap_applies_whatever_n_says(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan([stamped(f"s{i}", "sleep 0.3") for i in range(6)], "-n", "4", max_concurrency=2)
    result.assert_outcomes(passed=6)
    assert max_overlap(stamps(pytester.path)) == 2


@pytest.mark.parametrize(
    ("mode", "parents"),
    [([], 1), (["-n", "2"], 2)],
    ids=["in-process-concurrent", "xdist-two-steps-per-worker"],
)
def test_max_concurrency_steps_run_at_once_without_a_process_per_step(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str], parents: int
) -> None:
    # each step waits until all four have started: they finish only if they run at the same time
    script = "echo $PPID > parents/{0}; until [ $(ls parents | wc -l) -ge 4 ]; do sleep 0.02; done"
    pytester.mkdir("parents")
    steps = [stamped(f"s{i}", script.format(i), timeout_sec=30) for i in range(4)]
    result = run_plan(steps, "-v", *mode, max_concurrency=4)
    result.assert_outcomes(passed=4)
    assert max_overlap(stamps(pytester.path)) == 4
    # without -n every step is a child of pytest itself; with -n 2, of one of the two workers
    assert len({p.read_text() for p in (pytester.path / "parents").iterdir()}) == parents


def test_slots_per_worker_bounds_what_each_worker_runs(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    steps = [stamped(f"s{i}", "sleep 0.3") for i in range(6)]
    result = run_plan(steps, "-n", "2", "--planrun-slots-per-worker", "1", max_concurrency=4)
    result.assert_outcomes(passed=6)
    assert max_overlap(stamps(pytester.path)) == 2


def test_in_process_the_plans_cap_holds(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan([stamped(f"s{i}", "sleep 0.3") for i in range(6)], max_concurrency=2)
    result.assert_outcomes(passed=6)
    assert max_overlap(stamps(pytester.path)) == 2


def test_max_concurrency_one_stays_in_process(run_plan: RunPlan) -> None:
    result = run_plan([step("a", "true"), step("b", "true")], "-v", max_concurrency=1)
    result.assert_outcomes(passed=2)
    assert "[gw" not in result.stdout.str()


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["in-process-concurrent", "xdist"])
def test_abort_cancels_a_step_running_on_another_worker(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    result = run_plan(
        [
            sh("slow", f"{write_pid('slow.pid')}; exec sleep 120"),
            sh("bad", "until [ -f slow.pid ]; do sleep 0.02; done; exit 1"),  # fails once slow is running
            step("later", "true", depends_on=["bad", "slow"]),
        ],
        *mode,
        "-v",
        "-rs",
        max_concurrency=2,
    )
    result.assert_outcomes(failed=1, skipped=2)
    assert [line for line in result.stdout.lines if "plan.json::slow" in line and "SKIPPED" in line]
    assert result.stdout.str().count("SKIPPED [1] plan.json:") == 2
    assert result.stdout.str().count("cancelled: 'bad' failed (abort)") >= 2
    assert not alive(int((pytester.path / "slow.pid").read_text()))
    # the run did not wait for the 120 s sleep: bad's failure came first, then slow's process was killed
    rows, events = ledger_of(pytester.path)
    (slow,) = [r for r in rows if r["step_id"] == "slow"]
    assert slow["state"] == "canceled" and slow["exit_code"] is not None and slow["exit_code"] < 0, slow
    order = event_order(events)
    assert order.index(("step_failed", "bad")) < order.index(("step_canceled", "slow"))


def test_a_crashed_worker_fails_its_step_and_the_run_goes_on(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    # The step kills the worker running it (its parent) with SIGKILL, after starting a grandchild.
    crash = "sleep 300 & echo $! > orphan.pid; kill -9 $PPID; sleep 300"
    result = run_plan(
        [
            sh("crasher", crash, on_failure="skip_dependents"),
            step("after_crash", "true", depends_on=["crasher"]),
            stamped("independent", "sleep 0.5"),
            stamped("later", depends_on=["independent"]),
        ],
        "-n",
        "2",
        "-rs",
    )
    result.assert_outcomes(failed=1, skipped=1, passed=2)
    result.stdout.fnmatch_lines(["*worker lost*"])
    result.stdout.fnmatch_lines(["*dependency 'crasher' failed*"])
    assert not alive(int((pytester.path / "orphan.pid").read_text()))


def test_every_step_of_a_crashed_worker_is_reported_crashed(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    # one worker running two steps: the crasher kills it while the victim runs beside it
    result = run_plan(
        [
            sh("victim", f"{write_pid('victim.pid')}; exec sleep 300", on_failure="skip_dependents"),
            sh("crasher", "until [ -f victim.pid ]; do sleep 0.02; done; kill -9 $PPID", on_failure="continue"),
            step("after", "true", depends_on=["victim"]),
        ],
        "-n",
        "1",
        "-rA",
        max_concurrency=2,
    )
    result.assert_outcomes(failed=2, skipped=1)
    out = result.stdout.str()
    assert "step 'victim' failed: worker lost" in out and "step 'crasher' failed: worker lost" in out, out
    # each failure is titled like any step's failure: the step and its command, not the plan file
    for step_id in ("victim", "crasher"):  # (in the order they were reported)
        result.stdout.re_match_lines([rf"_+ step {step_id}: sh -c .* _+$"])
    assert not alive(int((pytester.path / "victim.pid").read_text()))


def test_critical_path_starts_first_whatever_the_declaration_order(
    run_plan: RunPlan, pytester: pytest.Pytester
) -> None:
    shorts = [step(f"short{i}", "sleep", "0.05") for i in range(8)]
    chain = [step(f"c{i}", "sleep", "0.1", depends_on=[f"c{i - 1}"] if i else []) for i in range(4)]
    result = run_plan(shorts + chain, "-n", "2")
    result.assert_outcomes(passed=12)
    # the controller records each start as it sends the step to a worker: the order of its decisions
    order = event_order(ledger_of(pytester.path)[1])
    starts = [s for kind, s in order if kind == "step_started"]
    assert "c0" in starts[:2]  # the chain's head is among the first two steps sent to the two workers
    # and each link with more than itself left to run is sent as soon as the previous one ends, before any
    # short step (the last link, c3, is worth one short step: either may go first)
    for i in range(1, 3):
        ended, started = order.index(("step_succeeded", f"c{i - 1}")), order.index(("step_started", f"c{i}"))
        assert ended < started
        assert [s for kind, s in order[ended:started] if kind == "step_started"] == [], order[ended:started]


@pytest.mark.parametrize("parallel_mode", [["-n", "2"], []], ids=["xdist", "in-process-concurrent"])
@pytest.mark.parametrize("policy", ["abort", "skip_dependents", "continue"])
def test_serial_and_parallel_give_the_same_outcomes_and_reasons(
    run_plan: RunPlan, policy: str, parallel_mode: list[str]
) -> None:
    steps = [
        sh("a", "exit 1", on_failure=policy),
        step("b", "true", depends_on=["a"]),
        step("c", "true", depends_on=["b"]),
        sh("d", "sleep 0.3"),
        step("e", "true", depends_on=["d"]),
    ]
    serial = run_plan(steps, "-rA")
    parallel = run_plan(steps, "-rA", *parallel_mode, max_concurrency=2)
    assert serial.parseoutcomes() == parallel.parseoutcomes()
    assert verdicts(serial) == verdicts(parallel)
    assert len(verdicts(serial)) == 5


def verdicts(result: pytest.RunResult) -> list[str]:
    """The short summary's lines (outcome, node id, reason), in a stable order."""
    lines = [line for line in result.stdout.lines if line.startswith(("PASSED", "FAILED", "SKIPPED", "XFAIL"))]
    return sorted(line.split(" - ")[0] if line.startswith("FAILED") else line for line in lines)


def test_slots_per_worker_must_be_at_least_one(run_plan: RunPlan) -> None:
    result = run_plan([step("a", "true")], "--planrun-slots-per-worker", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--planrun-slots-per-worker*must be at least 1*"])
