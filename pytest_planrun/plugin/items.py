"""Collection: a plan file becomes a ``PlanFile`` whose children are one ``StepItem`` per step.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..core.state import Verdict
from ..plan import LoadedPlan, ResolvedStep
from ..run.process import CancelToken, Forward, tail
from ..run.provided import ProvidedFile
from ..run.records import AttemptRecord
from ..run.step import HeldLocks, RunContext, display_command, execute_attempt
from .junit_text import readable

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the driver tells an item before it runs: which attempt this is and how to cancel it."""

    attempt: int
    if_failed: Verdict  # what the core foresaw for a failure of this attempt (``Start.if_failed``)
    token: CancelToken
    worker: str = "main"
    on_beat: Callable[[], None] | None = None  # called while the attempt runs (serial runs)
    beat_every: float | None = None
    forward: Forward | None = None  # a remote worker's stream of the output to the controller
    held: HeldLocks | None = None  # the locks the controller took for the attempt (xdist runs)
    deliveries: tuple[ProvidedFile, ...] = ()  # files of the steps it consumes from, placed before it starts


ticket_key = pytest.StashKey[Ticket]()
record_key = pytest.StashKey[AttemptRecord]()
# an attempt the concurrent driver already ran on a thread: the protocol reports its outcome
ran_key = pytest.StashKey[Callable[[], AttemptRecord]]()
runtime_key = pytest.StashKey["Runtime"]()


@dataclass(frozen=True, slots=True)
class Runtime:
    """Per-process view of the run: the loaded plans and the run context (controller and workers)."""

    plans: dict[Path, LoadedPlan]
    context: RunContext


OUTPUT_LINES = 20  # lines of stdout/stderr in a failure report; the logs hold the rest


class StepFailed(Exception):
    """A step's attempt failed: carries what a reader of the report needs, never a traceback."""

    def __init__(
        self, step: ResolvedStep, record: AttemptRecord, command: str, shown: Callable[[str], str] = str
    ) -> None:
        super().__init__(record.error or "failed")
        self.step = step
        self.record = record
        self.command = command
        self.shown = shown  # a log's path as the reader knows it (a remote worker's are the controller's)

    def headline(self) -> str:
        """One line, fit for a dashboard: "exit code 2 after 3 attempts", "timed out after 5 s"."""
        return self.record.headline()

    def describe(self) -> str:
        record = self.record
        lines = [
            f"step '{self.step.id}' failed: {self.headline()}",
            f"command: {self.command}",
            f"attempt {record.attempt} of {self.step.retries + 1}, {record.duration:.2f} s"
            + (f", exit code {record.exit_code}" if record.exit_code is not None else ""),
        ]
        for label, path in (("stdout", record.stdout_path), ("stderr", record.stderr_path)):
            text = _last_lines(Path(path), OUTPUT_LINES)
            if text:
                lines += [f"--- {label} (last lines) ---", text.rstrip("\n")]
        lines.append(f"logs: {self.shown(record.stdout_path)}")
        lines.append(f"      {self.shown(record.stderr_path)}")
        return "\n".join(lines)


def add_retry_reason(longrepr: str, reason: str) -> str:
    """``describe()``'s text with the core's retry reason after its attempt line (the worker that
    wrote it could not know the reason: the controller decides)."""
    lines = longrepr.split("\n")
    at = 3 if len(lines) >= 3 and lines[2].startswith("attempt ") else len(lines)
    return "\n".join([*lines[:at], reason, *lines[at:]])


def _last_lines(path: Path, count: int) -> str:
    text = readable(tail(path, max_bytes=16384))  # also the text of GitHub annotations: no raw escapes
    return "\n".join(text.splitlines()[-count:])


def marker_name(tag: str) -> str:
    """The registrable marker for a tag: pytest's marker registry cuts names at ':' (``phase:1`` would
    register ``phase``), so ``--strict-markers`` needs ``phase_1``."""
    return re.sub(r"\W", "_", tag)


def marker_names(tag: str) -> tuple[str, ...]:
    """The markers a tag gives its step: ``marker_name(tag)``, and the tag itself when the registry
    can hold it (no ':' or '(', where pytest cuts a registered name)."""
    names = (marker_name(tag),) if re.search(r"[:(]", tag) else (marker_name(tag), tag)
    return tuple(dict.fromkeys(names))


def step_lines(text: str) -> dict[str, int]:
    """0-based line of each step's ``"id"`` in the plan file, for report locations; one pass over
    the text (a 10,000-step plan is 1 MB)."""
    lines: dict[str, int] = {}
    line, position = 0, 0
    for match in re.finditer(r'"id"\s*:\s*"((?:[^"\\]|\\.)*)"', text):
        line += text.count("\n", position, match.start())
        position = match.start()
        lines.setdefault(match.group(1), line)
    return lines


class PlanFile(pytest.File):
    """A plan given with ``--plan``; collects its steps in declaration order."""

    def collect(self) -> Iterator[StepItem]:
        runtime = self.config.stash[runtime_key]
        plan = runtime.plans[self.path]
        lines = step_lines(self.path.read_text(encoding="utf-8"))
        for step in plan.steps:
            yield StepItem.from_parent(self, name=step.id, step=step, plan=plan, line=lines.get(step.id, 0))


class StepItem(pytest.Item):
    """One step of a plan: running it runs one attempt of the step's command."""

    def __init__(self, *, step: ResolvedStep, plan: LoadedPlan, line: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.step = step
        self.plan = plan
        self.line = line
        for tag in step.tags:
            for name in marker_names(tag):
                self.add_marker(name)  # registered in pytest_configure, so --strict-markers holds
        # A step runs under the plan's own timeout and retries: another plugin's per-test ones would
        # kill it mid-run (pytest-timeout's ``timeout`` ini key) or run an attempt again behind the
        # core's back (pytest-rerunfailures' ``--reruns``). Their markers turn them off per item.
        plugins = self.config.pluginmanager
        if plugins.hasplugin("timeout"):
            self.add_marker(pytest.mark.timeout(0))
        if plugins.hasplugin("rerunfailures"):
            self.add_marker(pytest.mark.flaky(reruns=0))
        if step.step.name:
            self.extra_keyword_matches.add(step.step.name)

    @property
    def command(self) -> str:
        return display_command(self.step, self.plan.masker)

    def run_attempt(self, ticket: Ticket) -> AttemptRecord:
        """Run the attempt ``ticket`` names to its end; safe on any thread (no pytest state)."""
        context = self.config.stash[runtime_key].context
        # a token cancelled before the attempt began gives a cancelled record without a process
        return execute_attempt(
            self.step,
            ticket.attempt,
            context,
            worker=ticket.worker,
            token=ticket.token,
            on_beat=ticket.on_beat,
            beat_every=ticket.beat_every,
            forward=ticket.forward,
            held=ticket.held,
            deliveries=ticket.deliveries,
        )

    def runtest(self) -> None:
        ticket = self.stash.get(ticket_key, None)
        if ticket is None:  # run by a loop that is not ours (e.g. a plugin's own runtestloop)
            ticket = Ticket(attempt=1, if_failed=Verdict.FAILED, token=CancelToken())
        ran = self.stash.get(ran_key, None)
        if ran is not None:
            del self.stash[ran_key]
        record = ran() if ran is not None else self.run_attempt(ticket)
        self.stash[record_key] = record
        if record.state == "succeeded":
            return
        if record.state == "canceled":
            raise pytest.skip.Exception(ticket.token.reason or "cancelled", _use_item_location=True)
        raise StepFailed(self.step, record, self.command, self.config.stash[runtime_key].context.shown)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: str | None = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, StepFailed):  # command, exit code, reason, output tail
            return excinfo.value.describe()
        return super().repr_failure(excinfo)  # anything else is our bug: keep the traceback

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line, f"step {self.step.id}: {self.command}"
