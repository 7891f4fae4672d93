"""The decisions the drivers and reports used to make for themselves, now values the core returns."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_planrun.core.decide import Phase, RunCore
from pytest_planrun.core.graph import assumed_succeeded
from pytest_planrun.core.state import Action, Cancel, Ended, Finish, Outcome, Skip, Start, StepRule, Verdict
from pytest_planrun.run.serial import drive_serially


def ended(actions: list[Action]) -> Ended:
    first = actions[0]
    assert isinstance(first, Ended)
    return first


def test_each_attempt_end_gets_one_verdict() -> None:
    rules = [StepRule("ok"), StepRule("flaky", retries=1), StepRule("optional", critical=False), StepRule("hard")]
    core = RunCore(rules, slots=4)
    starts = {a.step_id: a for a in core.begin() if isinstance(a, Start)}
    assert starts["flaky"].if_failed is Verdict.RETRY
    assert starts["optional"].if_failed is Verdict.ALLOWED_FAILURE
    assert starts["ok"].if_failed is Verdict.FAILED
    assert ended(core.attempt_ended("ok", 1, True, 0.0)) == Ended("ok", 1, Verdict.SUCCEEDED)
    assert ended(core.attempt_ended("flaky", 1, False, 0.0)) == Ended(
        "flaky", 1, Verdict.RETRY, retry_reason="retried at once: failure is in retry_on", retry_delay=0.0
    )
    assert ended(core.attempt_ended("optional", 1, False, 0.0)) == Ended("optional", 1, Verdict.ALLOWED_FAILURE)
    assert core.outcome("optional") is Outcome.FAILED
    assert ended(core.attempt_ended("hard", 1, False, 0.0)) == Ended("hard", 1, Verdict.FAILED)


def test_a_retry_foreseen_at_start_is_cancelled_by_an_abort_before_the_attempt_ends() -> None:
    core = RunCore([StepRule("flaky", retries=2), StepRule("breaker")], slots=2)
    assert Start("flaky", 1, Verdict.RETRY) in core.begin()
    reason = "cancelled: 'breaker' failed (abort)"
    assert Cancel("flaky", reason, running=True) in core.attempt_ended("breaker", 1, False, 1.0)
    # flaky's process had already failed on its own when the cancel reached it
    actions = core.attempt_ended("flaky", 1, False, 2.0)
    assert actions[0] == Ended("flaky", 1, Verdict.CANCELED, reason)
    assert core.outcome("flaky") is Outcome.CANCELED and core.attempts("flaky") == 1
    assert actions[-1] == Finish("failed", "step 'breaker' failed")


def test_an_interrupt_turns_a_foreseen_retry_into_a_cancel() -> None:
    core = RunCore([StepRule("flaky", retries=2)], slots=1)
    core.begin()
    core.interrupt("cancelled: stopping after 1 failures")
    assert ended(core.attempt_ended("flaky", 1, False, 1.0)).verdict is Verdict.CANCELED


def test_a_start_a_cancel_overtakes_is_withdrawn_and_frees_its_slot_and_locks() -> None:
    rules = [StepRule("a", locks=("db",)), StepRule("b", locks=("db",)), StepRule("c", ("a",))]
    core = RunCore(rules, slots=1)
    assert core.begin()[0] == Start("a", 1)
    reason = "cancelled on request"
    assert core.cancel_step("a", reason) == [Cancel("a", reason, running=True)]
    assert core.withdraw("a", 1) == [
        Cancel("a", reason, running=False),  # reported as a verdict, like a step that never started
        Skip("c", "dependency 'a' was cancelled"),
        Start("b", 1),  # the slot and the lock are free again
    ]
    assert core.outcome("a") is Outcome.CANCELED and core.attempts("a") == 0  # it never ran


def test_only_a_start_being_cancelled_can_be_withdrawn() -> None:
    core = RunCore([StepRule("a")], slots=1)
    core.begin()
    with pytest.raises(ValueError):
        core.withdraw("a", 1)


def test_deselected_dependencies_are_taken_as_succeeded_once() -> None:
    deps = {"b": ("a",), "c": ("b", "x"), "d": ()}
    assert assumed_succeeded(deps) == {"b": ("a",), "c": ("x",)}
    core = RunCore([StepRule(s, d) for s, d in deps.items()], slots=1)
    assert core.assumed == {"b": ("a",), "c": ("x",)}
    assert core.begin() == [Start("b", 1)]  # 'a' is not waited for


class FakeController:
    """Enough of ``PlanController`` for the serial driver: a start a cancel overtook is not claimed."""

    def __init__(self, core: RunCore, withdrawn: set[str]) -> None:
        self.core = core
        self.withdrawn = withdrawn
        self.pending = core.begin()
        self.ran: list[str] = []

    @property
    def final(self) -> object | None:
        return next((a for a in self.pending if isinstance(a, Finish)), None) if self.core.finished else None

    def take_actions(self) -> list[Action]:
        actions, self.pending = self.pending, [a for a in self.pending if isinstance(a, Finish)]
        return actions

    def claim(self, start: Start, worker: str) -> bool:
        if start.step_id in self.withdrawn:
            self.core.cancel_step(start.step_id, "cancelled on request")
            self.pending += self.core.withdraw(start.step_id, start.attempt)
            return False
        return True

    def next_wake(self) -> float | None:
        return self.core.next_wake()

    def wake(self) -> None:
        self.pending += self.core.wake(0.0)


def test_the_serial_driver_runs_only_what_it_may_claim() -> None:
    core = RunCore([StepRule("a"), StepRule("b"), StepRule("c")], slots=1)
    controller = FakeController(core, withdrawn={"b"})

    def run_step(start: Start) -> None:
        controller.ran.append(start.step_id)
        controller.pending += core.attempt_ended(start.step_id, start.attempt, True, 0.0)

    drive_serially(controller, run_step)
    assert controller.ran == ["a", "c"]
    assert core.outcome("b") is Outcome.CANCELED and core.finished


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 12), st.integers(1, 3), st.randoms(use_true_random=False))
def test_a_verdict_always_matches_what_the_core_does_next(steps: int, slots: int, rnd: Random) -> None:
    """RETRY only when another attempt follows; any other verdict ends the step with that outcome."""
    rules = [
        StepRule(
            f"s{i}",
            tuple(f"s{j}" for j in range(i) if rnd.random() < 0.3),
            critical=rnd.random() < 0.7,
            retries=rnd.randint(0, 2),
            on_failure=rnd.choice(["abort", "skip_dependents", "continue"]),
        )
        for i in range(steps)
    ]
    core = RunCore(rules, slots=slots)
    running = {a.step_id: a.attempt for a in core.begin() if isinstance(a, Start)}
    expected = {
        Verdict.SUCCEEDED: Outcome.SUCCEEDED,
        Verdict.FAILED: Outcome.FAILED,
        Verdict.ALLOWED_FAILURE: Outcome.FAILED,
        Verdict.CANCELED: Outcome.CANCELED,
    }
    while not core.finished:
        if not running:
            due = core.next_wake()
            assert due is not None
            actions = core.wake(due)
        else:
            if rnd.random() < 0.05:
                core.interrupt("cancelled: interrupted")
            step_id = rnd.choice(sorted(running))
            actions = core.attempt_ended(step_id, running.pop(step_id), rnd.random() < 0.5, 0.0)
            verdict = ended(actions).verdict
            if verdict is Verdict.RETRY:
                assert core.phase(step_id) in (Phase.READY, Phase.RUNNING, Phase.RETRY_WAIT)
            else:
                assert core.outcome(step_id) is expected[verdict]
        running.update((a.step_id, a.attempt) for a in actions if isinstance(a, Start))
