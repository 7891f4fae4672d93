"""The one place a run's decisions are made: events in (attempt ended, timer due, interrupt), actions out.

Both drivers — the in-process serial runner and the xdist scheduler on the controller — feed a
``RunCore`` and carry out the actions it returns, so both modes skip, cancel and retry the same steps
for the same reasons. The core never reads a clock: the time is passed in.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random

from .graph import assumed_succeeded, dependents_of, remaining_path
from .retry import AttemptFailure
from .retry import retry_delay as policy_delay
from .state import (
    Action,
    Blocked,
    Cancel,
    Ended,
    Finish,
    Outcome,
    Skip,
    Start,
    StepRule,
    Verdict,
    Wait,
)


class Phase(enum.Enum):
    PENDING = "pending"  # some dependency has not ended
    READY = "ready"  # may start once a slot (and its locks) are free
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"  # a failed attempt will be retried after its delay
    DONE = "done"


@dataclass(frozen=True, slots=True)
class _Context:
    """What a condition sees (satisfies ``core.conditions.ConditionContext``'s fields)."""

    dependencies_ok: bool
    any_failed: bool
    cancelled: bool
    outcomes: Mapping[str, str]
    variables: Mapping[str, str]


class RunCore:
    """Scheduling state of one run. Pure: no I/O, no clock, deterministic for the same inputs."""

    def __init__(
        self,
        rules: Sequence[StepRule],
        *,
        slots: int,
        variables: Mapping[str, str] | None = None,
        done_before: Mapping[str, str] | None = None,
        rng: Random | None = None,
    ) -> None:
        """``rules`` in declaration order; dependencies on steps not in ``rules`` count as succeeded
        (deselected with ``-k``/``-m``). ``done_before`` maps steps that succeeded in an earlier run
        (``--planrun-resume``) to the reason they are skipped now; their dependents run as if they succeeded.
        ``rng`` draws retry jitter (default: seeded with 0, so runs without a seed repeat).
        """
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self._variables = dict(variables or {})
        self._rules = {r.step_id: r for r in rules}
        self._index = {r.step_id: i for i, r in enumerate(rules)}
        # selected step -> its deselected dependencies, which count as succeeded (said in the header)
        self.assumed = assumed_succeeded({r.step_id: r.depends_on for r in rules})
        self._deps = {r.step_id: [d for d in r.depends_on if d in self._rules] for r in rules}
        self._users = dependents_of(self._deps)
        self._priority = remaining_path(self._deps, {r.step_id: r.cost for r in rules})
        self._waiting_for = {s: len(d) for s, d in self._deps.items()}
        self._phase = dict.fromkeys(self._rules, Phase.PENDING)
        self._attempts = dict.fromkeys(self._rules, 0)
        self._outcome: dict[str, Outcome] = {}
        self._reason: dict[str, str | None] = {}
        # clean: the step and all its ancestors succeeded (or failed under `continue`): success()
        self._clean: dict[str, bool] = {}
        # tainted: the step or an ancestor failed (not under `continue`): failure()
        self._tainted: dict[str, bool] = {}
        self._cause: dict[str, str] = {}  # why a step is not clean, phrased for its dependents
        self._ready: list[tuple[float, int, str]] = []
        self._timers: list[tuple[float, int, str]] = []
        self._running: set[str] = set()
        self._cancelling: dict[str, str] = {}
        self._locks: dict[str, str] = {}  # lock -> holder
        self._blocked_on: dict[str, str] = {}  # step -> lock it was last reported waiting for
        self._requested: set[str] = set()  # cancelled on request (``planrun cancel RUN STEP``)
        self._aborted_by: str | None = None
        self._abort_reason: str | None = None
        self._interrupted: str | None = None
        self._finished = False
        self._done_count = 0
        self._outcome_names: dict[str, str] = {}  # what conditions read as steps.<id>.outcome
        self._work: deque[tuple[str, Outcome, str | None, bool | None]] = deque()
        self._draining = False
        self._done_before = dict(done_before or {})
        self._rng = rng if rng is not None else Random(0)

    # -- queries --------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def phase(self, step_id: str) -> Phase:
        return self._phase[step_id]

    def outcome(self, step_id: str) -> Outcome | None:
        return self._outcome.get(step_id)

    def reason(self, step_id: str) -> str | None:
        return self._reason.get(step_id)

    def attempts(self, step_id: str) -> int:
        return self._attempts[step_id]

    def is_running(self, step_id: str, attempt: int) -> bool:
        """Whether ``attempt`` of ``step_id`` is the one under way (its end is expected)."""
        return self._phase[step_id] is Phase.RUNNING and self._attempts[step_id] == attempt

    def next_wake(self) -> float | None:
        """When the earliest retry is due, for the driver's timer (None: no retry waiting)."""
        return self._timers[0][0] if self._timers else None

    def will_retry(self, step_id: str, attempt: int, failure: AttemptFailure | None = None) -> bool:
        """Whether a failure of this attempt would be retried, as things stand now; without
        ``failure``, whether some failure would be (one that ``retry_on`` lists)."""
        return self._not_retried(step_id, attempt, failure) is None

    def _not_retried(self, step_id: str, attempt: int, failure: AttemptFailure | None) -> str | None:
        """Why a failure of this attempt is final (None: it is retried), phrased for reports."""
        policy = self._rules[step_id].retry_policy
        if policy.retries == 0:
            return "the step has no retries"
        if failure is not None and not policy.covers(failure):
            return f"{failure.describe()} is not in retry_on"
        if not policy.retry_on:
            return "retry_on is empty"
        if attempt > policy.retries:
            return f"no retries left ({attempt} attempts made)"
        stopping = self._abort_reason if self._aborted_by is not None else self._interrupted
        return f"the run is stopping ({stopping})" if stopping else None

    # -- events ---------------------------------------------------------------------------------

    def begin(self) -> list[Action]:
        """Start the run: skip what succeeded before, resolve steps without dependencies."""
        actions: list[Action] = []
        for step_id, reason in self._done_before.items():
            if step_id in self._rules:
                self._end(step_id, Outcome.SKIPPED, reason, actions, clean=True)
        for step_id in self._rules:
            if self._phase[step_id] is Phase.PENDING and self._waiting_for[step_id] == 0:
                self._resolve(step_id, actions)
        self._fill(actions)
        return actions

    def attempt_ended(
        self,
        step_id: str,
        attempt: int,
        succeeded: bool,
        now: float,
        retry_delay: float | None = None,
        failure: AttemptFailure | None = None,
    ) -> list[Action]:
        """Record how an attempt ended and say what must happen next, starting with the ``Ended``
        verdict on this attempt. ``retry_delay`` overrides the step's policy for the delay before a
        retry (a plugin's ``pytest_planrun_retry_delay``); ``failure`` says how a failed attempt
        ended, for ``retry_on`` (default: a failure without an exit code)."""
        if not self.is_running(step_id, attempt):
            raise ValueError(f"step {step_id!r} attempt {attempt} is not running")
        self._running.discard(step_id)
        rule = self._rules[step_id]
        self._release_locks(step_id)
        cancel_reason = self._cancelling.pop(step_id, None)
        failure = failure or AttemptFailure()
        verdict = self._verdict(step_id, attempt, succeeded, cancel_reason, failure)
        ended = Ended(step_id, attempt, verdict, cancel_reason)
        if verdict is Verdict.RETRY:
            delay = retry_delay if retry_delay is not None else policy_delay(rule.retry_policy, attempt, self._rng)
            how = f"retried after {delay:g} s" if delay > 0 else "retried at once"
            ended = Ended(step_id, attempt, verdict, None, f"{how}: {failure.describe()} is in retry_on", delay)
        elif verdict in (Verdict.FAILED, Verdict.ALLOWED_FAILURE) and rule.retries > 0:
            why = self._not_retried(step_id, attempt, failure)
            ended = Ended(step_id, attempt, verdict, None, f"not retried: {why}")
        actions: list[Action] = [ended]
        if verdict is Verdict.SUCCEEDED:
            self._end(step_id, Outcome.SUCCEEDED, None, actions)
        elif verdict is Verdict.CANCELED:
            self._end(step_id, Outcome.CANCELED, cancel_reason, actions)
        elif verdict is Verdict.RETRY:
            delay = ended.retry_delay or 0.0
            if delay > 0:
                self._phase[step_id] = Phase.RETRY_WAIT
                until = now + delay
                heapq.heappush(self._timers, (until, self._index[step_id], step_id))
                actions.append(Wait(step_id, attempt + 1, until))
            else:
                self._make_ready(step_id)
        else:
            self._fail(step_id, actions)
        self._fill(actions)
        return actions

    def _verdict(
        self,
        step_id: str,
        attempt: int,
        succeeded: bool,
        cancel_reason: str | None,
        failure: AttemptFailure | None = None,
    ) -> Verdict:
        if succeeded:
            return Verdict.SUCCEEDED
        if cancel_reason is not None:  # a failure that crossed a cancel is the cancel's doing
            return Verdict.CANCELED
        if self.will_retry(step_id, attempt, failure):
            return Verdict.RETRY
        return Verdict.FAILED if self._rules[step_id].critical else Verdict.ALLOWED_FAILURE

    def withdraw(self, step_id: str, attempt: int) -> list[Action]:
        """A started attempt that a cancel overtook before the driver handed it to a worker: it
        never ran, so it does not count; the step ends cancelled, reported as a verdict."""
        if (
            self._phase[step_id] is not Phase.RUNNING
            or attempt != self._attempts[step_id]
            or step_id not in self._cancelling
        ):
            raise ValueError(f"step {step_id!r} attempt {attempt} is not being cancelled")
        self._running.discard(step_id)
        self._release_locks(step_id)
        self._attempts[step_id] -= 1
        actions: list[Action] = []
        self._end(step_id, Outcome.CANCELED, self._cancelling.pop(step_id), actions)
        self._fill(actions)
        return actions

    def _release_locks(self, step_id: str) -> None:
        for lock in self._rules[step_id].locks:
            if self._locks.get(lock) == step_id:
                del self._locks[lock]

    def wake(self, now: float) -> list[Action]:
        """Move retries that are due back to the ready queue."""
        actions: list[Action] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, step_id = heapq.heappop(self._timers)
            if self._phase[step_id] is Phase.RETRY_WAIT:
                self._make_ready(step_id)
        self._fill(actions)
        return actions

    def interrupt(self, reason: str) -> list[Action]:
        """Ctrl-C, SIGTERM, ``-x``: cancel everything, running steps included; nothing new starts."""
        actions: list[Action] = []
        if self._finished or self._interrupted:
            return actions
        self._interrupted = reason
        for step_id in sorted(self._running, key=self._index.__getitem__):
            if step_id not in self._cancelling:
                self._cancelling[step_id] = reason
                actions.append(Cancel(step_id, reason, running=True))
        for step_id in self._rules:
            if self._phase[step_id] not in (Phase.DONE, Phase.RUNNING):
                self._end(step_id, Outcome.CANCELED, reason, actions)
        self._check_finished(actions)
        return actions

    def cancel_step(self, step_id: str, reason: str) -> list[Action]:
        """Someone asked to cancel one step: a running attempt is stopped, a step that has not
        started never will; it ends cancelled, its dependents are skipped, the rest goes on. A
        cancelled critical step makes the run ``canceled``. A step already ended is left alone."""
        actions: list[Action] = []
        phase = self._phase[step_id]
        if phase is Phase.DONE or self._finished:
            return actions
        self._requested.add(step_id)
        if phase is Phase.RUNNING:
            if step_id not in self._cancelling:
                self._cancelling[step_id] = reason
                actions.append(Cancel(step_id, reason, running=True))
            return actions
        self._end(step_id, Outcome.CANCELED, reason, actions)
        self._fill(actions)
        return actions

    def set_slots(self, slots: int) -> list[Action]:
        """The number of workers changed (one crashed, one was added)."""
        self.slots = max(1, slots)
        actions: list[Action] = []
        self._fill(actions)
        return actions

    # -- internals ------------------------------------------------------------------------------

    def _make_ready(self, step_id: str) -> None:
        self._phase[step_id] = Phase.READY
        heapq.heappush(self._ready, (-self._priority[step_id], self._index[step_id], step_id))

    def _context(self, step_id: str) -> _Context:
        deps = self._deps[step_id]
        return _Context(
            dependencies_ok=all(self._clean.get(d, False) for d in deps),
            any_failed=any(self._tainted.get(d, False) for d in deps),
            cancelled=self._aborted_by is not None or self._interrupted is not None,
            outcomes=self._outcome_names,
            variables=self._variables,
        )

    def _resolve(self, step_id: str, actions: list[Action]) -> None:
        """Every dependency of ``step_id`` has ended: run it, skip it or cancel it."""
        rule = self._rules[step_id]
        if self._interrupted:
            self._end(step_id, Outcome.CANCELED, self._interrupted, actions)
            return
        ctx = self._context(step_id)
        condition = rule.condition
        if condition is not None and condition.uses_status_function:
            if condition.evaluate(ctx):
                self._make_ready(step_id)
            elif self._abort_reason is not None:
                self._end(step_id, Outcome.CANCELED, self._abort_reason, actions)
            else:
                self._end(step_id, Outcome.SKIPPED, f"condition false: {condition.text}", actions)
            return
        # Without a status function, success() is implied (GitHub Actions' rule).
        if self._abort_reason is not None:
            self._end(step_id, Outcome.CANCELED, self._abort_reason, actions)
        elif not ctx.dependencies_ok:
            cause = next(self._cause[d] for d in self._deps[step_id] if not self._clean.get(d, False))
            self._end(step_id, Outcome.SKIPPED, cause, actions)
        elif condition is not None and not condition.evaluate(ctx):
            self._end(step_id, Outcome.SKIPPED, f"condition false: {condition.text}", actions)
        else:
            self._make_ready(step_id)

    def _fail(self, step_id: str, actions: list[Action]) -> None:
        rule = self._rules[step_id]
        aborting = rule.on_failure == "abort" and rule.critical and self._aborted_by is None
        if aborting:  # before the step ends, so its dependents are cancelled rather than skipped
            self._aborted_by = step_id
            self._abort_reason = f"cancelled: '{step_id}' failed (abort)"
        self._end(step_id, Outcome.FAILED, None, actions, clean=rule.on_failure == "continue")
        if aborting:
            self._abort(actions)

    def _abort(self, actions: list[Action]) -> None:
        """Nothing new starts; running steps are cancelled; waiting ones too, unless a status
        condition (``always()``, ``failure()``, ``cancelled()``) lets them run for cleanup."""
        reason = self._abort_reason
        assert reason is not None
        for step_id in sorted(self._running, key=self._index.__getitem__):
            self._cancelling[step_id] = reason
            actions.append(Cancel(step_id, reason, running=True))
        requeue = []
        while self._ready:
            requeue.append(heapq.heappop(self._ready)[2])
        for step_id in self._rules:
            phase = self._phase[step_id]
            if phase is Phase.RETRY_WAIT or (phase is Phase.PENDING and not self._may_run_after_abort(step_id)):
                self._end(step_id, Outcome.CANCELED, reason, actions)
        for step_id in requeue:
            if self._phase[step_id] is Phase.READY:
                self._resolve(step_id, actions)

    def _may_run_after_abort(self, step_id: str) -> bool:
        condition = self._rules[step_id].condition
        return condition is not None and condition.uses_status_function

    def _end(
        self,
        step_id: str,
        outcome: Outcome,
        reason: str | None,
        actions: list[Action],
        *,
        clean: bool | None = None,
    ) -> None:
        """Mark ``step_id`` ended, report it, and resolve dependents whose dependencies all ended.

        Iterative (a work list, not recursion): a skip can cascade down a 10,000-step chain.
        """
        self._work.append((step_id, outcome, reason, clean))
        if self._draining:
            return
        self._draining = True
        try:
            while self._work:
                self._end_one(*self._work.popleft(), actions)
        finally:
            self._draining = False
        self._check_finished(actions)

    def _end_one(
        self, step_id: str, outcome: Outcome, reason: str | None, clean: bool | None, actions: list[Action]
    ) -> None:
        if self._phase[step_id] is Phase.DONE:
            return
        self._phase[step_id] = Phase.DONE
        self._done_count += 1
        self._outcome[step_id] = outcome
        self._outcome_names[step_id] = outcome.condition_name
        self._reason[step_id] = reason
        deps = self._deps[step_id]
        # A step cancelled by an interrupt may end before its dependencies do.
        upstream_clean = all(self._clean.get(d, False) for d in deps)
        if clean is None:
            clean = outcome is Outcome.SUCCEEDED
        self._clean[step_id] = clean and upstream_clean
        failed_here = outcome is Outcome.FAILED and self._rules[step_id].on_failure != "continue"
        self._tainted[step_id] = failed_here or any(self._tainted.get(d, False) for d in deps)
        if not self._clean[step_id]:
            if not clean:
                self._cause[step_id] = self._own_cause(step_id, outcome, reason)
            else:
                self._cause[step_id] = next(
                    (self._cause[d] for d in deps if d in self._cause),
                    f"dependency of '{step_id}' did not succeed",
                )
        if outcome is Outcome.SKIPPED:
            actions.append(Skip(step_id, reason or "skipped"))
        elif outcome is Outcome.CANCELED and step_id not in self._running:
            actions.append(Cancel(step_id, reason or "cancelled", running=False))
        for user in self._users[step_id]:
            self._waiting_for[user] -= 1
            if self._waiting_for[user] == 0 and self._phase[user] is Phase.PENDING:
                self._resolve(user, actions)

    def _own_cause(self, step_id: str, outcome: Outcome, reason: str | None) -> str:
        if outcome is Outcome.FAILED:
            return f"dependency '{step_id}' failed"
        if outcome is Outcome.CANCELED:
            if step_id in self._requested:
                return f"dependency '{step_id}' was cancelled"
            return reason or f"dependency '{step_id}' was cancelled"
        if reason and reason.startswith("dependency "):
            return reason  # skipped because of its own dependencies: keep naming the root cause
        return f"dependency '{step_id}' was skipped"

    def _fill(self, actions: list[Action]) -> None:
        """Start ready steps, best first, while slots are free and their locks are available."""
        held_back: list[tuple[float, int, str]] = []
        while self._ready and len(self._running) < self.slots:
            entry = heapq.heappop(self._ready)
            step_id = entry[2]
            if self._phase[step_id] is not Phase.READY:
                continue  # ended while queued: succeeded in the resumed run, or cancelled on request
            busy = next((lock for lock in self._rules[step_id].locks if lock in self._locks), None)
            if busy is not None:
                held_back.append(entry)
                if self._blocked_on.get(step_id) != busy:
                    self._blocked_on[step_id] = busy
                    actions.append(Blocked(step_id, busy, self._locks[busy]))
                continue
            self._blocked_on.pop(step_id, None)
            for lock in self._rules[step_id].locks:
                self._locks[lock] = step_id
            self._phase[step_id] = Phase.RUNNING
            self._running.add(step_id)
            self._attempts[step_id] += 1
            attempt = self._attempts[step_id]
            actions.append(Start(step_id, attempt, self._verdict(step_id, attempt, False, None)))
        for entry in held_back:
            heapq.heappush(self._ready, entry)

    def _check_finished(self, actions: list[Action]) -> None:
        if self._finished or self._draining or self._done_count < len(self._rules):
            return
        self._finished = True
        if self._interrupted:
            actions.append(Finish("canceled", self._interrupted))
            return
        failed = [s for s, o in self._outcome.items() if o is Outcome.FAILED and self._rules[s].critical]
        cancelled = [
            s
            for s in sorted(self._requested, key=self._index.__getitem__)
            if self._outcome.get(s) is Outcome.CANCELED and self._rules[s].critical
        ]
        if failed:
            actions.append(Finish("failed", f"step '{failed[0]}' failed"))
        elif cancelled:
            actions.append(Finish("canceled", f"step '{cancelled[0]}' was cancelled on request"))
        else:
            actions.append(Finish("succeeded", None))
