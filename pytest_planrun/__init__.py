"""pytest-planrun: run JSON plans of command steps as pytest items."""

from __future__ import annotations

from .api import Orchestrator
from .core.state import Outcome
from .plan import Plan, PlanError

__all__ = ["Orchestrator", "Outcome", "Plan", "PlanError"]
