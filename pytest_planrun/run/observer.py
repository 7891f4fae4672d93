"""The seam between a running plan and whoever records it (terminal summary, ledger, JUnit).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..core.state import RunState
from .records import AttemptRecord, StepResult


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What observers know of a step before it runs."""

    step_id: str
    index: int  # declaration index in the plan (the ledger's ``sequence``)
    name: str | None
    command: str  # masked, shell-quoted
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run of one plan, as observers see it."""

    run_id: str
    plan_id: str
    plan_path: str  # as the user gave it
    plan_hash: str  # sha256 of the plan file
    run_dir: str  # where attempt logs and events.jsonl go
    variables: Mapping[str, str]  # secrets already masked
    steps: tuple[StepInfo, ...]
    workers: int
    pid: int  # the controller's pid: a run whose controller is gone is stale
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Progress:
    """A running attempt's heartbeat."""

    step_id: str
    attempt: int
    worker: str
    started_at: float  # wall clock
    output_bytes: int  # stdout and stderr so far
    last_output_at: float | None  # wall clock of the last write to either log, None: nothing yet


class RunObserver(Protocol):
    """Called on the controller only, in this order per step: started, ended (per attempt), finished."""

    def run_started(self, run: RunInfo, now: float) -> None: ...

    def attempt_started(self, step_id: str, attempt: int, worker: str, now: float) -> None: ...

    def attempt_ended(self, record: AttemptRecord, will_retry: bool) -> None:
        """``will_retry``: the core's verdict on this attempt is a retry (``Verdict.RETRY``)."""

    def step_waiting(self, step_id: str, reason: str, now: float) -> None:
        """A ready step waits for something other than a free slot (a lock held elsewhere)."""

    def step_finished(self, result: StepResult, now: float) -> None: ...

    def run_finished(self, state: RunState, exit_code: int, message: str | None, now: float) -> None: ...


class ResultsObserver:
    """A ``RunObserver`` that keeps what reports are made of once a run ends: the run, each step's
    result (the last word on it: a step cancelled while running is told twice) and the run's state.
    Reporters that only write at the end subclass it."""

    def __init__(self) -> None:
        self.run: RunInfo | None = None
        self.results: dict[str, StepResult] = {}  # in the order steps finished
        self.state: str | None = None
        self.message: str | None = None

    def run_started(self, run: RunInfo, now: float) -> None:
        self.run = run

    def attempt_started(self, step_id: str, attempt: int, worker: str, now: float) -> None:
        pass

    def attempt_ended(self, record: AttemptRecord, will_retry: bool) -> None:
        pass

    def step_waiting(self, step_id: str, reason: str, now: float) -> None:
        pass

    def step_finished(self, result: StepResult, now: float) -> None:
        self.results[result.step_id] = result

    def run_finished(self, state: RunState, exit_code: int, message: str | None, now: float) -> None:
        self.state, self.message = state, message
