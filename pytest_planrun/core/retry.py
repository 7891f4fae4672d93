"""Retry policy: whether a failed attempt is retried, and how long to wait before the next one.

Pure: the jitter comes from a seeded ``random.Random`` the caller passes in, never the global one,
so the same run (same seed, same events) waits the same delays.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random
from typing import Literal

FailureKind = Literal["failure", "timeout", "no_output"]
RETRY_KINDS: tuple[FailureKind, ...] = ("failure", "timeout", "no_output")
DEFAULT_RETRY_ON: tuple[str | int, ...] = ("failure", "timeout")


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """How a failed attempt ended, in ``retry_on``'s terms."""

    kind: FailureKind = "failure"
    exit_code: int | None = None  # negative: killed by that signal (as subprocess reports it)

    def describe(self) -> str:
        """The failure as the retry reason names it: ``exit code 2``, ``timeout``, ``no_output``."""
        if self.kind != "failure":
            return self.kind
        if self.exit_code is None:
            return "failure"  # no exit code: the executable was not found, the worker crashed
        if self.exit_code < 0:
            return f"exit code {128 - self.exit_code} (signal {-self.exit_code})"
        return f"exit code {self.exit_code}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A step's retry fields, plan defaults applied."""

    retries: int = 0
    delay: float = 0.0  # before the first retry
    backoff: float = 1.0  # factor per further retry; 1 keeps the delay fixed
    max_delay: float | None = None
    jitter: bool = False  # full jitter: a random wait in [0, delay]
    retry_on: tuple[str | int, ...] = DEFAULT_RETRY_ON

    def covers(self, failure: AttemptFailure) -> bool:
        """Whether ``retry_on`` lists this way of failing.

        ``"failure"`` is any non-zero exit (or none at all); an integer is that exit code, a process
        killed by signal N counting as 128 + N as a shell reports it; ``"timeout"`` covers both
        timeouts, ``"no_output"`` the no-output one only (so ``["no_output"]`` retries a silent hang
        but not a step that ran out of time while printing).
        """
        listed = self.retry_on
        if failure.kind == "failure":
            code = failure.exit_code
            if code is not None and (code if code >= 0 else 128 - code) in _codes(listed):
                return True
            return "failure" in listed
        return failure.kind in listed or "timeout" in listed


def _codes(listed: tuple[str | int, ...]) -> set[int]:
    # bool is an int: a stray true in a hand-built policy must not read as exit code 1
    return {item for item in listed if isinstance(item, int) and not isinstance(item, bool)}


def retry_delay(policy: RetryPolicy, attempt: int, rng: Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

    ``delay * backoff ** (attempt - 1)``, capped at ``max_delay``; with jitter, a value drawn
    uniformly from [0, that] with ``rng`` (required then). Non-decreasing in ``attempt`` up to the
    cap without jitter; never above the cap.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    if policy.delay <= 0:
        return 0.0
    try:
        delay = policy.delay * policy.backoff ** (attempt - 1)
    except OverflowError:  # thousands of retries doubling: beyond any cap
        delay = math.inf
    if policy.max_delay is not None:
        delay = min(delay, policy.max_delay)
    if policy.jitter and 0 < delay < math.inf:
        if rng is None:
            raise ValueError("a policy with jitter needs a random source")
        delay = rng.uniform(0.0, delay)
    return delay
