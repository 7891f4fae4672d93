"""The plan format as frozen pydantic models: every field, its type, its default and its limits.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
import errno
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StrictBool,
    Tag,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from ..core.placement import LABEL_PATTERN, is_label
from .problems import PlanNotFoundError

OnFailure = Literal["abort", "skip_dependents", "continue"]

STEP_ID_PATTERN = r"^[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)*$"
VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_STEP_ID = re.compile(STEP_ID_PATTERN)


def _check_step_id(value: str) -> str:
    if not _STEP_ID.match(value):
        # '::' separates the plan from the step in a pytest node id, so it cannot be part of an id.
        raise PydanticCustomError(
            "step_id",
            "invalid step id '{value}': use letters, digits, '_', '.', '-' and single ':' inside",
            {"value": value},
        )
    return value


StepId = Annotated[str, AfterValidator(_check_step_id), Field(json_schema_extra={"pattern": STEP_ID_PATTERN})]
# Strict numbers: "5" or true where a number belongs is a mistake in the plan, not a value. An int is
# still accepted for a float.
PositiveSeconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0)]
EnvName = Annotated[str, Field(pattern=r"^[^=\x00]+$")]
EnvMap = dict[EnvName, str]
VariableName = Annotated[str, Field(pattern=VARIABLE_NAME_PATTERN)]
Backoff = Annotated[float, Field(strict=True, ge=1, allow_inf_nan=False)]
RETRY_KINDS = ("failure", "timeout", "no_output")  # core.retry.RETRY_KINDS, spelled for the schema


def _check_retry_on(value: Any) -> str | int:
    """One ``retry_on`` entry: a way of failing, or an exit code."""
    if isinstance(value, str) and value in RETRY_KINDS:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 255:
            raise PydanticCustomError(
                "retry_on_code", "an exit code must be from 1 to 255, got {value}", {"value": value}
            )
        return value
    close = difflib.get_close_matches(value, RETRY_KINDS, n=1) if isinstance(value, str) else []
    # the hint goes to the problem's hint (plan/errors.py reads it from the error's context)
    context = {"hint": f"did you mean '{close[0]}'?"} if close else None
    raise PydanticCustomError("retry_on", "must be 'failure', 'timeout', 'no_output' or an exit code", context)


RetryOnEntry = Annotated[
    str | int,
    PlainValidator(_check_retry_on),
    WithJsonSchema({"anyOf": [{"enum": list(RETRY_KINDS)}, {"type": "integer", "minimum": 1, "maximum": 255}]}),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def _check_label(value: str) -> str:
    if not value:
        raise PydanticCustomError("label", "a label must not be empty")
    if not is_label(value):
        raise PydanticCustomError(
            "label", "invalid label {value}: use letters, digits, '_', '.' and '-'", {"value": repr(value)}
        )
    return value


Label = Annotated[str, AfterValidator(_check_label), Field(json_schema_extra={"pattern": LABEL_PATTERN})]


def _runs_on_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "label"
    if isinstance(value, list):
        return "labels"
    return None


# A tagged union rather than a plain one: a bad label's error names one place (``runs_on[1]``), where
# ``str | list[str]`` would report it once per member. plan/errors.py drops the tag from locations.
RunsOn = Annotated[
    Annotated[Label, Tag("label")] | Annotated[list[Label], Tag("labels")],
    Discriminator(
        _runs_on_kind,
        custom_error_type="runs_on_type",
        custom_error_message="must be a label or a list of labels",
    ),
]


class ProvidedFile(_Frozen):
    """A resource that is a file: consumers get the file at ``path``."""

    name: Annotated[str, Field(min_length=1)]
    """The resource's name, as consumers list it in ``consumes``."""
    path: Annotated[str, Field(min_length=1)]
    """The file, relative to the step's ``cwd`` (where the producer leaves it and where each consumer
    finds it); ``${NAME}`` is substituted; no absolute path, no '..'."""


def _provides_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "name"
    if isinstance(value, dict | ProvidedFile):
        return "file"
    return None


ProvidesEntry = Annotated[
    Annotated[str, Tag("name")] | Annotated[ProvidedFile, Tag("file")],
    Discriminator(
        _provides_kind,
        custom_error_type="provides_type",
        custom_error_message="must be a resource name or an object with 'name' and 'path'",
    ),
]


class UiHints(_Frozen):
    """Presentation hints: a group for displays, a weight for ordering and scheduling priority."""

    group: str | None = None
    weight: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = None


class VariableSpec(_Frozen):
    """A declared variable; its value comes from ``--var``, else the environment variable ``env``,
    else ``default``."""

    default: str | None = None
    env: Annotated[str, Field(min_length=1)] | None = None
    """Environment variable to read the value from."""
    secret: StrictBool = False
    """Mask the value (``***``) in every output."""
    description: str | None = None


def _variable_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "default"
    if isinstance(value, dict | VariableSpec):
        return "spec"
    return None


VariableEntry = Annotated[
    Annotated[str, Tag("default")] | Annotated[VariableSpec, Tag("spec")],
    Discriminator(
        _variable_kind,
        custom_error_type="variable_type",
        custom_error_message="expected a string (the default value) or an object with "
        "'default', 'env', 'secret', 'description'",
    ),
]


class Globals(_Frozen):
    """Settings for the whole plan, and defaults for its steps."""

    max_concurrency: Annotated[int, Field(strict=True, ge=1)] = 1
    """How many steps may run at once."""
    default_timeout_sec: PositiveSeconds = 1800
    default_retries: Count = 0
    default_no_output_timeout_sec: PositiveSeconds | None = None
    """Seconds a step may stay silent on stdout and stderr before it is killed; null means never."""
    default_retry_backoff: Backoff = 1
    default_retry_max_delay_sec: Seconds | None = None
    default_retry_jitter: StrictBool = False
    default_retry_on: list[RetryOnEntry] = ["failure", "timeout"]
    env: EnvMap = {}
    """Environment for every step, over the process environment."""


class Step(_Frozen):
    """One command to run, with what it needs before it and what happens when it fails."""

    id: StepId
    name: str | None = None
    description: str | None = None
    command: Annotated[str, Field(min_length=1)]
    """The executable (or, with ``shell``, the shell command line)."""
    # Lists, not tuples: callers of the earlier API compare them with lists (`args == ["-c", "..."]`).
    # The model is frozen, so a field cannot be reassigned; nothing hashes steps (env is a dict anyway).
    args: list[str] = []
    """Arguments, each passed as one argument, never re-split."""
    cwd: str = "."
    """Working directory, relative to the directory pytest was invoked from."""
    shell: StrictBool = False
    env: EnvMap = {}
    """Environment over the process environment and ``globals.env``."""
    depends_on: list[str] = []
    timeout_sec: PositiveSeconds | None = None
    """Seconds before the attempt is killed; null means ``globals.default_timeout_sec``."""
    retries: Count | None = None
    """Extra attempts after a failure; null means ``globals.default_retries``, 0 means none."""
    retry_delay_sec: Seconds = 0
    """Seconds before the first retry."""
    retry_backoff: Backoff | None = None
    """Factor the delay grows by per retry (2: 5 s, 10 s, 20 s); null means ``globals.default_retry_backoff`` (1)."""
    retry_max_delay_sec: Seconds | None = None
    """Cap on the delay before a retry; null means ``globals.default_retry_max_delay_sec`` (no cap)."""
    retry_jitter: StrictBool | None = None
    """Wait a random time in [0, delay] instead (full jitter); null means ``globals.default_retry_jitter``."""
    retry_on: list[RetryOnEntry] | None = None
    """What is retried: "failure" (any non-zero exit), "timeout", "no_output", exit codes; null means
    ``globals.default_retry_on`` (["failure", "timeout"])."""
    critical: StrictBool = True
    """Whether a failure of this step fails the run."""
    condition: str | None = None
    """Expression deciding whether the step runs, e.g. ``success() && vars.DEPLOY == 'yes'``."""
    locks: list[str] = []
    """Steps sharing a lock name never run at the same time, even across runs on one machine."""
    on_failure: OnFailure = "abort"
    provides: list[ProvidesEntry] = []
    """Resources this step provides: names, or ``{"name": ..., "path": ...}`` for a file it hands on."""
    consumes: list[str] = []
    """Resources that a transitive dependency must provide."""
    tags: list[str] = []
    ui_hints: UiHints | None = None
    no_output_timeout_sec: PositiveSeconds | None = None
    """Seconds of silence on stdout and stderr before the attempt is killed; null means
    ``globals.default_no_output_timeout_sec``."""
    runs_on: RunsOn | None = None
    """Labels a worker must all carry to run this step (one label or a list); null means any worker."""

    def effective_timeout(self, globals: Globals) -> float:
        """The step's timeout in seconds, falling back to the plan default."""
        return self.timeout_sec if self.timeout_sec is not None else globals.default_timeout_sec

    def effective_no_output_timeout(self, globals: Globals) -> float | None:
        """The step's no-output timeout in seconds, or None when silence is allowed."""
        if self.no_output_timeout_sec is not None:
            return self.no_output_timeout_sec
        return globals.default_no_output_timeout_sec

    def effective_retries(self, globals: Globals) -> int:
        """The step's extra attempts; an explicit 0 beats a non-zero plan default."""
        return self.retries if self.retries is not None else globals.default_retries

    def required_labels(self) -> tuple[str, ...]:
        """The labels of ``runs_on`` as a tuple, each once; empty means any worker."""
        if self.runs_on is None:
            return ()
        return tuple(dict.fromkeys([self.runs_on] if isinstance(self.runs_on, str) else self.runs_on))

    def provided_names(self) -> tuple[str, ...]:
        """The name of every resource in ``provides``, plain and file ones, in order."""
        return tuple(entry if isinstance(entry, str) else entry.name for entry in self.provides)


class Plan(_Frozen):
    """A plan: steps forming a dependency graph, run as pytest items."""

    plan_id: str
    version: str
    description: str | None = None
    metadata: dict[str, Any] = {}
    """Free-form information about the plan; not interpreted."""
    doc_id: str | None = None
    globals: Globals
    variables: dict[VariableName, VariableEntry] = {}
    """Variables used as ``${NAME}`` in command, args, cwd and env values; a string is a default."""
    steps: Annotated[list[Step], Field(min_length=1)]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], variables: Mapping[str, str] | None = None) -> Plan:
        """Load a plan file with ``variables`` (as ``--var``) substituted into command, args, cwd and env.

        Raises as the earlier orchestrator's API did: ``FileNotFoundError`` for a missing file,
        ``json.JSONDecodeError`` for invalid JSON, else a ``PlanError`` (a ``ValueError``) listing every
        problem. `load_plan` gives the steps resolved for running.
        """
        # Imported here because loading builds on this module.
        from .load import load_plan
        from .variables import substitute

        try:
            loaded = load_plan(path, variables or {})
        except PlanNotFoundError as error:
            raise FileNotFoundError(errno.ENOENT, "plan file not found", error.path) from None
        env = {key: substitute(value, loaded.variables) for key, value in loaded.plan.globals.env.items()}
        steps = [
            s.step.model_copy(
                update={
                    "command": s.command,
                    "args": list(s.args),
                    "cwd": s.cwd,
                    "env": {k: s.env[k] for k in s.step.env},
                    "provides": _with_paths(s.step.provides, [f.path for f in s.provided_files]),
                }
            )
            for s in loaded.steps
        ]
        return loaded.plan.model_copy(
            update={"globals": loaded.plan.globals.model_copy(update={"env": env}), "steps": steps}
        )


def _with_paths(provides: list[str | ProvidedFile], paths: list[str]) -> list[str | ProvidedFile]:
    """``provides`` with each file's path replaced by the next of ``paths`` (the resolved ones)."""
    resolved = iter(paths)
    return [
        entry if isinstance(entry, str) else entry.model_copy(update={"path": next(resolved)}) for entry in provides
    ]


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of the plan format (``planrun schema``)."""
    schema = Plan.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
