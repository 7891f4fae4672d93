"""``pytest --plan PLAN --planrun-assume STEP=OUTCOME --collect-only``: the what-if table in the collection report.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ..core.whatif import Assumption, parse_assumption, unknown_steps, what_if
from ..plan import LoadedPlan
from ..plan.rules import plan_rules, plan_variables


def parse_assume(text: str) -> tuple[str, Assumption]:
    """``--planrun-assume STEP=OUTCOME`` -> (STEP, OUTCOME)."""
    try:
        return parse_assumption(text)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def check_assumptions(assume: dict[str, Assumption], plans: Sequence[LoadedPlan], collect_only: bool) -> None:
    """``--planrun-assume`` only describes a run: it needs ``--collect-only`` and steps the plans have."""
    if not assume:
        return
    if not collect_only:
        raise pytest.UsageError(
            "--planrun-assume shows what a run would do without running it: add --collect-only (or use planrun what-if)"
        )
    if unknown := unknown_steps(assume, [step.id for plan in plans for step in plan.steps]):
        raise pytest.UsageError(*unknown)


def what_if_lines(assume: dict[str, Assumption], plans: Sequence[LoadedPlan], selected: Sequence[str]) -> list[str]:
    """The forecast for the selected steps (deselected dependencies count as succeeded, as in a run)."""
    forecast = what_if(plan_rules(plans, set(selected)), assume, plan_variables(plans))
    given = ", ".join(f"{step_id}={outcome}" for step_id, outcome in assume.items())
    return [f"planrun what-if, assuming {given}:", *(f"  {line}" for line in forecast.table())]
