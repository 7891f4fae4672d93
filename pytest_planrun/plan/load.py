"""Reading a plan file: JSON with line and column errors, the model, cross-step checks, variables.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.conditions import ConditionError, compile_condition
from .errors import format_field, locate, validation_problems
from .files import ProvidedPath, file_problems, provided_files
from .model import OnFailure, Plan, Step, VariableSpec
from .problems import PlanError, PlanJSONDecodeError, PlanNotFoundError, Problem
from .validate import check_steps, step_label
from .variables import Masker, find_references, resolve_variables, substitute


@dataclass(frozen=True)
class ResolvedStep:
    """A step with its variables substituted and plan defaults applied: what a runner needs."""

    step: Step
    index: int  # position in the plan's steps, from 0
    id: str
    name: str  # the step's name, or its id
    command: str
    args: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]  # globals.env overlaid by the step's env
    shell: bool
    timeout_sec: float
    retries: int
    retry_delay_sec: float
    critical: bool
    on_failure: OnFailure
    depends_on: tuple[str, ...]
    tags: tuple[str, ...]
    weight: float | None
    locks: tuple[str, ...]
    provides: tuple[str, ...]
    consumes: tuple[str, ...]
    condition: str | None
    no_output_timeout_sec: float | None = None  # None: a step may stay silent until its timeout
    # the retry policy beyond ``retries``/``retry_delay_sec``, plan defaults applied
    retry_backoff: float = 1.0
    retry_max_delay_sec: float | None = None
    retry_jitter: bool = False
    retry_on: tuple[str | int, ...] = ("failure", "timeout")
    runs_on: tuple[str, ...] = ()  # labels a worker must all carry; empty: any worker
    # the ``provides`` entries that are files (their names are in ``provides`` too)
    provided_files: tuple[ProvidedPath, ...] = ()


@dataclass(frozen=True)
class LoadedPlan:
    """A valid plan file with its variables resolved."""

    path: Path  # absolute
    display_path: str  # as the user gave it; used in messages and node ids
    plan: Plan
    steps: tuple[ResolvedStep, ...]  # in declaration order
    variables: Mapping[str, str]
    secret_values: tuple[str, ...]
    masker: Masker
    plan_hash: str  # sha256 of the file's bytes
    # with ``require_values=False``: the variables that had no value, left as ``${NAME}`` in the steps
    missing_values: tuple[Problem, ...] = ()
    _by_id: Mapping[str, ResolvedStep] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {step.id: step for step in self.steps})

    def step(self, step_id: str) -> ResolvedStep:
        """The step with this id; KeyError if there is none."""
        return self._by_id[step_id]

    def deps(self) -> dict[str, list[str]]:
        """Each step id mapped to the ids it depends on, in declaration order."""
        return {step.id: list(step.depends_on) for step in self.steps}

    def masked_variables(self) -> dict[str, str]:
        """The variables with secret values shown as ``***`` (for reports and the ledger)."""
        return {name: self.masker.mask(value) if value else value for name, value in self.variables.items()}


def load_plan(
    path: str | os.PathLike[str],
    cli_vars: Mapping[str, str] = {},
    environ: Mapping[str, str] | None = None,
    display_path: str | None = None,
    require_values: bool = True,
) -> LoadedPlan:
    """Read, validate and resolve a plan file.

    ``cli_vars`` are the ``--var`` values, ``environ`` is where declared ``env`` sources are read
    (default ``os.environ``). Raises PlanError listing every problem found, never just the first.
    With ``require_values=False`` (drawing or checking a plan, not running it) a variable without a
    value is no problem: it stays ``${NAME}`` and is listed in ``missing_values``.
    """
    given = Path(path)
    file = display_path if display_path is not None else _display(given)
    content, raw, duplicates = _read(given, file)
    raw_steps: list[Any] = raw["steps"] if isinstance(raw.get("steps"), list) else []
    environ = os.environ if environ is None else environ

    problems: list[Problem] = []
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as error:
        problems.extend(validation_problems(error, raw_steps, file))
    problems.extend(_duplicate_key_problems(raw, duplicates, raw_steps, file))
    problems.extend(check_steps(raw_steps, file))

    declared = plan.variables if plan is not None else _raw_declarations(raw.get("variables"))
    values, secrets = resolve_variables(declared, cli_vars, environ)
    missing = _undefined_variable_problems(raw, raw_steps, values, declared, file)
    if require_values:
        problems.extend(missing)
    else:
        values.update({name: f"${{{name}}}" for name, _ in _references(raw, raw_steps) if name not in values})
    problems.extend(file_problems(raw_steps, values, file))
    if plan is not None:
        problems.extend(_condition_problems(plan, values, file))
    if problems or plan is None:
        raise PlanError(problems)

    steps = tuple(_resolve_step(plan, index, step, values) for index, step in enumerate(plan.steps))
    return LoadedPlan(
        path=given.absolute(),
        display_path=file,
        plan=plan,
        steps=steps,
        variables=values,
        secret_values=secrets,
        masker=Masker(secrets),
        plan_hash=hashlib.sha256(content).hexdigest(),
        missing_values=() if require_values else tuple(missing),
    )


def variable_names(path: str | os.PathLike[str]) -> frozenset[str] | None:
    """Every variable a plan file declares or uses (``${NAME}`` anywhere in it, ``vars.NAME`` in a
    condition); None when the file is not a readable JSON object (its own problem says so)."""
    try:
        content, raw, _ = _read(Path(path), str(path))
    except PlanError:
        return None
    names: set[str] = set(raw["variables"]) if isinstance(raw.get("variables"), dict) else set()
    names.update(find_references(content.decode("utf-8-sig")))  # one pass over the text, not per string
    steps = raw.get("steps")
    for step in steps if isinstance(steps, list) else []:
        condition = step.get("condition") if isinstance(step, dict) else None
        if isinstance(condition, str):
            try:
                names.update(compile_condition(condition).var_refs)
            except ConditionError:
                pass  # reported with the plan's problems
    return frozenset(names)


def _condition_problems(plan: Plan, variables: Mapping[str, str], file: str) -> list[Problem]:
    """Conditions are parsed with the plan: syntax, functions, and the steps and variables they name."""
    step_ids = [step.id for step in plan.steps]
    problems = []
    for step in plan.steps:
        if step.condition is None:
            continue
        try:
            compile_condition(step.condition, step_ids=step_ids, variables=variables.keys())
        except ConditionError as error:
            problems.append(Problem(file, step.id, "condition", f"{error} of {step.condition!r}"))
    return problems


def _display(path: Path) -> str:
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(path)


Loc = tuple[int | str, ...]
# Keys given twice, keyed by id() of the parsed object holding them (alive as long as the tree is).
_Duplicates = dict[int, list[str]]


def _read(path: Path, file: str) -> tuple[bytes, dict[str, Any], _Duplicates]:
    """The file's bytes, its top-level object and its repeated keys; PlanError if there is no object."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise PlanNotFoundError(file, str(path)) from None
    except OSError as error:
        raise PlanError([Problem(file, None, None, f"cannot read plan file: {error.strerror}")]) from None
    try:
        # utf-8-sig: editors on Windows may save a byte order mark, which json rejects.
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text: invalid byte at offset {error.start}"
        raise PlanError([Problem(file, None, None, message)]) from None
    duplicates: _Duplicates = {}

    def note_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated: list[str] = []
            for key, _ in pairs:
                if key in seen and key not in repeated:
                    repeated.append(key)
                seen.add(key)
            duplicates[id(obj)] = repeated
        return obj

    try:
        raw = json.loads(text, object_pairs_hook=note_duplicates)
    except json.JSONDecodeError as error:
        raise PlanJSONDecodeError(file, error) from None
    if not isinstance(raw, dict):
        got = "a list" if isinstance(raw, list) else json.dumps(raw)
        raise PlanError([Problem(file, None, None, f"the plan must be a JSON object, got {got}")])
    return content, raw, duplicates


def _duplicate_key_problems(
    raw: dict[str, Any], duplicates: _Duplicates, raw_steps: list[Any], file: str
) -> list[Problem]:
    problems: list[Problem] = []
    if not duplicates:
        return problems
    todo: list[tuple[Loc, Any]] = [((), raw)]
    while todo:
        loc, value = todo.pop()
        if isinstance(value, dict):
            for key in duplicates.get(id(value), []):
                step, where = locate((*loc, key), raw_steps)
                problems.append(Problem(file, step, where, "given more than once", "JSON keeps only the last value"))
            todo.extend(((*loc, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            todo.extend(((*loc, index), item) for index, item in reversed(list(enumerate(value))))
    return problems


def _raw_declarations(raw: Any) -> dict[str, str | VariableSpec]:
    """Best-effort declarations from a plan the model rejected, so undefined variables are still found.

    A malformed declaration is taken as defined: the model already reported it.
    """
    declared: dict[str, str | VariableSpec] = {}
    if not isinstance(raw, dict):
        return declared
    for name, spec in raw.items():
        try:
            declared[name] = spec if isinstance(spec, str) else VariableSpec.model_validate(spec)
        except ValidationError:
            declared[name] = ""
    return declared


def _references(raw: dict[str, Any], raw_steps: list[Any]) -> Iterator[tuple[str, str]]:
    """Each ``(name, place)`` where a variable is used, in plan order."""
    globals_ = raw.get("globals")
    if isinstance(globals_, dict):
        yield from _in_env(globals_.get("env"), "field 'globals.env")
    for index, step in enumerate(raw_steps):
        if not isinstance(step, dict):
            continue
        label = step_label(raw_steps, index)
        at = label if label.startswith("steps[") else f"step '{label}'"
        for key in ("command", "cwd"):
            yield from _in_text(step.get(key), f"{at} field '{key}'")
        args = step.get("args")
        if isinstance(args, list):
            for position, arg in enumerate(args):
                yield from _in_text(arg, f"{at} field '{format_field(('args', position))}'")
        yield from _in_env(step.get("env"), f"{at} field 'env")
        provides = step.get("provides")
        if isinstance(provides, list):
            for position, entry in enumerate(provides):
                if isinstance(entry, dict):
                    yield from _in_text(entry.get("path"), f"{at} field 'provides[{position}].path'")


def _in_env(env: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(env, dict):
        for key, value in env.items():
            yield from _in_text(value, f"{prefix}.{key}'")


def _in_text(value: Any, place: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        for name in find_references(value):
            yield name, place


_MAX_PLACES = 6


def _undefined_variable_problems(
    raw: dict[str, Any],
    raw_steps: list[Any],
    values: Mapping[str, str],
    declared: Mapping[str, str | VariableSpec],
    file: str,
) -> list[Problem]:
    """One problem per undefined variable, listing where it is used."""
    places: dict[str, list[str]] = {}
    for name, place in _references(raw, raw_steps):
        if name not in values and place not in places.setdefault(name, []):
            places[name].append(place)
    problems: list[Problem] = []
    for name, used in places.items():
        shown = ", ".join(used[:_MAX_PLACES])
        if len(used) > _MAX_PLACES:
            shown += f" and {len(used) - _MAX_PLACES} more"
        spec = declared.get(name)
        if isinstance(spec, VariableSpec):
            source = f"set the environment variable {spec.env}" if spec.env else 'give it a "default"'
            problems.append(
                Problem(
                    file,
                    None,
                    f"variables.{name}",
                    f"variable '{name}' has no value (used in {shown})",
                    f"pass --var {name}=VALUE or {source}",
                )
            )
        else:
            problems.append(
                Problem(
                    file,
                    None,
                    None,
                    f"undefined variable '{name}' (used in {shown})",
                    f'pass --var {name}=VALUE or declare it under "variables"',
                )
            )
    return problems


def _resolve_step(plan: Plan, index: int, step: Step, values: Mapping[str, str]) -> ResolvedStep:
    env = {key: substitute(value, values) for key, value in {**plan.globals.env, **step.env}.items()}
    return ResolvedStep(
        step=step,
        index=index,
        id=step.id,
        name=step.name or step.id,
        command=substitute(step.command, values),
        args=tuple(substitute(arg, values) for arg in step.args),
        cwd=substitute(step.cwd, values),
        env=env,
        shell=step.shell,
        timeout_sec=step.effective_timeout(plan.globals),
        retries=step.effective_retries(plan.globals),
        retry_delay_sec=step.retry_delay_sec,
        critical=step.critical,
        on_failure=step.on_failure,
        depends_on=tuple(step.depends_on),
        tags=tuple(step.tags),
        weight=step.ui_hints.weight if step.ui_hints is not None else None,
        locks=tuple(step.locks),
        provides=step.provided_names(),
        consumes=tuple(step.consumes),
        condition=step.condition,
        no_output_timeout_sec=step.effective_no_output_timeout(plan.globals),
        runs_on=step.required_labels(),
        provided_files=provided_files(step.provides, values),
        **_retry_policy(plan, step),
    )


def _retry_policy(plan: Plan, step: Step) -> dict[str, Any]:
    """The step's retry fields, a null one taking the plan's ``default_*`` value."""
    defaults = plan.globals
    return {
        "retry_backoff": defaults.default_retry_backoff if step.retry_backoff is None else step.retry_backoff,
        "retry_max_delay_sec": (
            defaults.default_retry_max_delay_sec if step.retry_max_delay_sec is None else step.retry_max_delay_sec
        ),
        "retry_jitter": defaults.default_retry_jitter if step.retry_jitter is None else step.retry_jitter,
        "retry_on": tuple(defaults.default_retry_on if step.retry_on is None else step.retry_on),
    }
