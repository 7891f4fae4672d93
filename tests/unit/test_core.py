"""The scheduling core, directly: decisions for each policy, and invariants over random runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_planrun
from pytest_planrun.core.decide import Phase, RunCore
from pytest_planrun.core.graph import find_cycle, remaining_path, topological_order, transitive_dependents
from pytest_planrun.core.state import (
    Action,
    Blocked,
    Cancel,
    Ended,
    Finish,
    OnFailure,
    Outcome,
    Skip,
    Start,
    StepRule,
    Verdict,
    Wait,
)


@dataclass
class FakeCondition:
    text: str
    uses_status_function: bool
    result: bool

    def evaluate(self, ctx: object) -> bool:
        return self.result


@dataclass
class Trace:
    """What a simulated run did, in event order."""

    clock: float = 0.0
    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)
    start_times: list[tuple[str, float]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    max_running: int = 0


def simulate(
    rules: list[StepRule],
    *,
    slots: int,
    fails: Set[str] = frozenset(),
    rnd: Random | None = None,
) -> tuple[RunCore, Trace]:
    """Drive a core to the end: running steps end in random order; ``fails`` fail every attempt."""
    rnd = rnd or Random(0)
    core = RunCore(rules, slots=slots)
    trace = Trace()
    running: dict[str, int] = {}

    def take(actions: list[Action]) -> None:
        trace.actions.extend(actions)
        for action in actions:
            if isinstance(action, Start):
                running[action.step_id] = action.attempt
                trace.started.setdefault(action.step_id, trace.clock)
                trace.starts.append(action.step_id)
                trace.start_times.append((action.step_id, trace.clock))
        trace.max_running = max(trace.max_running, len(running))

    take(core.begin())
    while not core.finished:
        trace.clock += 1
        if running:
            step_id = rnd.choice(sorted(running))
            attempt = running.pop(step_id)
            trace.ended[step_id] = trace.clock
            take(core.attempt_ended(step_id, attempt, step_id not in fails, trace.clock))
        else:
            due = core.next_wake()
            assert due is not None, "stuck: nothing running, nothing due"
            trace.clock = max(trace.clock, due)
            take(core.wake(trace.clock))
    return core, trace


def chain(*ids: str, **fields: object) -> list[StepRule]:
    return [StepRule(s, (ids[i - 1],) if i else (), **fields) for i, s in enumerate(ids)]  # type: ignore[arg-type]


def test_dependencies_start_after_they_end() -> None:
    core, trace = simulate(chain("a", "b", "c"), slots=4)
    assert trace.starts == ["a", "b", "c"]
    assert all(core.outcome(s) is Outcome.SUCCEEDED for s in "abc")
    assert trace.actions[-1] == Finish("succeeded", None)


def test_abort_cancels_pending_and_running_steps() -> None:
    rules = [StepRule("a"), StepRule("slow"), StepRule("b", ("a",)), StepRule("c", ("b",))]
    core = RunCore(rules, slots=2)
    assert core.begin() == [Start("a", 1), Start("slow", 1)]
    actions = core.attempt_ended("a", 1, False, 1.0)
    reason = "cancelled: 'a' failed (abort)"
    assert Cancel("slow", reason, running=True) in actions
    assert Cancel("b", reason, running=False) in actions and Cancel("c", reason, running=False) in actions
    assert not any(isinstance(a, Start) for a in actions)
    actions = core.attempt_ended("slow", 1, False, 2.0)
    assert actions == [
        Ended("slow", 1, Verdict.CANCELED, reason),
        Cancel("slow", reason, running=False),
        Finish("failed", "step 'a' failed"),
    ]
    assert core.outcome("slow") is Outcome.CANCELED


def test_skip_dependents_reaches_transitive_dependents_only() -> None:
    rules = [
        StepRule("a", on_failure="skip_dependents"),
        StepRule("b", ("a",)),
        StepRule("c", ("b",)),
        StepRule("d"),
    ]
    core, trace = simulate(rules, slots=1, fails={"a"})
    assert core.outcome("b") is Outcome.SKIPPED and core.reason("b") == "dependency 'a' failed"
    assert core.reason("c") == "dependency 'a' failed"
    assert core.outcome("d") is Outcome.SUCCEEDED


def test_continue_runs_dependents_and_fails_the_run() -> None:
    core, trace = simulate([StepRule("a", on_failure="continue"), StepRule("b", ("a",))], slots=1, fails={"a"})
    assert core.outcome("b") is Outcome.SUCCEEDED
    assert trace.actions[-1] == Finish("failed", "step 'a' failed")


def test_non_critical_abort_acts_as_skip_dependents_and_run_succeeds() -> None:
    rules = [StepRule("a", critical=False), StepRule("b", ("a",)), StepRule("c")]
    core, trace = simulate(rules, slots=1, fails={"a"})
    assert core.outcome("b") is Outcome.SKIPPED and core.outcome("c") is Outcome.SUCCEEDED
    assert trace.actions[-1] == Finish("succeeded", None)


def test_retry_with_delay_is_a_wait_not_a_sleep() -> None:
    core = RunCore([StepRule("a", retries=1, retry_delay=5.0), StepRule("b")], slots=1)
    assert core.begin() == [Start("a", 1, Verdict.RETRY)]
    actions = core.attempt_ended("a", 1, False, 10.0)
    # the slot serves another step meanwhile
    retried = Ended("a", 1, Verdict.RETRY, retry_reason="retried after 5 s: failure is in retry_on", retry_delay=5.0)
    assert actions == [retried, Wait("a", 2, 15.0), Start("b", 1)]
    assert core.next_wake() == 15.0
    assert core.wake(12.0) == []
    core.attempt_ended("b", 1, True, 13.0)
    assert core.wake(15.0) == [Start("a", 2)]
    assert core.attempt_ended("a", 2, True, 16.0) == [Ended("a", 2, Verdict.SUCCEEDED), Finish("succeeded", None)]
    assert core.attempts("a") == 2


def test_a_given_retry_delay_overrides_the_steps() -> None:
    core = RunCore([StepRule("a", retries=2, retry_delay=5.0)], slots=1)
    core.begin()
    assert core.attempt_ended("a", 1, False, 10.0, retry_delay=1.5)[1:] == [Wait("a", 2, 11.5)]
    assert core.wake(11.5) == [Start("a", 2, Verdict.RETRY)]
    assert core.attempt_ended("a", 2, False, 20.0, retry_delay=0.0)[1:] == [Start("a", 3)]


def test_explicit_zero_retries_means_one_attempt() -> None:
    core, trace = simulate([StepRule("a", retries=0)], slots=1, fails={"a"})
    assert core.attempts("a") == 1


def test_status_condition_runs_cleanup_after_abort() -> None:
    always = FakeCondition("always()", True, True)
    rules = [StepRule("work"), StepRule("cleanup", ("work",), condition=always), StepRule("other", ("work",))]
    core, trace = simulate(rules, slots=1, fails={"work"})
    assert core.outcome("cleanup") is Outcome.SUCCEEDED
    assert core.outcome("other") is Outcome.CANCELED


def test_false_condition_skips_with_the_expression() -> None:
    cond = FakeCondition("vars.BRANCH == 'main'", False, False)
    core, trace = simulate([StepRule("deploy", condition=cond), StepRule("after", ("deploy",))], slots=1)
    assert core.reason("deploy") == "condition false: vars.BRANCH == 'main'"
    assert core.reason("after") == "dependency 'deploy' was skipped"


def test_deselected_dependencies_count_as_succeeded() -> None:
    core, trace = simulate([StepRule("b", ("a",))], slots=1)
    assert core.outcome("b") is Outcome.SUCCEEDED


def test_resumed_steps_are_skipped_and_dependents_run() -> None:
    core = RunCore([StepRule("a"), StepRule("b", ("a",))], slots=1, done_before={"a": "succeeded in run r1"})
    assert core.begin() == [Skip("a", "succeeded in run r1"), Start("b", 1)]


def test_a_chain_that_succeeded_before_is_skipped_whole() -> None:
    done = {"a": "succeeded in run r1", "b": "succeeded in run r1"}
    core = RunCore([StepRule("a"), StepRule("b", ("a",)), StepRule("c", ("b",))], slots=2, done_before=done)
    assert core.begin() == [Skip("a", "succeeded in run r1"), Skip("b", "succeeded in run r1"), Start("c", 1)]
    everything = RunCore([StepRule("a"), StepRule("b", ("a",))], slots=2, done_before=done)
    actions = everything.begin()
    assert [a for a in actions if isinstance(a, Start)] == []
    assert actions[-1] == Finish("succeeded", None)


def test_a_step_cancelled_on_request_skips_its_dependents_and_the_rest_goes_on() -> None:
    rules = [StepRule("long"), StepRule("after", ("long",)), StepRule("slow"), StepRule("later", ("slow",))]
    core = RunCore(rules, slots=2)
    assert core.begin() == [Start("long", 1), Start("slow", 1)]
    reason = "cancelled on request"
    assert core.cancel_step("long", reason) == [Cancel("long", reason, running=True)]
    assert core.cancel_step("later", reason) == [Cancel("later", reason, running=False)]  # pending
    assert core.cancel_step("later", reason) == []  # already ended
    assert core.attempt_ended("long", 1, False, 1.0) == [
        Ended("long", 1, Verdict.CANCELED, reason),
        Cancel("long", reason, running=False),  # its verdict, now that the attempt has ended
        Skip("after", "dependency 'long' was cancelled"),
    ]
    assert core.outcome("long") is Outcome.CANCELED and core.reason("long") == reason
    assert core.attempt_ended("slow", 1, True, 2.0)[1:] == [Finish("canceled", "step 'long' was cancelled on request")]
    assert core.outcome("later") is Outcome.CANCELED and core.attempts("later") == 0


def test_cancelling_a_non_critical_step_leaves_the_run_state_alone() -> None:
    core = RunCore([StepRule("optional", critical=False), StepRule("main")], slots=1)
    core.begin()
    assert core.cancel_step("main", "cancelled on request") == [Cancel("main", "cancelled on request", running=False)]
    core = RunCore([StepRule("optional", critical=False), StepRule("main")], slots=1)
    core.begin()
    core.cancel_step("optional", "cancelled on request")
    assert core.attempt_ended("optional", 1, False, 1.0) == [
        Ended("optional", 1, Verdict.CANCELED, "cancelled on request"),
        Cancel("optional", "cancelled on request", running=False),
        Start("main", 1),
    ]
    assert core.attempt_ended("main", 1, True, 2.0)[1:] == [Finish("succeeded", None)]


def test_interrupt_cancels_everything() -> None:
    core = RunCore(chain("a", "b"), slots=1)
    core.begin()
    actions = core.interrupt("cancelled: interrupted")
    assert actions == [
        Cancel("a", "cancelled: interrupted", running=True),
        Cancel("b", "cancelled: interrupted", running=False),
    ]
    assert core.attempt_ended("a", 1, False, 1.0)[-1] == Finish("canceled", "cancelled: interrupted")


def test_locks_keep_holders_apart_without_holding_up_others() -> None:
    rules = [StepRule("push1", locks=("push",)), StepRule("push2", locks=("push",)), StepRule("free")]
    core = RunCore(rules, slots=3)
    actions = core.begin()
    assert Start("push1", 1) in actions and Start("free", 1) in actions
    assert Blocked("push2", "push", "push1") in actions
    assert Start("push2", 1) in core.attempt_ended("push1", 1, True, 1.0)


def test_critical_path_first() -> None:
    # 3 short independent steps declared before a chain: the chain's head starts first.
    rules = [StepRule(f"x{i}") for i in range(3)] + chain("c1", "c2", "c3")
    core = RunCore(rules, slots=1)
    assert core.begin() == [Start("c1", 1)]


def test_attempt_of_a_step_not_running_is_our_bug() -> None:
    core = RunCore(chain("a"), slots=1)
    core.begin()
    with pytest.raises(ValueError):
        core.attempt_ended("a", 2, True, 0.0)


def test_graph_helpers() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    assert topological_order(deps) == ["a", "b", "c", "d"]
    assert transitive_dependents(deps, ["a"]) == {"b", "c"}
    assert remaining_path(deps, {})["a"] == 3.0
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle(deps) is None


def test_a_ten_thousand_step_chain_needs_no_recursion() -> None:
    rules = chain(*(f"s{i}" for i in range(10_000)))
    core = RunCore(rules, slots=2)
    core.begin()
    actions = core.attempt_ended("s0", 1, False, 0.0)
    assert len([a for a in actions if isinstance(a, Cancel)]) == 9_999


FORBIDDEN = {"pytest", "_pytest", "xdist", "subprocess", "sqlite3"}


def test_core_imports_no_io_modules() -> None:
    # Measured against what the allowed dependencies load themselves (on Python 3.10 pydantic's
    # uuid import brings in platform and so subprocess); the source check below covers the rest.
    code = (
        "import sys, pydantic, lark, uuid\n"
        "before = set(sys.modules)\n"
        "import pytest_planrun.core.decide, pytest_planrun.core.graph, pytest_planrun.core.state, "
        "pytest_planrun.core.conditions, pytest_planrun.core.retry, pytest_planrun.core.whatif, "
        "pytest_planrun.plan, pytest_planrun.plan.rules\n"
        f"bad = set({sorted(FORBIDDEN)!r}) & (set(sys.modules) - before)\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("package", ["core", "plan"])
def test_core_and_plan_sources_import_no_io_modules(package: str) -> None:
    import ast

    root = Path(pytest_planrun.__file__).parent / package
    for source in root.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & FORBIDDEN, f"{source.name}: imports {names}"


# -- properties over random DAGs and outcomes ----------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 25) -> dict[str, list[str]]:
    ids = [f"s{i}" for i in range(draw(st.integers(1, max_steps)))]
    return {
        s: draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=4)) if i else [] for i, s in enumerate(ids)
    }


policies: st.SearchStrategy[OnFailure] = st.sampled_from(["abort", "skip_dependents", "continue"])


@settings(max_examples=300, deadline=None)
@given(dags(), st.integers(1, 4), st.randoms(use_true_random=False), st.data())
def test_random_runs_keep_the_invariants(
    deps: dict[str, list[str]], slots: int, rnd: Random, data: st.DataObject
) -> None:
    fails = data.draw(st.sets(st.sampled_from(sorted(deps))))
    rules = [
        StepRule(
            s,
            tuple(d),
            on_failure=data.draw(policies),
            critical=data.draw(st.booleans()),
            retries=data.draw(st.integers(0, 2)),
        )
        for s, d in deps.items()
    ]
    by_id = {r.step_id: r for r in rules}
    core, trace = simulate(rules, slots=slots, fails=fails, rnd=rnd)
    # every step ends in exactly one state
    assert all(core.phase(s) is Phase.DONE for s in deps)
    finals = [a for a in trace.actions if isinstance(a, Finish)]
    assert len(finals) == 1 and trace.actions[-1] is finals[0]
    # no step starts before its dependencies end
    for s, ds in deps.items():
        if s in trace.started:
            assert all(trace.ended[d] <= trace.started[s] for d in ds)
    assert trace.max_running <= slots
    # skips only reach transitive dependents of a failed step
    failed = {s for s in deps if core.outcome(s) is Outcome.FAILED}
    skipped = {s for s in deps if core.outcome(s) is Outcome.SKIPPED}
    assert skipped <= transitive_dependents(deps, failed)
    # nothing starts after an abort
    aborts = [s for s in failed if by_id[s].on_failure == "abort" and by_id[s].critical]
    if aborts:
        abort_time = min(trace.ended[s] for s in aborts)
        assert not [s for s, t in trace.start_times if t >= abort_time]
    # attempts never exceed 1 + retries
    assert all(core.attempts(s) <= by_id[s].retries + 1 for s in deps)


@given(dags(), st.integers(1, 4), st.data())
def test_resume_runs_exactly_what_did_not_succeed_and_its_dependents(
    deps: dict[str, list[str]], slots: int, data: st.DataObject
) -> None:
    redo = data.draw(st.sets(st.sampled_from(sorted(deps))))
    redo |= transitive_dependents(deps, redo)
    done = {s: "succeeded in run r0" for s in deps if s not in redo}
    core = RunCore([StepRule(s, tuple(d)) for s, d in deps.items()], slots=slots, done_before=done)
    started: list[str] = []
    actions = core.begin()
    while True:
        starts = [a for a in actions if isinstance(a, Start)]
        started.extend(a.step_id for a in starts)
        if not starts:
            break
        actions = [x for a in starts for x in core.attempt_ended(a.step_id, a.attempt, True, 0.0)]
    assert core.finished
    assert sorted(started) == sorted(redo)
    assert all(core.outcome(s) is Outcome.SKIPPED and core.reason(s) == done[s] for s in done)
