"""``planrun schema``: the JSON Schema of the plan format, from the model, and its one failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli.helpers import Planrun

REPO = Path(__file__).parents[2]
# SPEC §2: the fields every plan of the earlier orchestrator may use
PLAN_FIELDS = {"plan_id", "version", "description", "metadata", "globals", "steps"}
GLOBALS_FIELDS = {"max_concurrency", "default_timeout_sec", "default_retries", "env"}
STEP_FIELDS = {
    "id",
    "name",
    "description",
    "command",
    "args",
    "cwd",
    "shell",
    "env",
    "depends_on",
    "timeout_sec",
    "retries",
    "retry_delay_sec",
    "critical",
    "condition",
    "locks",
    "on_failure",
    "provides",
    "consumes",
    "tags",
    "ui_hints",
}


@pytest.fixture
def schema(planrun: Planrun) -> dict[str, Any]:
    result = planrun("schema")
    assert (result.code, result.err) == (0, "")
    parsed: dict[str, Any] = json.loads(result.out)
    return parsed


def test_the_plan_format(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert PLAN_FIELDS <= set(schema["properties"])
    assert set(schema["required"]) == {"plan_id", "version", "globals", "steps"}
    steps = schema["properties"]["steps"]
    assert (steps["type"], steps["items"], steps["minItems"]) == ("array", {"$ref": "#/$defs/Step"}, 1)
    globals_, step = schema["$defs"]["Globals"], schema["$defs"]["Step"]
    assert GLOBALS_FIELDS <= set(globals_["properties"])
    assert STEP_FIELDS <= set(step["properties"]) and step["required"] == ["id", "command"]
    assert step["additionalProperties"] is False
    for name in ("args", "depends_on", "locks", "consumes", "tags"):
        assert step["properties"][name]["type"] == "array", name
        assert step["properties"][name]["items"] == {"type": "string"}, name
    assert step["properties"]["on_failure"]["enum"] == ["abort", "skip_dependents", "continue"]
    assert step["properties"]["cwd"]["default"] == "."


def test_runs_on_and_provided_files(schema: dict[str, Any]) -> None:
    step = schema["$defs"]["Step"]["properties"]
    label = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}
    runs_on = step["runs_on"]["anyOf"]
    assert runs_on == [{"oneOf": [label, {"type": "array", "items": label}]}, {"type": "null"}]
    assert "any worker" in step["runs_on"]["description"]
    assert step["provides"]["type"] == "array"
    assert step["provides"]["items"] == {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/ProvidedFile"}]}
    provided = schema["$defs"]["ProvidedFile"]
    assert (provided["required"], provided["additionalProperties"]) == (["name", "path"], False)
    assert "relative" in provided["properties"]["path"]["description"]


@pytest.mark.parametrize(
    "plan",
    sorted([*REPO.glob("plans/*.json"), *REPO.glob("pytest_planrun/plans/*.json")]),
    ids=lambda path: str(path.relative_to(REPO)),
)
def test_every_field_of_the_shipped_plans_is_in_it(schema: dict[str, Any], plan: Path) -> None:
    data = json.loads(plan.read_text())
    assert set(data) <= set(schema["properties"])
    assert set(data["globals"]) <= set(schema["$defs"]["Globals"]["properties"])
    for step in data["steps"]:
        assert set(step) <= set(schema["$defs"]["Step"]["properties"]), step["id"]


def test_bad_arguments_are_exit_2(planrun: Planrun) -> None:
    result = planrun("schema", "extra")
    assert (result.code, result.out) == (2, "")
    assert "usage: planrun" in result.err
