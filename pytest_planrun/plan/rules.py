"""A resolved step as the scheduling core sees it: the one translation real runs and what-if share.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..core.conditions import compile_condition
from ..core.state import ConditionLike, StepRule
from .load import LoadedPlan, ResolvedStep


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


def plan_rules(plans: Sequence[LoadedPlan], selected: Collection[str] | None = None) -> list[StepRule]:
    """Rules for the steps of ``plans`` (those in ``selected``, if given), conditions compiled, as a
    run without duration history has them (cost from ``ui_hints.weight``)."""
    return [
        step_rule(step, compile_condition(step.condition) if step.condition else None, step.weight or 1.0)
        for plan in plans
        for step in plan.steps
        if selected is None or step.id in selected
    ]


def plan_variables(plans: Sequence[LoadedPlan]) -> dict[str, str]:
    """The variables conditions see (``vars.NAME``), as the controller merges them."""
    variables: dict[str, str] = {}
    for plan in plans:
        variables.update(plan.variables)
    return variables
