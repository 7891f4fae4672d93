"""The per-process plugin objects: the controller's (serial loop, reports, summary) and a worker's loop.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ..core.conditions import compile_condition
from ..core.graph import transitive_dependents
from ..core.state import Start, Verdict
from ..ledger.queries import RESUMED_PREFIX, LedgerUnreadable, last_run, previous_durations, succeeded_steps
from ..ledger.writer import LedgerRecorder
from ..plan import LoadedPlan
from ..remote.link import WorkerLink
from ..remote.messages import FILE, REMOTE, SIDE_CHANNEL
from ..remote.watchdog import start_watchdog
from ..run.concurrent import AttemptThread, drive_concurrently, stop_all
from ..run.control import ControlChannel
from ..run.observer import RunObserver
from ..run.process import CancelToken, sweep_orphans
from ..run.provided import ProvidedFile
from ..run.records import AttemptRecord
from ..run.serial import drive_serially
from ..run.step import HeldLocks, RunContext, display_command
from .ci_output import CiOutput
from .controller import PlanController, StepPlace, place_for
from .items import StepItem, Ticket, ran_key, runtime_key, step_lines, ticket_key
from .junit import JUnitEnricher
from .live import BeatTimer, LiveRun
from .options import Settings, on_unconfigure
from .report import TerminalSummary
from .xdist_seam import loop_poster, report_node, stop_requested

log = logging.getLogger(__name__)


def make_places(config: pytest.Config, controller: PlanController, nodeids: Sequence[str]) -> dict[str, StepPlace]:
    """Places of the selected steps, from their node ids (the same in serial and xdist runs)."""
    lines: dict[Path, dict[str, int]] = {}
    places: dict[str, StepPlace] = {}
    plan_paths = {p.path.resolve() for p in controller.plans}
    for nodeid in nodeids:
        file_part, _, step_id = nodeid.rpartition("::")
        step = controller.steps.get(step_id)
        if step is None:
            continue
        # Step ids are unique across the run's plans, so the id names the plan; the file part only
        # rules out an ordinary test of the same name. (A plan outside the rootdir has an empty one.)
        path = (config.rootpath / file_part).resolve()
        if file_part and path not in plan_paths and path.exists():
            continue
        plan = controller.plan_of(step_id)
        if plan.path not in lines:
            lines[plan.path] = step_lines(plan.path.read_text(encoding="utf-8"))
        places[step_id] = place_for(nodeid, step, lines[plan.path].get(step_id, 0), display_command(step, plan.masker))
    return places


class ControllerPlugin:
    """Registered on the controller (the only process in a serial run)."""

    def __init__(self, config: pytest.Config, settings: Settings, plans: list[LoadedPlan], context: RunContext) -> None:
        self.config = config
        self.settings = settings
        self.summary = TerminalSummary(config)
        done_before, self.resume_note = _done_before(settings, plans)
        observers: list[RunObserver] = [self.summary]
        ledger = _ledger_recorder(settings, context)
        if ledger is not None:
            observers.append(ledger)
        self.controller = PlanController(
            config,
            plans,
            context,
            observers,
            expected_durations=_expected_durations(settings, plans),
            condition_compiler=lambda step, plan: compile_condition(step.condition or "true"),
            done_before=done_before,
        )
        self.summary.controller = self.controller
        self.live = LiveRun(
            config, self.controller, [ledger] if isinstance(ledger, LedgerRecorder) else [], settings.status_after
        )
        self.controller.observers.append(self.live)
        self.beat_timer: BeatTimer | None = None  # xdist runs: the controller's beat
        self.control = ControlChannel(context.run_dir, self.controller.post_cancel)
        self.scheduler: Any = None  # the DAG scheduler, in xdist runs

    def pytest_report_header(self) -> list[str]:
        return [self.resume_note] if self.resume_note else []

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # junitxml's LogXML exists from its pytest_configure on, which runs after ours
        junit = JUnitEnricher.create(self.config, self.controller)
        if junit is not None:
            self.controller.observers.append(junit)
            self.config.pluginmanager.register(junit, "planrun-junit")
        ci = CiOutput.create(os.environ, self.controller.context.masker.secrets)
        if ci is not None:  # only under GitHub Actions or GitLab CI
            self.controller.observers.append(ci)
            self.config.pluginmanager.register(ci, "planrun-ci")

    @pytest.hookimpl(tryfirst=True)  # before pytest's own loop, which would run items in list order
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        # pytest decides when a run must stop (``-x``, ``--maxfail``, ``--sw``); the controller reads
        # it before every batch of actions, in serial and xdist runs alike
        self.controller.stop_reason = lambda: (
            str(session.shouldfail or session.shouldstop or "") or stop_requested(self.config)
        )
        if not session.config.option.collectonly:
            self.control.open()  # `planrun cancel RUN STEP` from here on
        if self.config.pluginmanager.has_plugin("dsession"):
            post = loop_poster(self.config, "planrun_beat", self.live.beat)
            if post is not None and not session.config.option.collectonly:
                self.beat_timer = BeatTimer(self.settings.heartbeat, post)
                self.beat_timer.start()
            return None  # an xdist run: the DAG scheduler drives the workers
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} during collection"
            )
        if session.config.option.collectonly:
            return True
        steps = {item.step.id: item for item in session.items if isinstance(item, StepItem)}
        for item in session.items:
            if not isinstance(item, StepItem):  # plain tests given beside the plan: run them first
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=None)
                if session.shouldfail or session.shouldstop:
                    raise (
                        session.Failed(session.shouldfail)
                        if session.shouldfail
                        else session.Interrupted(str(session.shouldstop))
                    )
        if not steps:
            return True
        controller = self.controller
        # max_concurrency steps at once in this process: steps are subprocesses, one pytest is enough
        slots = max(p.plan.globals.max_concurrency for p in controller.plans)
        controller.build(make_places(self.config, controller, [i.nodeid for i in steps.values()]), slots=slots)
        try:
            if slots == 1:
                run_step = partial(_run_step, controller, steps, self.live, self.settings.heartbeat)
                drive_serially(controller, run_step, sleep=controller.requests.wait)
            else:
                drive_concurrently(
                    controller,
                    partial(_attempt_on_thread, controller, steps),
                    partial(_report_step, steps),
                    track=controller.requests.track,
                    wake_me=partial(setattr, controller, "on_new_actions"),
                    beat=self.live.beat,
                    beat_every=self.settings.heartbeat,
                )
        except KeyboardInterrupt:
            controller.interrupt("cancelled: interrupted")
            raise
        return True

    @pytest.hookimpl(tryfirst=True)  # the core's verdict labels the report before anyone reads it
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.controller.on_report(report)
        node = report_node(report)
        if self.scheduler is not None and node is not None and report.when == "call":
            self.scheduler.call_reported(node, report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.beat_timer is not None:
            self.beat_timer.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()  # pending retry timers
        self.control.close()
        controller = self.controller
        if controller.core is not None and controller.final is None:
            controller.interrupt("cancelled: interrupted")
            controller.take_actions()
        if controller.final is not None and controller.final.state == "canceled" and exitstatus == 0:
            # a critical step cancelled on request: the run did not do what its plan says
            session.exitstatus = exitstatus = pytest.ExitCode.INTERRUPTED
        if controller.core is not None:
            controller.finish(int(exitstatus))
        # Safety net: nothing a step started may outlive the run.
        sweep_orphans(controller.context.run_id, grace=controller.context.kill_grace)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self.summary.write(terminalreporter)


def _run_step(
    controller: PlanController, steps: dict[str, StepItem], live: LiveRun, beat_every: float, start: Start
) -> None:
    """One step, start to report, on this thread (a serial run; its runner's wait loop beats)."""
    item = steps[start.step_id]
    token = CancelToken()
    deliveries = controller.deliveries_for(start.step_id)
    item.stash[ticket_key] = Ticket(
        start.attempt, start.if_failed, token, on_beat=live.beat, beat_every=beat_every, deliveries=deliveries
    )
    controller.requests.track(start.step_id, token)
    try:
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=None)
    finally:
        controller.requests.track(start.step_id, None)


def _attempt_on_thread(
    controller: PlanController, steps: dict[str, StepItem], start: Start, token: CancelToken
) -> AttemptRecord:
    # (the files it consumes were recorded when their producers ended, before this start existed)
    deliveries = controller.deliveries_for(start.step_id)
    return steps[start.step_id].run_attempt(Ticket(start.attempt, start.if_failed, token, deliveries=deliveries))


def _report_step(
    steps: dict[str, StepItem], start: Start, token: CancelToken, outcome: Callable[[], AttemptRecord]
) -> None:
    """The pytest protocol of a step whose attempt already ended on the concurrent driver's thread."""
    item = steps[start.step_id]
    item.stash[ticket_key] = Ticket(start.attempt, start.if_failed, token)
    item.stash[ran_key] = outcome
    item.config.hook.pytest_runtest_protocol(item=item, nextitem=None)


def _ledger_recorder(settings: Settings, context: RunContext) -> RunObserver | None:
    if settings.ledger is None:
        return None
    return LedgerRecorder(settings.ledger, context.run_dir, given=tuple(settings.variables))


def _expected_durations(settings: Settings, plans: list[LoadedPlan]) -> dict[str, float] | None:
    """Each step's duration in the plan's previous successful run, for the critical path."""
    if settings.ledger is None or not settings.ledger.exists() or len(plans) != 1:
        return None
    try:
        return previous_durations(settings.ledger, plans[0].plan.plan_id)
    except LedgerUnreadable as error:  # an unreadable history must not stop a run: fall back to weights
        log.warning("planrun: no step durations from %s: %s", settings.ledger, error)
        return None


def _done_before(settings: Settings, plans: list[LoadedPlan]) -> tuple[dict[str, str] | None, str | None]:
    """With ``--planrun-resume`` (or ``--lf``): steps that succeeded in that run and are not downstream of
    one that did not, and a line for the session header."""
    if settings.resume is None:
        return None, None
    ledger = settings.ledger if settings.ledger is not None and settings.ledger.exists() else None
    if ledger is None and not settings.resume_if_any:
        raise pytest.UsageError("--planrun-resume needs a ledger; none found (see --planrun-ledger)")
    plan_id = plans[0].plan.plan_id
    run_id = settings.resume
    if run_id == "last":
        previous = last_run(ledger, plan_id) if ledger is not None else None
        if previous is None:
            if settings.resume_if_any:
                where = f"in {settings.ledger}" if settings.ledger is not None else "(no ledger)"
                return None, f"planrun: --lf: plan {plan_id} has no earlier run {where}; running every step"
            raise pytest.UsageError(f"--planrun-resume: plan {plan_id} has no run in {ledger}")
        run_id = previous["run_id"]
    assert ledger is not None  # --lf resumes only "last", handled above without a ledger
    try:
        succeeded = succeeded_steps(ledger, run_id)
    except LookupError as error:
        raise pytest.UsageError(f"--planrun-resume: {error}") from None
    deps = {s.id: list(s.depends_on) for p in plans for s in p.steps}
    redo = {s for s in deps if s not in succeeded}
    if not redo and settings.resume_if_any and settings.nothing_failed == "all":
        return None, f"planrun: --lf: every step succeeded in run {run_id}; running every step"
    redo |= transitive_dependents(deps, redo)
    done = {s: RESUMED_PREFIX + succeeded[s] for s in deps if s not in redo}
    return done, f"planrun: resuming run {run_id}: {len(redo)} step(s) to run, {len(done)} succeeded there"


class WorkerLoop:
    """Replaces xdist's worker loop: start each step the moment it arrives (several at once, each
    supervised by a thread), report it when its process ends, and cancel on request. A remote
    worker also streams each attempt's output and provided files to the controller (``WorkerLink``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        workerinput = config.workerinput  # type: ignore[attr-defined]
        self.workerid = str(workerinput.get("workerid", "?"))
        self.jobs: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.tokens: dict[str, CancelToken] = {}
        context = config.stash[runtime_key].context
        self.link = WorkerLink(context.run_dir) if workerinput.get(REMOTE) else None

    def _on_run(self, job: dict[str, Any]) -> None:
        # The token exists from now on, so a cancel that overtakes the start still lands.
        job["token"] = self.tokens[job["step_id"]] = CancelToken()
        self.jobs.put(job)

    def _on_cancel(self, step_id: str, reason: str) -> None:
        token = self.tokens.get(step_id)
        if token is not None:
            token.cancel(reason)

    def _ticket(self, job: dict[str, Any]) -> Ticket:
        held = job.get("held")
        return Ticket(
            job["attempt"],
            Verdict(job["if_failed"]),
            job["token"],
            self.workerid,
            forward=None if self.link is None else self.link.forwarder(job["step_id"], job["attempt"]),
            held=None if held is None else HeldLocks(**held),
            deliveries=tuple(ProvidedFile(**f) for f in job.get("deliveries", ())),
        )

    def _attempt(self, item: StepItem, ticket: Ticket) -> AttemptRecord:
        record = item.run_attempt(ticket)
        if self.link is not None:  # its output and files reach the controller before its report
            self.link.attempt_done(record)
        return record

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        from .xdist_seam import WorkerChannel

        channel = WorkerChannel(self.config)
        others: dict[str, Callable[[dict[str, Any]], None]] = {}
        if self.link is not None:
            context = self.config.stash[runtime_key].context
            # its temporary folder: the shipped plans beside the run directory (plan_hooks.load_shipped)
            watchdog = start_watchdog(context.run_id, context.kill_grace, context.run_dir.parent)
            on_unconfigure(self.config, partial(os.close, watchdog))  # set off when the worker ends
            link = self.link
            others[SIDE_CHANNEL] = lambda kwargs: link.attach(kwargs["channel"])
            others[FILE] = lambda kwargs: link.receive_file(kwargs["path"], kwargs["data"], kwargs["end"])
        # on execnet's receiver thread: a cancel must act while the main thread waits on a step
        channel.take_over(
            self._on_run,
            self._on_cancel,
            lambda index: self.jobs.put({"index": index}),
            lambda: self.jobs.put(None),
            others,
        )
        running: dict[int, AttemptThread[AttemptRecord]] = {}
        try:
            while (job := self.jobs.get()) is not None:
                index = job["index"]
                item = session.items[index]
                if not isinstance(item, StepItem) or "token" not in job:  # an ordinary test
                    channel.run(index, partial(self.config.hook.pytest_runtest_protocol, item=item, nextitem=None))
                elif "ended" not in job:  # a step to start: its attempt runs on a thread
                    ticket = self._ticket(job)
                    item.stash[ticket_key] = ticket
                    running[index] = attempt = AttemptThread(
                        item.step.id, partial(self._attempt, item, ticket), ticket.token, partial(self._ended, job)
                    )
                    attempt.thread.start()
                else:  # its process ended: the item's protocol reports it
                    item.stash[ran_key] = running.pop(index).outcome
                    channel.run(index, partial(self.config.hook.pytest_runtest_protocol, item=item, nextitem=None))
                    self.tokens.pop(item.step.id, None)
                if (session.shouldfail or session.shouldstop) and not running:
                    break  # (steps still running are cancelled by the controller, and reported)
        finally:
            stop_all(running.values())  # Ctrl-C, or a stop: nothing this worker started outlives it
        return True

    def _ended(self, job: dict[str, Any], attempt: object) -> None:
        self.jobs.put({**job, "ended": True})
