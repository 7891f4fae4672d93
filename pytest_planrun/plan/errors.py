"""Pydantic validation errors rewritten as problems that name the step and field in plan terms.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .model import Globals, Plan, ProvidedFile, Step, UiHints, VariableSpec
from .problems import Problem
from .validate import did_you_mean, step_label

Loc = tuple[int | str, ...]

# Plan authors write JSON, so messages speak of lists, objects and numbers, not tuples and dicts.
_MESSAGES = {
    "missing": "required field is missing",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}
# For these the message already says everything, or the input is the whole enclosing object.
_NO_VALUE = {"missing", "extra_forbidden", "step_id", "label", "too_short", "string_too_short", "retry_on_code"}
# Tags of the tagged unions (model.VariableEntry, RunsOn, ProvidesEntry), which pydantic puts in the
# error location after the field (``variables.X``, ``steps[i].runs_on``, ``steps[i].provides[j]``).
_VARIABLE_TAGS = {"default", "spec"}
_STEP_TAGS = {"runs_on": {"label", "labels"}, "provides": {"name", "file"}}


def format_field(parts: Sequence[int | str]) -> str | None:
    """``("args", 2)`` -> ``args[2]``; ``("globals", "env", "X")`` -> ``globals.env.X``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or None


def locate(loc: Loc, raw_steps: Sequence[Any]) -> tuple[str | None, str | None]:
    """Split a location in the plan into the step it is in (if any) and the field path."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        return step_label(raw_steps, loc[1]), format_field(loc[2:])
    return None, format_field(loc)


def validation_problems(error: ValidationError, raw_steps: Sequence[Any], file: str) -> list[Problem]:
    """One problem per pydantic error (duplicates dropped), in the order pydantic found them."""
    problems: list[Problem] = []
    for details in error.errors(include_url=False):
        loc: Loc = tuple(details["loc"])
        if len(loc) >= 3 and loc[0] == "variables" and loc[2] in _VARIABLE_TAGS:
            loc = loc[:2] + loc[3:]
        loc = _without_step_tag(loc)
        if _counted_only_valid_items(details):
            continue
        message, hint = _describe(details, loc)
        if loc and loc[-1] == "[key]":
            loc = loc[:-2]
        step, field = locate(loc, raw_steps)
        # the earlier orchestrator's wording, which its callers match on
        summary = f"Missing required field: {loc[-1]}" if details["type"] == "missing" and loc else None
        problem = Problem(file, step, field, message, hint, summary)
        if problem not in problems:
            problems.append(problem)
    return problems


def _without_step_tag(loc: Loc) -> Loc:
    """``("steps", 0, "runs_on", "labels", 1)`` -> ``("steps", 0, "runs_on", 1)``."""
    if len(loc) >= 4 and loc[0] == "steps" and isinstance(loc[2], str) and loc[2] in _STEP_TAGS:
        # the tag follows the field (runs_on) or the list item (provides[j])
        at = 3 if loc[2] == "runs_on" else 4
        if len(loc) > at and loc[at] in _STEP_TAGS[loc[2]]:
            return loc[:at] + loc[at + 1 :]
    return loc


def _counted_only_valid_items(details: ErrorDetails) -> bool:
    """A "too short" list that is long enough: pydantic counted the items that validated, and the
    others have their own errors."""
    minimum = details.get("ctx", {}).get("min_length", 0)
    return details["type"] == "too_short" and len(details["input"]) >= minimum


def _describe(details: ErrorDetails, loc: Loc) -> tuple[str, str | None]:
    kind = details["type"]
    if kind == "extra_forbidden":
        return "unknown field", did_you_mean(str(loc[-1]), list(_model_at(loc[:-1]).model_fields))
    if loc and loc[-1] == "[key]":
        name = loc[-2]
        if loc[0] == "variables":
            return f"invalid variable name {name!r}", "use letters, digits and '_', not starting with a digit"
        return f"invalid environment variable name {name!r}", "a name cannot be empty or contain '='"
    message = _MESSAGES.get(kind) or details["msg"].replace("Input should be", "must be", 1)
    if kind not in _NO_VALUE:
        message += f", got {_show(details['input'])}"
    hint = details.get("ctx", {}).get("hint")  # a custom error's did-you-mean (model.RetryOnEntry)
    return message, hint if isinstance(hint, str) else None


def _model_at(loc: Loc) -> type[BaseModel]:
    """The model whose fields are valid at ``loc`` (used for did-you-mean on unknown fields)."""
    if not loc:
        return Plan
    if loc[0] == "globals":
        return Globals
    if loc[0] == "variables":
        return VariableSpec
    if loc[0] == "steps" and len(loc) == 2:
        return Step
    if loc[0] == "steps" and len(loc) == 4 and loc[2] == "provides":
        return ProvidedFile
    return UiHints  # ("steps", i, "ui_hints"), the only other nested model


def _show(value: Any) -> str:
    """A value as the plan author wrote it (JSON), shortened."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."
