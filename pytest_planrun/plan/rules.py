"""A resolved step as the scheduling core sees it: the one translation real runs and what-if share."""

from __future__ import annotations

from ..core.state import ConditionLike, StepRule
from .load import ResolvedStep


def step_rule(step: ResolvedStep, condition: ConditionLike | None = None, cost: float = 1.0) -> StepRule:
    """The core's rule for ``step``; ``condition`` is its compiled condition, ``cost`` its expected
    duration (critical-path priority)."""
    return StepRule(
        step_id=step.id,
        depends_on=tuple(step.depends_on),
        on_failure=step.on_failure,
        critical=step.critical,
        retries=step.retries,
        retry_delay=step.retry_delay_sec,
        condition=condition,
        locks=tuple(step.locks),
        cost=cost,
        retry_backoff=step.retry_backoff,
        retry_max_delay=step.retry_max_delay_sec,
        retry_jitter=step.retry_jitter,
        retry_on=step.retry_on,
    )
