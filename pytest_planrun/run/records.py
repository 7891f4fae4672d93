"""Plain records of what happened to a step: what observers (terminal, ledger, JUnit) are told.

They travel from xdist workers to the controller inside test reports, so they convert to and from
JSON-able dicts.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..core.retry import AttemptFailure
from ..core.state import Outcome
from .provided import ProvidedFile

AttemptState = Literal["succeeded", "failed", "canceled"]  # the ledger's attempt states
TimeoutKind = Literal["wall_clock", "no_output"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """How one attempt of a step ended."""

    step_id: str
    attempt: int  # 1-based
    state: AttemptState
    exit_code: int | None
    timed_out: bool
    started_at: float  # wall clock (epoch seconds)
    ended_at: float
    duration: float  # seconds, monotonic
    command: str  # masked, shell-quoted
    stdout_path: str
    stderr_path: str
    error: str | None = None  # e.g. "executable not found: 'foo'", "timed out after 5 s"
    worker: str = "main"
    waited_for_lock: str | None = None  # a lock another run held when this attempt wanted it
    lock_wait: float = 0.0  # seconds spent waiting for locks (part of the attempt's timeout)
    # with ``timed_out``: which limit ended it, "wall_clock" (timeout_sec) or "no_output"
    # (no_output_timeout_sec, the error then reads "no output for Ns"); None when it did not time out
    timeout_kind: TimeoutKind | None = None
    # the core's word on a failed attempt, added on the controller: why it was (not) retried, and
    # the seconds waited before the next attempt
    retry_reason: str | None = None
    retry_delay: float | None = None
    provided: tuple[ProvidedFile, ...] = ()  # the files a succeeded attempt provided (``provides`` paths)

    def headline(self) -> str:
        """One line, fit for a dashboard: "exit code 2 after 3 attempts", "timed out after 5 s"."""
        what = self.error or f"exit code {self.exit_code}"
        return f"{what} after {self.attempt} attempts" if self.attempt > 1 else what

    def failure(self) -> AttemptFailure:
        """How this attempt failed, in ``retry_on``'s terms."""
        if self.timed_out:
            return AttemptFailure("no_output" if self.timeout_kind == "no_output" else "timeout", self.exit_code)
        return AttemptFailure("failure", self.exit_code)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptRecord:
        provided = tuple(ProvidedFile(**f) for f in data.get("provided", ()))
        return cls(**{**data, "provided": provided})


ALLOWED_FAILURE = "allowed failure (critical: false)"  # how every report names a tolerated failure


@dataclass(frozen=True, slots=True)
class StepResult:
    """The final word on a step: its outcome, why, and every attempt it made."""

    step_id: str
    outcome: Outcome
    reason: str | None = None  # why skipped/cancelled/failed, shown verbatim everywhere
    attempts: tuple[AttemptRecord, ...] = field(default_factory=tuple)
    allowed_failure: bool = False  # critical: false and failed
