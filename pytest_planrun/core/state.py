"""The vocabulary of the scheduling core: outcomes, the rules it needs of a step, and the actions it returns.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .retry import DEFAULT_RETRY_ON, RetryPolicy


class Outcome(str, enum.Enum):
    """How a step ended; the values are the ledger's states."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"

    @property
    def condition_name(self) -> str:
        """The outcome as conditions spell it (``steps.<id>.outcome``), GitHub Actions' words."""
        return _CONDITION_NAMES[self]


_CONDITION_NAMES = {
    Outcome.SUCCEEDED: "success",
    Outcome.FAILED: "failure",
    Outcome.SKIPPED: "skipped",
    Outcome.CANCELED: "cancelled",
}

OnFailure = Literal["abort", "skip_dependents", "continue"]
RunState = Literal["succeeded", "failed", "canceled"]


class ConditionLike(Protocol):
    """What the core needs of a compiled condition (see ``core.conditions.Condition``)."""

    @property
    def text(self) -> str: ...
    @property
    def uses_status_function(self) -> bool: ...

    def evaluate(self, ctx: Any) -> bool: ...


@dataclass(frozen=True, slots=True)
class StepRule:
    """What the core must know of a step to schedule it."""

    step_id: str
    depends_on: tuple[str, ...] = ()
    on_failure: OnFailure = "abort"
    critical: bool = True
    retries: int = 0
    retry_delay: float = 0.0
    condition: ConditionLike | None = None
    locks: tuple[str, ...] = ()
    cost: float = 1.0  # expected duration, for critical-path priority
    retry_backoff: float = 1.0
    retry_max_delay: float | None = None
    retry_jitter: bool = False
    retry_on: tuple[str | int, ...] = DEFAULT_RETRY_ON

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.retries, self.retry_delay, self.retry_backoff, self.retry_max_delay, self.retry_jitter, self.retry_on
        )


# Actions: decisions are values; the drivers (serial runner, xdist scheduler) carry them out.


class Verdict(str, enum.Enum):
    """How the core takes the end of one attempt: what every report of that attempt must say."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"  # failed, and another attempt follows (pytest's ``rerun``)
    FAILED = "failed"  # failed, and the step ends failed
    ALLOWED_FAILURE = "allowed_failure"  # failed, the step ends failed, but it is not critical
    CANCELED = "canceled"  # stopped (or ended while a cancel was under way): the step ends cancelled


@dataclass(frozen=True, slots=True)
class Start:
    step_id: str
    attempt: int  # 1-based
    # what a failure of this attempt would be, as things stand now: only a worker's provisional
    # label; the attempt's ``Ended`` verdict is the word that counts (an abort can change it meanwhile)
    if_failed: Verdict = Verdict.FAILED


@dataclass(frozen=True, slots=True)
class Ended:
    """The core's verdict on an attempt that just ended; always the first action ``attempt_ended`` returns."""

    step_id: str
    attempt: int
    verdict: Verdict
    reason: str | None = None  # why it was cancelled
    # a failure's: "retried after 2 s: exit code 1 is in retry_on", "not retried: exit code 2 is not
    # in retry_on"; None when the step has no retries to explain
    retry_reason: str | None = None
    retry_delay: float | None = None  # seconds until the next attempt (RETRY only)


@dataclass(frozen=True, slots=True)
class Skip:
    step_id: str
    reason: str  # shown verbatim in pytest, JUnit and the ledger


@dataclass(frozen=True, slots=True)
class Cancel:
    step_id: str
    reason: str
    running: bool  # True: an attempt is under way and its process tree must be killed


@dataclass(frozen=True, slots=True)
class Wait:
    """A retry is due at ``until`` (same clock as the ``now`` the driver passes in)."""

    step_id: str
    attempt: int  # the attempt that will start then
    until: float


@dataclass(frozen=True, slots=True)
class Blocked:
    """A ready step cannot start because another step of this run holds one of its locks."""

    step_id: str
    lock: str
    holder: str


@dataclass(frozen=True, slots=True)
class Finish:
    state: RunState
    reason: str | None


Action = Start | Ended | Skip | Cancel | Wait | Blocked | Finish
