"""The retry policy (core/retry.py) and the core's retry verdicts: delays, retry_on, the reasons given."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_planrun.core.conditions import compile_condition
from pytest_planrun.core.decide import RunCore
from pytest_planrun.core.retry import AttemptFailure, RetryPolicy, retry_delay
from pytest_planrun.core.state import Ended, Finish, Start, StepRule, Verdict, Wait

delays = st.floats(0.0, 1000.0, allow_nan=False)
factors = st.floats(1.0, 10.0, allow_nan=False)
caps = st.none() | st.floats(0.0, 5000.0, allow_nan=False)


@st.composite
def policies(draw: st.DrawFn, jitter: bool = False) -> RetryPolicy:
    return RetryPolicy(retries=10, delay=draw(delays), backoff=draw(factors), max_delay=draw(caps), jitter=jitter)


def test_fixed_delay_backoff_and_cap() -> None:
    assert [retry_delay(RetryPolicy(delay=5.0), n) for n in (1, 2, 3)] == [5.0, 5.0, 5.0]
    doubling = RetryPolicy(delay=5.0, backoff=2.0, max_delay=30.0)
    assert [retry_delay(doubling, n) for n in (1, 2, 3, 4, 5)] == [5.0, 10.0, 20.0, 30.0, 30.0]
    assert retry_delay(RetryPolicy(delay=0.0, backoff=2.0), 3) == 0.0
    assert retry_delay(RetryPolicy(delay=1.0, backoff=2.0, max_delay=60.0), 5000) == 60.0  # no overflow
    with pytest.raises(ValueError, match="attempt must be at least 1"):
        retry_delay(doubling, 0)
    with pytest.raises(ValueError, match="random source"):
        retry_delay(RetryPolicy(delay=1.0, jitter=True), 1)


@given(policies(), st.integers(1, 60))
def test_delays_grow_until_the_cap_and_never_pass_it(policy: RetryPolicy, attempt: int) -> None:
    now, later = retry_delay(policy, attempt), retry_delay(policy, attempt + 1)
    assert now <= later
    if policy.max_delay is not None:
        assert later <= policy.max_delay
    if policy.backoff > 1 and policy.delay > 0 and (policy.max_delay is None or later < policy.max_delay):
        assert now < later  # strictly growing below the cap


@given(policies(jitter=True), st.integers(1, 60), st.integers())
def test_jitter_stays_within_the_delay_and_repeats_with_the_seed(policy: RetryPolicy, attempt: int, seed: int) -> None:
    plain = retry_delay(RetryPolicy(policy.retries, policy.delay, policy.backoff, policy.max_delay), attempt)
    drawn = retry_delay(policy, attempt, Random(seed))
    assert 0.0 <= drawn <= plain
    assert drawn == retry_delay(policy, attempt, Random(seed))


def test_jitter_spreads_the_delays() -> None:
    policy = RetryPolicy(delay=10.0, jitter=True)
    rng = Random(7)
    assert len({retry_delay(policy, 1, rng) for _ in range(20)}) == 20


@pytest.mark.parametrize(
    ("retry_on", "failure", "covered"),
    [
        (("failure", "timeout"), AttemptFailure("failure", 2), True),
        (("failure", "timeout"), AttemptFailure("timeout"), True),
        (("failure", "timeout"), AttemptFailure("no_output"), True),  # a no-output timeout is a timeout
        (("failure",), AttemptFailure("timeout"), False),
        (("timeout",), AttemptFailure("failure", 1), False),
        (("no_output",), AttemptFailure("no_output"), True),
        (("no_output",), AttemptFailure("timeout"), False),
        ((1, 128), AttemptFailure("failure", 1), True),
        ((1, 128), AttemptFailure("failure", 2), False),
        ((137,), AttemptFailure("failure", -9), True),  # killed by SIGKILL: 128 + 9, as a shell says
        ((1,), AttemptFailure("failure", None), False),  # no exit code at all (executable not found)
        ((), AttemptFailure("failure", 1), False),
    ],
)
def test_retry_on(retry_on: tuple[str | int, ...], failure: AttemptFailure, covered: bool) -> None:
    assert RetryPolicy(retries=1, retry_on=retry_on).covers(failure) is covered


def test_the_core_waits_the_policys_growing_delays_and_says_so() -> None:
    core = RunCore([StepRule("fetch", retries=3, retry_delay=2.0, retry_backoff=3.0, retry_max_delay=10.0)], slots=1)
    core.begin()
    waits = []
    for attempt, now in ((1, 0.0), (2, 10.0), (3, 30.0)):
        ended, wait = core.attempt_ended("fetch", attempt, False, now, failure=AttemptFailure("failure", 1))
        assert isinstance(ended, Ended) and isinstance(wait, Wait)
        waits.append(wait.until - now)
        assert ended.retry_delay == wait.until - now
        assert ended.retry_reason == f"retried after {wait.until - now:g} s: exit code 1 is in retry_on"
        assert core.wake(wait.until) == [Start("fetch", attempt + 1, Verdict.RETRY if attempt < 3 else Verdict.FAILED)]
    assert waits == [2.0, 6.0, 10.0]
    ended, finish = core.attempt_ended("fetch", 4, False, 50.0, failure=AttemptFailure("failure", 1))
    assert ended == Ended("fetch", 4, Verdict.FAILED, retry_reason="not retried: no retries left (4 attempts made)")
    assert finish == Finish("failed", "step 'fetch' failed")


def test_a_failure_not_in_retry_on_is_final() -> None:
    core = RunCore(
        [StepRule("cli", retries=2, retry_on=("failure",)), StepRule("opt", retries=2, critical=False)], slots=2
    )
    core.begin()
    actions = core.attempt_ended("opt", 1, False, 0.0, failure=AttemptFailure("failure", 2))
    assert actions[0] == Ended(
        "opt", 1, Verdict.RETRY, retry_reason="retried at once: exit code 2 is in retry_on", retry_delay=0.0
    )
    actions = core.attempt_ended("cli", 1, False, 0.0, failure=AttemptFailure("timeout"))
    assert actions[0] == Ended("cli", 1, Verdict.FAILED, retry_reason="not retried: timeout is not in retry_on")
    assert core.attempts("cli") == 1


def test_a_retry_the_abort_prevents_says_why() -> None:
    cleanup = StepRule("cleanup", ("breaker",), retries=2, condition=compile_condition("always()"))
    core = RunCore([StepRule("breaker"), cleanup], slots=1)
    core.begin()
    assert core.attempt_ended("breaker", 1, False, 0.0)[-1] == Start("cleanup", 1, Verdict.FAILED)
    ended = core.attempt_ended("cleanup", 1, False, 1.0)[0]
    reason = "not retried: the run is stopping (cancelled: 'breaker' failed (abort))"
    assert ended == Ended("cleanup", 1, Verdict.FAILED, retry_reason=reason)


def test_a_given_delay_replaces_the_policys_and_draws_no_jitter() -> None:
    rule = StepRule("a", retries=2, retry_delay=10.0, retry_jitter=True)
    core = RunCore([rule], slots=1, rng=Random(1))
    core.begin()
    assert core.attempt_ended("a", 1, False, 0.0, retry_delay=0.5)[1] == Wait("a", 2, 0.5)
    core.wake(0.5)
    jittered = core.attempt_ended("a", 2, False, 1.0)[1]
    assert jittered == Wait("a", 3, 1.0 + retry_delay(rule.retry_policy, 2, Random(1)))  # the seed's first draw


def test_an_empty_retry_on_retries_nothing_and_is_foreseen_at_start() -> None:
    core = RunCore([StepRule("a", retries=2, retry_on=())], slots=1)
    assert core.begin() == [Start("a", 1, Verdict.FAILED)]
    ended = core.attempt_ended("a", 1, False, 0.0, failure=AttemptFailure("failure", 1))[0]
    assert ended == Ended("a", 1, Verdict.FAILED, retry_reason="not retried: exit code 1 is not in retry_on")
