"""What a plan is: the model, loading and validating plan files, variables and their masking.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from .files import ProvidedPath
from .load import LoadedPlan, ResolvedStep, load_plan
from .model import Globals, OnFailure, Plan, ProvidedFile, Step, UiHints, VariableSpec, plan_json_schema
from .problems import PlanError, Problem
from .validate import check_steps
from .variables import Masker, find_references, resolve_variables, substitute

__all__ = [
    "Globals",
    "LoadedPlan",
    "Masker",
    "OnFailure",
    "Plan",
    "PlanError",
    "Problem",
    "ProvidedFile",
    "ProvidedPath",
    "ResolvedStep",
    "Step",
    "UiHints",
    "VariableSpec",
    "check_steps",
    "find_references",
    "load_plan",
    "plan_json_schema",
    "resolve_variables",
    "substitute",
]
