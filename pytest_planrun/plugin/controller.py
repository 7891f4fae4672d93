"""The controller's side of a run: drives the scheduling core from step reports and reports its verdicts.

Serial runs and xdist runs both go through this object, so both show the same outcomes and reasons.
It lives on the process that owns the terminal and the ledger (never on an xdist worker).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pytest

from ..core.decide import RunCore
from ..core.state import (
    Action,
    Blocked,
    Cancel,
    ConditionLike,
    Ended,
    Finish,
    RunState,
    Skip,
    Start,
    StepRule,
    Verdict,
    Wait,
)
from ..plan import LoadedPlan, ResolvedStep
from ..plan.rules import step_rule
from ..run.control import CancelRequests
from ..run.observer import RunInfo, RunObserver, StepInfo
from ..run.provided import ProvidedFile
from ..run.records import AttemptRecord, StepResult
from ..run.step import RunContext, display_command, log_paths
from .items import StepFailed
from .report import label_attempt, verdict_longrepr
from .xdist_seam import worker_id

log = logging.getLogger(__name__)

CANCEL_REQUESTED = "cancelled on request (planrun cancel)"


@dataclass(frozen=True, slots=True)
class StepPlace:
    """Where a step's reports point: its node id and location, as its collected item has them."""

    nodeid: str
    location: tuple[str, int | None, str]
    keywords: dict[str, Literal[1]]


class PlanController:
    """Owns the ``RunCore`` of a run and turns its actions into reports and observer calls."""

    def __init__(
        self,
        config: pytest.Config,
        plans: Sequence[LoadedPlan],
        context: RunContext,
        observers: Iterable[RunObserver],
        *,
        condition_compiler: Callable[[ResolvedStep, LoadedPlan], ConditionLike] | None = None,
        expected_durations: dict[str, float] | None = None,
        done_before: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.plans = list(plans)
        self.context = context
        self.observers = list(observers)
        self.steps: dict[str, ResolvedStep] = {}
        self._plan_of: dict[str, LoadedPlan] = {}
        for plan in self.plans:
            for step in plan.steps:
                self.steps[step.id] = step
                self._plan_of[step.id] = plan
        self._conditions = condition_compiler
        self._expected = expected_durations or {}
        self._done_before = done_before or {}
        self.places: dict[str, StepPlace] = {}
        self.core: RunCore | None = None
        self._attempts: dict[str, list[AttemptRecord]] = {}
        self._reported: set[str] = set()  # steps whose final report came from an item run
        self._pending: list[Action] = []
        self._handed: dict[str, Start] = {}  # starts given to the driver and not yet claimed
        self._provided: dict[str, ProvidedFile] = {}  # resource name -> the file its producer provided
        # why pytest wants the run to stop (``-x``, ``--maxfail``, ``--sw``); set by the session
        self.stop_reason: Callable[[], str | None] = lambda: None
        self.final: Finish | None = None
        self.on_new_actions: Callable[[], None] | None = None  # the xdist scheduler's wake-up
        self.requests = CancelRequests(CANCEL_REQUESTED)  # from the control channel's thread

    # -- set-up ---------------------------------------------------------------------------------

    def plan_of(self, step_id: str) -> LoadedPlan:
        return self._plan_of[step_id]

    def step_of(self, nodeid: str) -> str | None:
        step_id = nodeid.rpartition("::")[2]
        place = self.places.get(step_id)
        return step_id if place is not None and place.nodeid == nodeid else None

    def build(self, places: dict[str, StepPlace], slots: int) -> None:
        """Create the core over the selected steps (``places``) and begin the run; the first
        actions wait in ``take_actions``."""
        self.places = places
        rules = [self._rule(step) for step_id, step in self.steps.items() if step_id in places]
        variables: dict[str, str] = {}
        for plan in self.plans:
            variables.update(plan.variables)
        # jitter seeded by the run id: the same run repeats its delays, runs retrying at once differ
        rng = random.Random(self.context.run_id)
        self.core = RunCore(rules, slots=slots, variables=variables, done_before=self._done_before, rng=rng)
        now = time.time()
        info = self.run_info(slots)
        for observer in self.observers:
            observer.run_started(info, now)
        self._queue(self.core.begin())

    def _rule(self, step: ResolvedStep) -> StepRule:
        condition = None
        if step.condition and self._conditions is not None:
            condition = self._conditions(step, self._plan_of[step.id])
        cost = self._expected.get(step.id)
        if cost is None:
            cost = float(step.weight) if step.weight else 1.0
        return step_rule(step, condition, cost)

    def run_info(self, workers: int) -> RunInfo:
        first = self.plans[0]
        steps = tuple(
            StepInfo(s.id, s.index, s.step.name, display_command(s, self._plan_of[s.id].masker), tuple(s.tags))
            for s in self.steps.values()
        )
        variables: dict[str, str] = {}
        for plan in self.plans:
            variables.update(plan.masked_variables())
        return RunInfo(
            run_id=self.context.run_id,
            plan_id="+".join(p.plan.plan_id for p in self.plans),
            plan_path=", ".join(p.display_path for p in self.plans),
            plan_hash=first.plan_hash if len(self.plans) == 1 else "+".join(p.plan_hash for p in self.plans),
            run_dir=str(self.context.run_dir),
            variables=variables,
            steps=steps,
            workers=workers,
            pid=os.getpid(),
            metadata=dict(first.plan.metadata),
        )

    # -- events from drivers --------------------------------------------------------------------

    @property
    def assumed(self) -> dict[str, tuple[str, ...]]:
        """Selected step -> its deselected dependencies, which the core takes as succeeded."""
        return self.core.assumed if self.core is not None else {}

    def claim(self, start: Start, worker: str) -> bool:
        """The driver is about to run ``start`` on ``worker``; False: a cancel overtook it (the
        controller has withdrawn it), so it must not run."""
        if self._handed.get(start.step_id) != start:
            return False
        del self._handed[start.step_id]
        now = time.time()
        for observer in self.observers:
            observer.attempt_started(start.step_id, start.attempt, worker, now)
        return True

    def is_handed(self, start: Start) -> bool:
        """Whether ``start`` is still to be run (no cancel has withdrawn it)."""
        return self._handed.get(start.step_id) == start

    def deliveries_for(self, step_id: str) -> tuple[ProvidedFile, ...]:
        """The files provided so far in this run under the names ``step_id`` consumes."""
        consumed = self.steps[step_id].consumes
        return tuple(self._provided[name] for name in consumed if name in self._provided)

    def last_record(self, step_id: str) -> AttemptRecord | None:
        attempts = self._attempts.get(step_id)
        return attempts[-1] if attempts else None

    def report_unsent(self, start: Start, record: AttemptRecord) -> None:
        """Report an attempt that ended before any worker ran it (its locks' wait timed out, or no
        worker is left that can run it) as its item would have: its message is its stderr log."""
        if not self.claim(start, record.worker):
            return
        stdout, stderr = log_paths(self.context.run_dir, start.step_id, start.attempt)
        stderr.parent.mkdir(parents=True, exist_ok=True)
        stdout.touch()
        stderr.write_text(f"{record.error}\n")
        record = replace(record, stdout_path=str(stdout), stderr_path=str(stderr))
        step = self.steps[start.step_id]
        place = self.places[start.step_id]
        failed = StepFailed(step, record, record.command).describe()
        data = {"step_id": start.step_id, "attempt": start.attempt}
        self._report_phases(
            place,
            ("setup", "passed", None, data),
            ("call", "failed", failed, {**data, "record": record.to_dict()}),
            ("teardown", "passed", None, data),
        )

    def _report_phases(self, place: StepPlace, *phases: tuple[str, str, object, dict[str, object]]) -> None:
        """Report a step's item as its protocol would: ``(when, outcome, longrepr, planrun data)`` each."""
        hook = self.config.hook
        hook.pytest_runtest_logstart(nodeid=place.nodeid, location=place.location)
        for when, outcome, longrepr, data in phases:
            report = pytest.TestReport(
                nodeid=place.nodeid,
                location=place.location,
                keywords=place.keywords,
                outcome=outcome,  # type: ignore[arg-type]
                longrepr=longrepr,  # type: ignore[arg-type]
                when=when,  # type: ignore[arg-type]
            )
            report.planrun = data  # type: ignore[attr-defined]
            hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=place.nodeid, location=place.location)

    def unsent_record(self, start: Start, worker: str, error: str, **fields: Any) -> AttemptRecord:
        """The record of an attempt that never reached a worker (see ``report_unsent``); ``fields``
        of ``AttemptRecord`` to set besides."""
        return replace(self._failed_record(start.step_id, start.attempt, worker, error), **fields)

    def _failed_record(self, step_id: str, attempt: int, worker: str, error: str) -> AttemptRecord:
        """A failed attempt that ran no command (or whose end no worker reported), ending now."""
        now = time.time()
        return AttemptRecord(
            step_id=step_id,
            attempt=attempt,
            state="failed",
            exit_code=None,
            timed_out=False,
            started_at=now,
            ended_at=now,
            duration=0.0,
            command=display_command(self.steps[step_id], self.context.masker),
            stdout_path="",
            stderr_path="",
            error=error,
            worker=worker,
        )

    def on_report(self, report: pytest.TestReport) -> None:
        """A step's report reached the controller (from this process or a worker): feed the core,
        then make the report say the core's verdict, before anyone else reads it."""
        step_id = self.step_of(report.nodeid)
        if step_id is None or self.core is None:
            return
        data = getattr(report, "planrun", None)
        if report.when == "call" and isinstance(data, dict) and "record" in data:
            record = AttemptRecord.from_dict(data["record"])
            if not self.core.is_running(step_id, record.attempt):
                # an attempt the core did not start (another plugin ran the item again): the run
                # goes on without it, and its report stays as pytest made it
                log.warning("planrun: step %r attempt %d was not started by the plan; ignored", step_id, record.attempt)
                return
            ended = self._attempt_ended(record)
            if record.state == "failed" or ended.verdict is Verdict.CANCELED:
                label_attempt(report, ended, record, self.places[step_id].location)
        elif report.when == "call" and report.failed:
            # the step's item raised something other than a step failure: our bug, shown with its
            # traceback; the run still goes on as if the attempt failed, so it cannot hang
            self._attempt_ended(self._lost_attempt(step_id, report, "planrun internal error (see the traceback)"))
        elif report.failed and report.when not in ("setup", "call", "teardown"):
            # xdist's report for a worker that crashed, or whose host or connection was lost, while
            # running this step
            record = self._lost_attempt(step_id, report, f"worker lost ({worker_id(report)})")
            report.location = self.places[step_id].location  # xdist's names the file only
            report.longrepr = (
                f"step '{step_id}' failed: worker lost while running it (attempt {record.attempt}): "
                f"{worker_id(report)} crashed, or its host or connection went away"
            )
            label_attempt(report, self._attempt_ended(record), record, self.places[step_id].location)

    def _attempt_ended(self, record: AttemptRecord) -> Ended:
        assert self.core is not None
        self.apply_requests()  # a request that stopped this attempt must be known before its end
        step_id = record.step_id
        failed = record.state != "succeeded"
        failure = record.failure() if failed else None
        delay = None
        if failed and self.core.will_retry(step_id, record.attempt, failure):
            delay = self.config.hook.pytest_planrun_retry_delay(
                config=self.config, step=self.steps[step_id], record=record
            )
        ended, *actions = self.core.attempt_ended(
            step_id,
            record.attempt,
            not failed,
            time.monotonic(),
            retry_delay=None if delay is None else max(0.0, float(delay)),
            failure=failure,
        )
        assert isinstance(ended, Ended)
        if ended.retry_reason is not None:  # every report of the attempt says why it was (not) retried
            record = replace(record, retry_reason=ended.retry_reason, retry_delay=ended.retry_delay)
        self._attempts.setdefault(step_id, []).append(record)
        if record.state == "succeeded":
            self._provided.update((file.name, file) for file in record.provided)
        for observer in self.observers:
            observer.attempt_ended(record, ended.verdict is Verdict.RETRY)
        if ended.verdict is not Verdict.RETRY:  # the step ended with this attempt, reported by it
            self._reported.add(step_id)
            self._finish_step(step_id, ended.verdict)
        self._queue(actions)
        return ended

    def _lost_attempt(self, step_id: str, report: pytest.TestReport, error: str) -> AttemptRecord:
        """The record of an attempt that ended without one: its worker crashed, or our own bug."""
        assert self.core is not None
        from ..run.process import sweep_orphans

        sweep_orphans(self.context.run_id, step_id, grace=self.context.kill_grace)
        attempt = self.core.attempts(step_id)
        record = self._failed_record(step_id, attempt, worker_id(report), error)
        # what a remote worker streamed before it was lost is in the controller's logs
        stdout, stderr = log_paths(self.context.run_dir, step_id, attempt)
        return replace(
            record,
            stdout_path=str(stdout) if stdout.exists() else "",
            stderr_path=str(stderr) if stderr.exists() else "",
        )

    def next_wake(self) -> float | None:
        return self.core.next_wake() if self.core is not None else None

    def wake(self) -> None:
        self.apply_requests()
        if self.core is not None:
            self._queue(self.core.wake(time.monotonic()))

    # -- cancel requests (any thread in, main thread applies) -------------------------------------

    def post_cancel(self, step_id: str) -> None:
        """Ask for ``step_id`` to be cancelled; safe from any thread. An attempt running in this
        process stops at once; the core hears of it on the main thread (``apply_requests``)."""
        if step_id not in self.steps:
            log.warning("planrun: cancel request for unknown step %r ignored", step_id)
            return
        self.requests.post(step_id)
        if self.on_new_actions is not None:
            self.on_new_actions()

    def apply_requests(self) -> None:
        if self.core is None:
            return  # kept until the run begins
        for step_id in self.requests.drain():
            if step_id in self.places:
                self._queue(self.core.cancel_step(step_id, CANCEL_REQUESTED))

    def interrupt(self, reason: str) -> None:
        if self.core is not None:
            self._queue(self.core.interrupt(reason))

    def set_slots(self, slots: int) -> None:
        if self.core is not None:
            self._queue(self.core.set_slots(slots))

    def _queue(self, actions: list[Action]) -> None:
        self._pending.extend(actions)
        if actions and self.on_new_actions is not None:
            self.on_new_actions()

    def take_actions(self) -> list[Action]:
        """Actions decided since the last call, after reporting the verdicts among them.

        Returns what the driver must carry out: ``Start`` (run it if ``claim`` agrees),
        ``Cancel(running=True)`` (stop the attempt on its worker) and ``Wait``.
        """
        reason = self.stop_reason()
        if reason:
            self.interrupt(f"cancelled: {reason}")
        self.apply_requests()
        todo: list[Action] = []
        while self._pending:  # withdrawing a start decides more
            actions, self._pending = self._pending, []
            todo.extend(self.apply(actions))
        return todo

    # -- carrying out verdicts ------------------------------------------------------------------

    def apply(self, actions: list[Action]) -> list[Action]:
        todo: list[Action] = []
        for action in actions:
            if isinstance(action, Skip):
                self._report_verdict(action.step_id, action.reason)
            elif isinstance(action, Cancel) and not action.running:
                if action.step_id not in self._reported:
                    self._report_verdict(action.step_id, action.reason)
            elif isinstance(action, Cancel) and action.step_id in self._handed:
                # started by the core, never handed to a worker: it does not run at all
                start = self._handed.pop(action.step_id)
                assert self.core is not None
                self._queue(self.core.withdraw(start.step_id, start.attempt))
            elif isinstance(action, Blocked):
                now = time.time()
                reason = f"waiting for lock '{action.lock}' held by '{action.holder}'"
                for observer in self.observers:
                    observer.step_waiting(action.step_id, reason, now)
            elif isinstance(action, Finish):
                self.final = action
            elif isinstance(action, Start):
                self._handed[action.step_id] = action
                todo.append(action)
            else:
                assert isinstance(action, (Cancel, Wait))
                todo.append(action)
        return todo

    def _finish_step(self, step_id: str, verdict: Verdict | None = None) -> None:
        """Tell observers how the step ended; ``verdict``: the core's on its last attempt."""
        assert self.core is not None
        outcome = self.core.outcome(step_id)
        assert outcome is not None
        result = StepResult(
            step_id=step_id,
            outcome=outcome,
            reason=self.core.reason(step_id),
            attempts=tuple(self._attempts.get(step_id, ())),
            allowed_failure=verdict is Verdict.ALLOWED_FAILURE,
        )
        now = time.time()
        for observer in self.observers:
            observer.step_finished(result, now)
        self.config.hook.pytest_planrun_step_finished(config=self.config, result=result)

    def _report_verdict(self, step_id: str, reason: str) -> None:
        """Report a step the core skipped or cancelled without running it, as pytest reports a skip."""
        place = self.places[step_id]
        data: dict[str, object] = {"step_id": step_id, "verdict": reason}
        skipped = verdict_longrepr(place.location, reason)
        self._report_phases(place, ("setup", "skipped", skipped, data), ("teardown", "passed", None, data))
        self._finish_step(step_id)

    def finish(self, exit_code: int) -> None:
        """The session ended: tell observers how the run ended."""
        final = self.final
        state: RunState = final.state if final is not None else "canceled"
        message = final.reason if final is not None else "the run ended before every step did"
        now = time.time()
        for observer in self.observers:
            observer.run_finished(state, exit_code, message, now)


def place_for(nodeid: str, step: ResolvedStep, line: int, command: str) -> StepPlace:
    """The place of a step from its node id alone: the controller of an xdist run has no items, and
    serial runs use the same function so both report identically."""
    path = nodeid.rpartition("::")[0]
    keywords: dict[str, Literal[1]] = {step.id: 1, path.rpartition("/")[2]: 1, **{tag: 1 for tag in step.tags}}
    return StepPlace(nodeid=nodeid, location=(path, line, f"step {step.id}: {command}"), keywords=keywords)


def default_run_dir(ledger: Path | None, invocation_dir: Path, run_id: str) -> Path:
    base = ledger.parent if ledger is not None else invocation_dir / ".ledger"
    return base / "runs" / run_id
