"""pytest-planrun: run JSON plans of command steps as pytest items."""

from __future__ import annotations

from .core.state import Outcome
from .plan import Plan, PlanError

__all__ = ["Orchestrator", "Outcome", "Plan", "PlanError"]


def __getattr__(name: str) -> object:
    # The API pulls in the ledger; the pytest plugin, which imports this package first, does not need it.
    if name == "Orchestrator":
        from .api import Orchestrator

        return Orchestrator
    raise AttributeError(name)
