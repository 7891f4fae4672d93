"""The Python API that callers of the orchestrator planrun replaces rely on, checked as its documents
word it: ``Plan.from_file``, its error contract, list fields, and ``Orchestrator`` with ``get_*``."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pytest_planrun import Orchestrator, Plan, PlanError
from pytest_planrun.plan import load_plan

# The keys of the earlier orchestrator's tables (SPEC §5); planrun may add more, never fewer.
RUN_KEYS = {
    "run_id",
    "project_id",
    "phase_id",
    "workstream_id",
    "execution_request_id",
    "created_at",
    "started_at",
    "ended_at",
    "state",
    "exit_code",
    "error_message",
    "metadata",
}
STEP_KEYS = {
    "step_attempt_id",
    "run_id",
    "sequence",
    "tool_id",
    "tool_run_id",
    "execution_request_id",
    "prompt_id",
    "started_at",
    "ended_at",
    "state",
    "exit_code",
    "input_prompt",
    "output_patch_id",
    "error_log",
    "metadata",
    "step_id",
    "attempt",
}
EVENT_KEYS = {"event_id", "run_id", "timestamp", "event_type", "data"}


def write(path: Path, steps: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(json.dumps({"plan_id": "P", "version": "1", "globals": {}, "steps": steps, **top}, indent=2))
    return path


def is_utc(timestamp: str) -> bool:
    return datetime.fromisoformat(timestamp).utcoffset() == timedelta(0)


# --- Plan.from_file ---------------------------------------------------------------------------------


def test_list_fields_compare_equal_to_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path / "plan.json",
        [
            {"id": "a", "command": "true", "provides": ["wheel"], "tags": ["build"], "locks": ["disk"]},
            {
                "id": "b",
                "command": "sh",
                "args": ["-c", "echo ${WHO}"],
                "depends_on": ["a"],
                "consumes": ["wheel"],
            },
        ],
        variables={"WHO": "world"},
    )
    plan = Plan.from_file(path, variables={"WHO": "you"})
    a, b = plan.steps
    assert b.args == ["-c", "echo you"]
    assert b.depends_on == ["a"] and b.consumes == ["wheel"]
    assert a.tags == ["build"] and a.provides == ["wheel"] and a.locks == ["disk"]
    assert a.args == [] and a.depends_on == []
    assert plan.steps == [a, b]
    assert Plan.from_file(path).steps[1].args == ["-c", "echo world"]  # the declared default
    with pytest.raises(ValidationError):
        b.args = ["-c", "true"]  # the model stays frozen


def test_a_missing_file_is_file_not_found_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError) as info:
        Plan.from_file(path)
    assert str(path) in str(info.value)
    assert info.value.filename == str(path)
    assert not isinstance(info.value, ValueError)  # "every other problem" is a ValueError, not this one


def test_invalid_json_is_a_json_decode_error_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{\n  "plan_id": "P",\n  "version": "1"\n  "steps": []\n}\n')
    with pytest.raises(json.JSONDecodeError) as info:
        Plan.from_file(path)
    assert (info.value.lineno, info.value.colno) == (4, 3)
    assert "line 4" in str(info.value)
    assert isinstance(info.value, PlanError)  # the loader's callers still get every problem
    assert [str(p) for p in info.value.problems] == [
        f"{path}: invalid JSON at line 4, column 3: Expecting ',' delimiter"
    ]


def test_the_plan_errors_survive_pickling(tmp_path: Path) -> None:
    """They cross process boundaries (xdist, multiprocessing) with their problems and attributes."""
    path = tmp_path / "plan.json"
    path.write_text('{"plan_id": }')
    with pytest.raises(PlanError) as info:
        load_plan(path)
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, PlanError) and copy.problems == info.value.problems and str(copy) == str(info.value)
    assert isinstance(copy, json.JSONDecodeError) and (copy.lineno, copy.colno) == (1, 13)
    with pytest.raises(PlanError) as missing:
        load_plan(tmp_path / "nope.json")
    copy = pickle.loads(pickle.dumps(missing.value))
    assert copy.problems == missing.value.problems and str(copy) == str(missing.value)


@pytest.mark.parametrize(
    ("steps", "drop", "first_line"),
    [
        ([{"id": "a", "command": "true"}], "version", "Missing required field: version"),
        ([{"id": "a"}], None, "Missing required field: command"),
        ([{"command": "true"}], None, "Missing required field: id"),
    ],
    ids=["plan", "step-command", "step-id"],
)
def test_a_missing_required_field(
    tmp_path: Path, steps: list[dict[str, Any]], drop: str | None, first_line: str
) -> None:
    path = write(tmp_path / "plan.json", steps)
    if drop is not None:
        data = json.loads(path.read_text())
        del data[drop]
        path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"\AMissing required field: ") as info:
        Plan.from_file(path)
    assert str(info.value).splitlines()[0] == first_line


def test_a_cycle(tmp_path: Path) -> None:
    path = write(
        tmp_path / "plan.json",
        [{"id": "a", "command": "true", "depends_on": ["b"]}, {"id": "b", "command": "true", "depends_on": ["a"]}],
    )
    with pytest.raises(ValueError) as info:
        Plan.from_file(path)
    assert str(info.value).startswith("Circular dependency detected: a → b → a")


def test_an_unknown_dependency(tmp_path: Path) -> None:
    path = write(tmp_path / "plan.json", [{"id": "x", "command": "true", "depends_on": ["y"]}])
    with pytest.raises(ValueError) as info:
        Plan.from_file(path)
    assert str(info.value).startswith("Step 'x' depends on unknown step 'y'")


def test_every_problem_is_listed_after_the_documented_first_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "plan.json",
        [
            {"id": "build", "command": "true", "timeout_sec": -1},
            {"id": "test", "command": "true", "depends_on": ["buidl"]},
            {"id": "a", "command": "true", "depends_on": ["b"]},
            {"id": "b", "command": "true", "depends_on": ["a"]},
        ],
    )
    with pytest.raises(PlanError) as info:
        Plan.from_file(path)
    assert isinstance(info.value, ValueError)
    first, *rest = str(info.value).splitlines()
    assert first == "Step 'test' depends on unknown step 'buidl'"  # the first problem with a documented wording
    assert rest == [str(problem) for problem in info.value.problems]
    assert rest == [
        f"{path}: step 'build', field 'timeout_sec': must be greater than 0, got -1",
        f"{path}: step 'test', field 'depends_on': unknown step 'buidl' (did you mean 'build'?)",
        f"{path}: steps: cycle a -> b -> a",
    ]


def test_a_problem_without_a_documented_wording_is_a_value_error_too(tmp_path: Path) -> None:
    path = write(tmp_path / "plan.json", [{"id": "a", "command": "true", "retries": "3"}])
    with pytest.raises(ValueError) as info:
        Plan.from_file(path)
    assert str(info.value) == f"{path}: step 'a', field 'retries': must be an integer, got \"3\""


# --- Orchestrator -----------------------------------------------------------------------------------


def test_execute_plan_runs_from_any_directory_without_pytest(tmp_path: Path) -> None:
    """A script in a directory of its own, under a project whose pytest configuration would break
    a pytest session started there, runs a plan and reads it back."""
    project = tmp_path / "project"
    elsewhere = project / "tools"
    (elsewhere / "sub").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (elsewhere / "conftest.py").write_text("raise RuntimeError('the caller project conftest')\n")
    write(
        elsewhere / "plan.json",
        [
            {"id": "hello", "command": "sh", "args": ["-c", "pwd > where; echo ${WHO}"], "cwd": "sub"},
            {"id": "bye", "command": "true", "depends_on": ["hello"]},
        ],
        variables={"WHO": "world"},
    )
    (elsewhere / "caller.py").write_text(
        textwrap.dedent(
            """
            import json, sys
            from pytest_planrun import Orchestrator

            orchestrator = Orchestrator()
            run_id = orchestrator.execute_plan("plan.json", {"WHO": "you"})
            json.dump({
                "run_id": run_id,
                "status": orchestrator.get_run_status(run_id),
                "steps": orchestrator.get_run_steps(run_id),
                "events": orchestrator.get_run_events(run_id),
            }, sys.stdout)
            """
        )
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "caller.py"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    run_id, status, steps, events = result["run_id"], result["status"], result["steps"], result["events"]

    assert isinstance(run_id, str) and status["run_id"] == run_id
    assert RUN_KEYS <= status.keys()
    assert status["state"] == "succeeded" and status["exit_code"] == 0
    assert isinstance(status["metadata"], dict)
    assert all(is_utc(status[key]) for key in ("created_at", "started_at", "ended_at"))
    # the plan's relative cwd is taken from the caller's working directory, as pytest's would be
    assert (elsewhere / "sub" / "where").read_text().strip() == str((elsewhere / "sub").resolve())
    assert (elsewhere / ".ledger" / "framework.db").is_file()  # the default ledger, beside the caller

    assert [step["step_id"] for step in steps] == ["hello", "bye"]
    for index, step in enumerate(steps):
        assert STEP_KEYS <= step.keys(), STEP_KEYS - step.keys()
        assert (step["run_id"], step["state"], step["exit_code"], step["sequence"]) == (run_id, "succeeded", 0, index)
        assert step["metadata"] == {"step_id": step["step_id"], "step_name": None, "attempt": 1}
        assert is_utc(step["started_at"]) and is_utc(step["ended_at"])
    assert steps[1]["tool_id"] == "true"
    assert Path(steps[0]["stdout_path"]).read_text() == "you\n"

    for event in events:
        assert EVENT_KEYS <= event.keys(), EVENT_KEYS - event.keys()
        assert event["run_id"] == run_id and isinstance(event["data"], dict) and is_utc(event["timestamp"])
    assert [event["event_type"] for event in events] == [
        "run_created",
        "run_started",
        "step_started",
        "step_succeeded",
        "step_started",
        "step_succeeded",
        "run_completed",
    ]
    assert events[0]["data"]["variables"] == {"WHO": "you"}
    assert events[3]["data"]["step_id"] == "hello"


def test_a_failed_run_and_list_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = write(
        tmp_path / "plan.json",
        [{"id": "hello", "command": "true"}, {"id": "bye", "command": "sh", "args": ["-c", "exit 1"]}],
        plan_id="PLAN-API",
    )
    monkeypatch.chdir(tmp_path)
    orchestrator = Orchestrator(db_path=tmp_path / "api.db")
    run_id = orchestrator.execute_plan(plan, variables={}, workers=0)
    status = orchestrator.get_run_status(run_id)
    assert (status["state"], status["exit_code"]) == ("failed", 1)
    assert [(s["step_id"], s["state"], s["exit_code"]) for s in orchestrator.get_run_steps(run_id)] == [
        ("hello", "succeeded", 0),
        ("bye", "failed", 1),
    ]
    assert orchestrator.get_run_events(run_id)[-1]["event_type"] == "run_completed"
    assert [r["run_id"] for r in orchestrator.list_runs(state="failed")] == [run_id]
    assert [r["run_id"] for r in orchestrator.list_runs(plan_id="PLAN-API")] == [run_id]
    assert orchestrator.list_runs(state="succeeded") == []
    assert orchestrator.list_runs(plan_id="OTHER") == []


def test_execute_plan_raises_the_plan_errors_before_running_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    orchestrator = Orchestrator(db_path=tmp_path / "api.db")
    with pytest.raises(FileNotFoundError):
        orchestrator.execute_plan(tmp_path / "nope.json")
    cycle = write(
        tmp_path / "plan.json",
        [
            {"id": "a", "command": "touch", "args": ["ran"], "depends_on": ["b"]},
            {"id": "b", "command": "true", "depends_on": ["a"]},
        ],
    )
    with pytest.raises(ValueError, match=r"\ACircular dependency detected: a → b → a"):
        orchestrator.execute_plan(cycle)
    assert not (tmp_path / "ran").exists() and not (tmp_path / "api.db").exists()
