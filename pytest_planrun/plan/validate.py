"""Checks across steps (ids, dependencies, cycles, provided resources) on the raw JSON steps.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from ..core.graph import find_cycle, transitive_dependencies
from .problems import Problem

# These checks run on the parsed JSON even when the model rejected it, so a wrong type in one field
# does not hide a dependency typo elsewhere; every access below is type-guarded for that reason.


def step_label(raw_steps: Sequence[Any], index: int) -> str:
    """How problems name a step: its id when it has a usable one, else ``steps[index]``."""
    raw = raw_steps[index] if 0 <= index < len(raw_steps) else None
    if isinstance(raw, dict):
        step_id = raw.get("id")
        if isinstance(step_id, str) and step_id.strip():
            return step_id
    return f"steps[{index}]"


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """A ``did you mean 'x'?`` hint for the closest choice, if one is close enough."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _str_list(raw: dict[str, Any], key: str) -> list[str]:
    value = raw.get(key)
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def provided_names(raw: dict[str, Any]) -> list[str]:
    """The resource names a raw step provides: plain names and the ``name`` of file objects."""
    value = raw.get("provides")
    if not isinstance(value, list):
        return []
    names = [item.get("name") if isinstance(item, dict) else item for item in value]
    return [name for name in names if isinstance(name, str)]


def check_steps(raw_steps: list[Any], file: str) -> list[Problem]:
    """Report duplicate ids, unknown and self dependencies, cycles, and consumed resources that no
    transitive dependency provides."""
    problems: list[Problem] = []
    steps: dict[str, dict[str, Any]] = {}  # first declaration of each id
    positions: dict[str, list[int]] = {}
    for index, raw in enumerate(raw_steps):
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"].strip():
            steps.setdefault(raw["id"], raw)
            positions.setdefault(raw["id"], []).append(index)

    for step_id, where in positions.items():
        if len(where) > 1:
            listed = ", ".join(f"steps[{i}]" for i in where)
            problems.append(
                Problem(
                    file,
                    step_id,
                    "id",
                    f"duplicate step id '{step_id}' ({listed})",
                    "step ids must be unique",
                )
            )

    ids = list(steps)
    deps: dict[str, list[str]] = {step_id: [] for step_id in steps}
    # Every declaration is checked, so a duplicate's own typos are reported too; the graph keeps the first.
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            continue
        label = step_label(raw_steps, index)
        first = steps.get(label) is raw
        for need in _str_list(raw, "depends_on"):
            if need == raw.get("id"):
                summary = f"Circular dependency detected: {need} → {need}"
                problems.append(Problem(file, label, "depends_on", "step depends on itself", summary=summary))
            elif need not in steps:
                hint = did_you_mean(need, ids)
                summary = f"Step '{label}' depends on unknown step '{need}'"
                problems.append(Problem(file, label, "depends_on", f"unknown step '{need}'", hint, summary))
            elif first and need not in deps[label]:
                deps[label].append(need)

    problems.extend(_cycle_problems(deps, file))
    problems.extend(_resource_problems(steps, deps, file))
    return problems


def _cycle_problems(deps: dict[str, list[str]], file: str) -> list[Problem]:
    """One problem per cycle; the steps of a reported cycle are set aside so each tangle is reported
    once, while cycles elsewhere in the graph are still found."""
    problems: list[Problem] = []
    remaining = dict(deps)
    while (cycle := find_cycle(remaining)) is not None:
        summary = "Circular dependency detected: " + " → ".join(cycle)  # the earlier orchestrator's wording
        problems.append(Problem(file, None, "steps", "cycle " + " -> ".join(cycle), summary=summary))
        for step_id in cycle:
            remaining.pop(step_id, None)
    return problems


def _resource_problems(steps: dict[str, dict[str, Any]], deps: dict[str, list[str]], file: str) -> list[Problem]:
    providers: dict[str, list[str]] = {}
    for step_id, raw in steps.items():
        for resource in provided_names(raw):
            providers.setdefault(resource, []).append(step_id)
    problems: list[Problem] = []
    for step_id, raw in steps.items():
        consumed = _str_list(raw, "consumes")
        if not consumed:
            continue
        upstream = transitive_dependencies(deps, step_id)
        hint: str | None
        for resource in dict.fromkeys(consumed):
            others = [p for p in providers.get(resource, []) if p != step_id]
            if any(p in upstream for p in others):
                continue
            if others:
                names = ", ".join(f"'{p}'" for p in others)
                verb, pronoun = ("is", "it") if len(others) == 1 else ("are", "one of them")
                message = f"consumes '{resource}', provided by {names}, which {verb} not upstream"
                hint = f"add {pronoun} to depends_on, directly or through another step"
            else:
                nobody = "only this step provides" if resource in providers else "no step provides"
                message = f"consumes '{resource}', which {nobody}"
                hint = did_you_mean(resource, [r for r in providers if r != resource])
            problems.append(Problem(file, step_id, "consumes", message, hint))
    return problems
