"""The plan model: compatible plans load, defaults, effective values, strict types, the JSON Schema."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from planhelpers import COMPAT
from pydantic import ValidationError

from pytest_planrun.plan import (
    Globals,
    LoadedPlan,
    Plan,
    PlanError,
    ProvidedFile,
    ProvidedPath,
    Step,
    load_plan,
    plan_json_schema,
)

REPO = Path(__file__).parents[2]

WritePlan = Callable[..., Path]


def step(step_id: str, command: str = "true", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "command": command, **fields}


@pytest.fixture
def write_plan(tmp_path: Path) -> WritePlan:
    def write(*steps: dict[str, Any], **top: Any) -> Path:
        path = tmp_path / "plan.json"
        data = {"plan_id": "P", "version": "1", "globals": {}, "steps": list(steps), **top}
        path.write_text(json.dumps(data))
        return path

    return write


def test_safe_merge_loads_unchanged() -> None:
    loaded = load_plan(COMPAT / "safe_merge.json", {"BRANCH": "main"})
    assert loaded.plan.plan_id == "PLAN-SAFE-MERGE-001"
    assert loaded.plan.doc_id == "DOC-CONFIG-SAFE-MERGE-270"
    assert loaded.plan.metadata["tags"] == ["safe-merge", "git", "ci"]
    assert [s.id for s in loaded.steps][:2] == ["env_scan", "sync_health_check"]
    fetch = loaded.step("git_fetch")
    assert fetch.args == ("fetch", "origin", "main")
    assert (fetch.retries, fetch.retry_delay_sec, fetch.timeout_sec) == (2, 5.0, 300.0)
    assert fetch.env == {"PYTHONUNBUFFERED": "1"}
    assert loaded.step("git_merge").on_failure == "continue"
    assert loaded.step("git_merge").critical is False
    assert loaded.step("env_scan").weight == 10


def test_test_simple_loads_unchanged() -> None:
    loaded = load_plan(COMPAT / "test_simple.json")
    assert loaded.plan.globals.max_concurrency == 2
    assert loaded.plan.doc_id == "DOC-TEST-TEST-SIMPLE-336"
    assert loaded.deps() == {"step1": [], "step2": ["step1"], "step3": ["step1"], "step4": ["step2", "step3"]}
    assert loaded.step("step4").index == 3
    assert loaded.step("step1").args == ("-c", "print('Step 1 complete')")


def test_compat_plans_run_anywhere_and_provide_no_files() -> None:
    for loaded in (load_plan(COMPAT / "safe_merge.json", {"BRANCH": "main"}), load_plan(COMPAT / "test_simple.json")):
        assert all(s.runs_on == () and s.provided_files == () for s in loaded.steps)
        assert all(s.provides == tuple(s.step.provides) and s.provides for s in loaded.steps)
    assert load_plan(COMPAT / "test_simple.json").step("step4").provides == ("complete",)


@pytest.mark.parametrize(
    ("runs_on", "expected"),
    [(None, ()), ("gpu", ("gpu",)), (["linux", "gpu"], ("linux", "gpu")), (["gpu", "gpu"], ("gpu",)), ([], ())],
)
def test_runs_on_a_label_or_a_list(write_plan: WritePlan, runs_on: Any, expected: tuple[str, ...]) -> None:
    fields = {} if runs_on is None else {"runs_on": runs_on}
    loaded = load_plan(write_plan(step("a", **fields)))
    assert loaded.step("a").runs_on == expected
    assert loaded.plan.steps[0].runs_on == runs_on  # the model keeps what the plan says


def test_provided_files_beside_plain_names(write_plan: WritePlan) -> None:
    provides = ["log", {"name": "app", "path": "./${OUT}//app-${V}.tgz"}, {"name": "sbom", "path": "sbom.json"}]
    path = write_plan(step("build", provides=provides), variables={"OUT": "dist"})
    built = load_plan(path, {"V": "1.2"}).step("build")
    assert built.provides == ("log", "app", "sbom")
    assert built.provided_files == (ProvidedPath("app", "dist/app-1.2.tgz"), ProvidedPath("sbom", "sbom.json"))
    # Plan.from_file substitutes as it does in command and args; lists stay lists
    model = Plan.from_file(path, {"V": "1.2"}).steps[0]
    assert model.provides == [
        "log",
        ProvidedFile(name="app", path="dist/app-1.2.tgz"),
        ProvidedFile(name="sbom", path="sbom.json"),
    ]
    assert isinstance(model.provides, list)
    # checking a plan without values keeps the variable in the path
    unresolved = load_plan(path, require_values=False).step("build")
    assert unresolved.provided_files[0] == ProvidedPath("app", "dist/app-${V}.tgz")


def test_provided_path_is_a_frozen_value() -> None:
    with pytest.raises(AttributeError):
        ProvidedPath("app", "a").path = "b"  # type: ignore[misc]
    assert ProvidedPath("app", "a") == ProvidedPath("app", "a")


def test_plan_from_file_substitutes_variables(write_plan: WritePlan) -> None:
    path = write_plan(step("a", "${V}", args=["-${V}"], cwd="${V}", env={"E": "${V}"}), globals={"env": {"G": "${V}"}})
    loaded = Plan.from_file(path, {"V": "x"})
    assert isinstance(loaded, Plan)
    a = loaded.steps[0]
    assert (a.command, a.args, a.cwd, a.env, loaded.globals.env) == (
        "x",
        ["-x"],
        "x",
        {"E": "x"},
        {"G": "x"},
    )
    assert Plan.from_file(COMPAT / "test_simple.json").plan_id == "PLAN-TEST-SIMPLE-001"
    with pytest.raises(PlanError, match="undefined variable 'BRANCH'"):
        Plan.from_file(COMPAT / "safe_merge.json")


def test_loaded_plan_records_path_and_hash(write_plan: WritePlan, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_plan(step("a"))
    monkeypatch.chdir(path.parent)
    loaded = load_plan(path)
    assert loaded.path == path.absolute()
    assert loaded.display_path == "plan.json"  # relative to the invocation directory
    assert loaded.plan_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_plan("plan.json").display_path == "plan.json"
    assert load_plan(path, display_path="plans/x.json").display_path == "plans/x.json"


def test_step_defaults(write_plan: WritePlan) -> None:
    loaded = load_plan(write_plan(step("a")))
    a = loaded.step("a")
    assert (a.name, a.args, a.cwd, a.shell, a.env) == ("a", (), ".", False, {})
    assert (a.timeout_sec, a.retries, a.retry_delay_sec) == (1800, 0, 0)
    assert (a.critical, a.on_failure, a.condition, a.weight) == (True, "abort", None, None)
    assert a.depends_on == a.tags == a.locks == a.provides == a.consumes == ()
    assert loaded.plan.globals == Globals(max_concurrency=1, default_timeout_sec=1800, default_retries=0, env={})


def test_lookup_of_an_unknown_step_raises_key_error(write_plan: WritePlan) -> None:
    with pytest.raises(KeyError):
        load_plan(write_plan(step("a"))).step("b")


@pytest.mark.parametrize(
    ("retries", "default", "expected"),
    [(0, 3, 0), (None, 3, 3), (2, 3, 2), (None, 0, 0)],
    ids=["explicit-0-beats-default", "null-takes-default", "explicit", "both-default"],
)
def test_effective_retries(retries: int | None, default: int, expected: int) -> None:
    globals_ = Globals(default_retries=default)
    assert Step(id="a", command="x", retries=retries).effective_retries(globals_) == expected


def test_explicit_zero_retries_survives_loading(write_plan: WritePlan) -> None:
    path = write_plan(step("a", retries=0), step("b"), globals={"default_retries": 3})
    loaded = load_plan(path)
    assert (loaded.step("a").retries, loaded.step("b").retries) == (0, 3)


def test_effective_timeout() -> None:
    globals_ = Globals(default_timeout_sec=60)
    assert Step(id="a", command="x").effective_timeout(globals_) == 60
    assert Step(id="a", command="x", timeout_sec=5).effective_timeout(globals_) == 5


def test_no_output_timeout_is_off_unless_set() -> None:
    assert Step(id="a", command="x").effective_no_output_timeout(Globals()) is None
    plan_default = Globals(default_no_output_timeout_sec=120)
    assert Step(id="a", command="x").effective_no_output_timeout(plan_default) == 120
    assert Step(id="a", command="x", no_output_timeout_sec=5).effective_no_output_timeout(plan_default) == 5


def test_step_env_overlays_globals_env(write_plan: WritePlan) -> None:
    path = write_plan(step("a", env={"B": "step", "C": "c"}), globals={"env": {"A": "g", "B": "global"}})
    assert load_plan(path).step("a").env == {"A": "g", "B": "step", "C": "c"}


def test_models_are_frozen() -> None:
    a = Step(id="a", command="x")
    with pytest.raises(ValidationError):
        a.__setattr__("command", "y")  # spelled out: mypy cannot see pydantic's frozen config


def test_int_is_accepted_for_a_float_field() -> None:
    assert Step.model_validate({"id": "a", "command": "x", "timeout_sec": 5}).timeout_sec == 5.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_sec", "5"),
        ("retries", "1"),
        ("retries", True),
        ("retries", 1.5),
        ("shell", "yes"),
        ("critical", 1),
        ("args", "one two"),
        ("depends_on", "a"),
        ("timeout_sec", 0),
        ("retries", -1),
        ("retry_delay_sec", -0.5),
        ("on_failure", "explode"),
        ("id", "a::b"),
        ("id", "has space"),
        ("id", ""),
        ("command", ""),
    ],
)
def test_step_rejects(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Step.model_validate({"id": "a", "command": "x", field: value})


@pytest.mark.parametrize("step_id", ["build", "phase:1", "a.b-c_d", "A1"])
def test_step_accepts_id(step_id: str) -> None:
    assert Step(id=step_id, command="x").id == step_id


def test_plan_needs_at_least_one_step() -> None:
    with pytest.raises(ValidationError):
        Plan.model_validate({"plan_id": "P", "version": "1", "globals": {}, "steps": []})


def test_json_schema_describes_the_format() -> None:
    schema = plan_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"plan_id", "version", "globals", "steps"}
    step_schema = schema["$defs"]["Step"]
    assert {"id", "command", "args", "depends_on", "timeout_sec", "retries", "on_failure", "locks"} <= set(
        step_schema["properties"]
    )
    assert step_schema["additionalProperties"] is False
    assert step_schema["properties"]["on_failure"]["enum"] == ["abort", "skip_dependents", "continue"]
    assert "variables" in schema["properties"]
    json.dumps(schema)  # serialisable as it is


def test_loaded_plan_is_a_value(write_plan: WritePlan) -> None:
    path = write_plan(step("a"))
    assert isinstance(load_plan(path), LoadedPlan)
    assert load_plan(path).steps == load_plan(path).steps


def test_plan_package_imports_no_runtime_machinery() -> None:
    # A fresh interpreter, since this one has pytest and subprocess loaded; the parent package is
    # stubbed so that only what `plan` itself imports is measured, not the public API's imports.
    code = f"""
import sys, types
parent = types.ModuleType("pytest_planrun")
parent.__path__ = [{str(REPO / "pytest_planrun")!r}]
sys.modules["pytest_planrun"] = parent
import pydantic, lark, uuid  # not ours: pydantic uses uuid, which loads subprocess on 3.10
before = set(sys.modules)
import pytest_planrun.plan
print(sorted(m for m in ("pytest", "_pytest", "subprocess", "sqlite3", "xdist") if m in set(sys.modules) - before))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
