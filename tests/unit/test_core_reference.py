"""The scheduling core against the reference model (tests/reference_model.py): verdicts, reasons, attempts."""

from __future__ import annotations

from collections.abc import Sequence
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st
from reference_model import REASONS, ModelStep, Verdict, run

from pytest_planrun.core.decide import RunCore
from pytest_planrun.core.state import Cancel, Finish, OnFailure, Outcome, Start, StepRule


@st.composite
def model_plans(draw: st.DrawFn, critical_abort: bool = True, max_steps: int = 12) -> list[ModelStep]:
    """Random plans: each step depends only on earlier ones. Without ``critical_abort``, ``abort``
    appears only with ``critical: false`` (where it acts as ``skip_dependents``)."""
    ids = [f"s{i}" for i in range(draw(st.integers(1, max_steps)))]
    steps = []
    for i, step_id in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=3)) if i else []
        on_failure: OnFailure = draw(st.sampled_from(["abort", "skip_dependents", "continue"]))
        critical = draw(st.booleans()) if critical_abort or on_failure != "abort" else False
        retries = draw(st.integers(0, 2))
        failures = draw(st.sampled_from([0, 0, 1, 3]))  # half of the steps pass at once, some after retries
        steps.append(ModelStep(step_id, tuple(deps), on_failure, critical, retries, failures))
    return steps


def drive(steps: Sequence[ModelStep], slots: int, rnd: Random) -> tuple[RunCore, list[str], Finish]:
    """Run a core to its end: running attempts end in random order, each passing or failing as the
    step's script says; the steps in the order their last attempt ended, and how the run finished."""
    rules = [StepRule(s.id, s.depends_on, s.on_failure, s.critical, s.retries) for s in steps]
    failures = {s.id: s.failures for s in steps}
    core = RunCore(rules, slots=slots)
    running: dict[str, int] = {}
    killed: set[str] = set()
    ended: list[str] = []
    finish: list[Finish] = []

    def take(actions: Sequence[object]) -> None:
        for action in actions:
            if isinstance(action, Start):
                running[action.step_id] = action.attempt
            elif isinstance(action, Cancel) and action.running:
                killed.add(action.step_id)
            elif isinstance(action, Finish):
                finish.append(action)

    take(core.begin())
    clock = 0.0
    while not core.finished:
        clock += 1
        assert running, "stuck: nothing running, no retry delay in these plans"
        step_id = rnd.choice(sorted(running))
        attempt = running.pop(step_id)
        passed = attempt > failures[step_id] and step_id not in killed
        take(core.attempt_ended(step_id, attempt, passed, clock))
        if core.outcome(step_id) in (Outcome.SUCCEEDED, Outcome.FAILED):
            ended.append(step_id)
    assert len(finish) == 1
    return core, ended, finish[0]


def assert_agrees(core: RunCore, finish: Finish, expected: dict[str, Verdict], state: str) -> None:
    __tracebackhide__ = True
    for step_id, verdict in expected.items():
        outcome, reason = core.outcome(step_id), core.reason(step_id) or ""
        assert outcome is not None and outcome.value == verdict.outcome, (step_id, outcome, reason, verdict)
        if verdict.outcome in REASONS:
            named = REASONS[verdict.outcome].fullmatch(reason)
            assert named and named.group(1) in verdict.names, (step_id, reason, verdict)
        else:
            assert core.attempts(step_id) == verdict.attempts, (step_id, core.attempts(step_id), verdict)
    assert finish.state == state, (finish, state)


@settings(max_examples=250, deadline=None)
@given(model_plans(), st.randoms(use_true_random=False))
def test_a_serial_core_agrees_with_the_reference(steps: list[ModelStep], rnd: Random) -> None:
    # one slot: what has run when a step aborts is the order the core chose, given to the model
    core, ended, finish = drive(steps, 1, rnd)
    expected, state = run(steps, ended)
    assert_agrees(core, finish, expected, state)


@settings(max_examples=250, deadline=None)
@given(model_plans(critical_abort=False), st.integers(2, 4), st.randoms(use_true_random=False))
def test_a_parallel_core_agrees_with_the_reference_in_any_finish_order(
    steps: list[ModelStep], slots: int, rnd: Random
) -> None:
    # without a critical abort, no verdict depends on which steps run at once or end first
    core, _, finish = drive(steps, slots, rnd)
    expected, state = run(steps)
    assert_agrees(core, finish, expected, state)


def test_the_reference_reads_the_spec() -> None:
    """The model itself, on the SPEC's cases (so a disagreement points at the core, not the model)."""
    steps = [
        ModelStep("lint", failures=1, on_failure="skip_dependents"),
        ModelStep("build", ("lint",)),
        ModelStep("docs", ("build",)),
        ModelStep("flaky", failures=1, retries=1),
        ModelStep("allowed", failures=9, critical=False),  # abort, but critical: false
        ModelStep("after_allowed", ("allowed",)),
        ModelStep("loose", failures=1, on_failure="continue", critical=False),
        ModelStep("after_loose", ("loose", "flaky")),
    ]
    verdicts, state = run(steps)
    assert {s: v.outcome for s, v in verdicts.items()} == {
        "lint": "failed",
        "build": "skipped",
        "docs": "skipped",
        "flaky": "succeeded",
        "allowed": "failed",
        "after_allowed": "skipped",
        "loose": "failed",
        "after_loose": "succeeded",
    }
    assert verdicts["docs"].names == {"lint"} and verdicts["flaky"].attempts == 2
    assert state == "failed"  # lint is critical
    aborting = [ModelStep("a"), ModelStep("bad", failures=1), ModelStep("b", ("a",)), ModelStep("c")]
    verdicts, state = run(aborting, ended_order=["a", "bad"])
    assert {s: v.outcome for s, v in verdicts.items()} == {
        "a": "succeeded",
        "bad": "failed",
        "b": "canceled",
        "c": "canceled",
    }
    assert verdicts["c"].names == {"bad"} and state == "failed"
