"""pytest-planrun: run JSON plans of command steps as pytest items.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import Orchestrator
    from .core.state import Outcome
    from .plan import Plan, PlanError

__all__ = ["Orchestrator", "Outcome", "Plan", "PlanError"]

# Imported on first use (PEP 562): every ``pytest`` start loads this package through the plugin's
# entry point, and the plan model (pydantic, lark) and the API (sqlite3, psutil) are needed only
# when a plan runs. The core and the plan model, which import this package first, stay free of I/O.
_WHERE = {"Orchestrator": ".api", "Outcome": ".core.state", "Plan": ".plan", "PlanError": ".plan"}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_planrun' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
