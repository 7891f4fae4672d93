"""pytest-planrun: run JSON plans of command steps as pytest items."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core.state import Outcome
from .plan import Plan, PlanError

if TYPE_CHECKING:
    from .api import Orchestrator

__all__ = ["Orchestrator", "Outcome", "Plan", "PlanError"]


def __getattr__(name: str) -> object:
    # The API brings in the ledger (sqlite3, subprocess); the scheduling core and the plan model,
    # which import this package first, must stay free of I/O modules.
    if name == "Orchestrator":
        from .api import Orchestrator

        return Orchestrator
    raise AttributeError(f"module 'pytest_planrun' has no attribute {name!r}")
