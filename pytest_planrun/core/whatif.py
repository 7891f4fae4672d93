"""What a run would do if some steps ended as assumed: the run's own ``RunCore``, fed its ``Start``
actions' assumed ends instead of processes (``planrun what-if``, ``pytest --assume --collect-only``).

The core is driven as the serial runner drives it (one step at a time, in the core's order), so the
forecast is exactly what a serial run does when the assumed steps end that way and every other step
succeeds. A parallel run can differ only where an abort lands while other steps are running: those are
cancelled rather than finished.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from random import Random
from typing import Any, Literal

from .decide import RunCore
from .retry import AttemptFailure
from .state import Action, Ended, Finish, Outcome, RunState, Start, StepRule

Assumption = Literal["failed", "succeeded", "skipped", "timed_out"]
ASSUMPTIONS: tuple[Assumption, ...] = ("failed", "succeeded", "skipped", "timed_out")
# how an assumed failure ends each attempt: `false` exits 1; a timeout is a timeout
_FAILURES: dict[Assumption, AttemptFailure] = {
    "failed": AttemptFailure("failure", 1),
    "timed_out": AttemptFailure("timeout"),
}
_SKIP_TEXT = "assumed skipped"


def parse_assumption(text: str) -> tuple[str, Assumption]:
    """``STEP=OUTCOME`` -> (STEP, OUTCOME); ValueError with a message for the user."""
    step_id, sep, outcome = text.partition("=")
    if not sep or not step_id:
        raise ValueError(f"--assume expects STEP=OUTCOME, got {text!r}")
    if outcome not in ASSUMPTIONS:
        close = difflib.get_close_matches(outcome, ASSUMPTIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"--assume {text}: the outcome must be one of {', '.join(ASSUMPTIONS)}{hint}")
    return step_id, outcome


def unknown_steps(assume: Mapping[str, str], step_ids: Sequence[str]) -> list[str]:
    """A message per assumed step that is not in the plans, with a did-you-mean."""
    messages = []
    for step_id, outcome in assume.items():
        if step_id not in step_ids:
            close = difflib.get_close_matches(step_id, step_ids, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            messages.append(f"--assume {step_id}={outcome}: no step '{step_id}' in the plan{hint}")
    return messages


@dataclass(frozen=True, slots=True)
class _Never:
    """The condition of a step assumed skipped: false, so the core skips it as a false condition."""

    text: str = _SKIP_TEXT
    uses_status_function: bool = False

    def evaluate(self, ctx: Any) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class StepForecast:
    """What the run would do with one step."""

    step_id: str
    would: Literal["run", "skipped", "cancelled"]
    outcome: Outcome
    attempts: int
    allowed_failure: bool  # failed, critical: false
    reason: str | None  # the core's: why skipped or cancelled
    retry_delays: tuple[float, ...]  # the waits before its retries
    assumed: Assumption | None
    assumption_used: bool  # False: the step never got to run (or to be skipped) as assumed

    def outcome_words(self) -> str:
        if self.allowed_failure:
            return "allowed failure"
        return {Outcome.CANCELED: "cancelled"}.get(self.outcome, self.outcome.value)


@dataclass(frozen=True, slots=True)
class Forecast:
    """Every step's fate, in declaration order, and how the run would end."""

    steps: tuple[StepForecast, ...]
    state: RunState
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        steps = [{**asdict(s), "outcome": s.outcome.value, "retry_delays": list(s.retry_delays)} for s in self.steps]
        return {"state": self.state, "reason": self.reason, "steps": steps}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> list[str]:
        """One line per step (step, what the run does, outcome, attempts, why), then the run's end."""
        width = max([len("STEP"), *(len(s.step_id) for s in self.steps)])
        lines = [f"{'STEP':<{width}}  {'WOULD':<9}  {'OUTCOME':<15}  ATTEMPTS  REASON"]
        for s in self.steps:
            notes = [s.reason] if s.reason else []
            if s.retry_delays:
                notes.append("retried after " + ", ".join(f"{d:g} s" for d in s.retry_delays))
            if s.assumed is not None and s.reason != _SKIP_TEXT:
                notes.append(f"assumed {s.assumed}" + ("" if s.assumption_used else ", not reached"))
            row = f"{s.step_id:<{width}}  {s.would:<9}  {s.outcome_words():<15}  {s.attempts:>8}  {'; '.join(notes)}"
            lines.append(row.rstrip())
        lines.append(f"run: {self.state}" + (f" ({self.reason})" if self.reason else ""))
        return lines


def what_if(
    rules: Sequence[StepRule],
    assume: Mapping[str, Assumption],
    variables: Mapping[str, str] | None = None,
    rng: Random | None = None,
) -> Forecast:
    """Run the core over ``rules`` with no process: each started attempt ends as ``assume`` says
    for its step (failed and timed_out: every attempt), else succeeds; time jumps to each retry."""
    rules = [replace(r, condition=_Never()) if assume.get(r.step_id) == "skipped" else r for r in rules]
    core = RunCore(rules, slots=1, variables=variables, rng=rng)
    starts: deque[Start] = deque()
    delays: dict[str, list[float]] = {r.step_id: [] for r in rules}
    final: list[Finish] = []

    def take(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Start):
                starts.append(action)
            elif isinstance(action, Ended) and action.retry_delay is not None:
                delays[action.step_id].append(action.retry_delay)
            elif isinstance(action, Finish):
                final.append(action)

    now = 0.0
    take(core.begin())
    while not final:
        while starts:
            start = starts.popleft()
            failure = _FAILURES.get(assume.get(start.step_id, "succeeded"))
            take(core.attempt_ended(start.step_id, start.attempt, failure is None, now, failure=failure))
        due = core.next_wake()
        if final:
            break
        if due is None:
            raise RuntimeError("the forecast is not finished but nothing is running or waiting")
        now = max(now, due)
        take(core.wake(now))
    steps = tuple(_forecast(core, rule, assume, delays[rule.step_id]) for rule in rules)
    return Forecast(steps, final[0].state, final[0].reason)


def _forecast(core: RunCore, rule: StepRule, assume: Mapping[str, Assumption], delays: list[float]) -> StepForecast:
    step_id = rule.step_id
    outcome = core.outcome(step_id)
    assert outcome is not None, f"step {step_id!r} has no outcome at the end of the forecast"
    attempts = core.attempts(step_id)
    reason = core.reason(step_id)
    assumed = assume.get(step_id)
    skipped_as_assumed = assumed == "skipped" and reason == f"condition false: {_SKIP_TEXT}"
    if skipped_as_assumed:
        reason = _SKIP_TEXT
    would: Literal["run", "skipped", "cancelled"] = (
        "run" if attempts else ("skipped" if outcome is Outcome.SKIPPED else "cancelled")
    )
    return StepForecast(
        step_id=step_id,
        would=would,
        outcome=outcome,
        attempts=attempts,
        allowed_failure=outcome is Outcome.FAILED and not rule.critical,
        reason=reason,
        retry_delays=tuple(delays),
        assumed=assumed,
        assumption_used=assumed is not None and (attempts > 0 or skipped_as_assumed),
    )
