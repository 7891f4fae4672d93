"""Fixtures for planrun's tests: write a plan and run pytest on it, serial or with xdist."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
from planhelpers import plan_doc


class RunPlan(Protocol):
    def __call__(self, steps: list[dict[str, Any]], *args: str, **globals_: Any) -> pytest.RunResult: ...


# Hypothesis's pytest plugin costs each interpreter that loads it about 0.6 s of CPU, the report and
# annotation plugins of the test extra about 0.2 s more; the runs under test (and each of their xdist
# workers) never use them, and they are most of the suite's time. A test that needs one asks for
# ``with_report_plugins``.
INNER_ADDOPTS = "-p no:hypothesispytest"
REPORT_PLUGINS = ("html", "metadata", "anyio", "github-actions-annotate-failures")
INNER_ADDOPTS_LEAN = " ".join([INNER_ADDOPTS, *(f"-p no:{name}" for name in REPORT_PLUGINS)])


@pytest.fixture(autouse=True)
def run_environment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What every pytest run a test starts inherits: its own lock folder (lock names repeat across
    tests and the default folder is per user, so tests running at once under xdist, or another
    checkout's suite, would wait on each other's locks) and the options above."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts: set ours after
    monkeypatch.setenv("PLANRUN_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    lean = "with_report_plugins" not in request.keywords
    monkeypatch.setenv("PYTEST_ADDOPTS", INNER_ADDOPTS_LEAN if lean else INNER_ADDOPTS)


@pytest.fixture
def write_plan(pytester: pytest.Pytester) -> Callable[..., Path]:
    def write(steps: list[dict[str, Any]], name: str = "plan.json", **globals_: Any) -> Path:
        path = pytester.path / name
        path.write_text(json.dumps(plan_doc(steps, **globals_), indent=2))
        return path

    return write


@pytest.fixture
def run_plan(pytester: pytest.Pytester, write_plan: Callable[..., Path]) -> RunPlan:
    def run(steps: list[dict[str, Any]], *args: str, **globals_: Any) -> pytest.RunResult:
        if "-n" in args and "max_concurrency" not in globals_:
            # the plan's cap applies under -n too: let the workers asked for actually run in parallel
            globals_["max_concurrency"] = max(1, int(args[args.index("-n") + 1]))
        path = write_plan(steps, **globals_)
        return pytester.runpytest_subprocess("--plan", path.name, "-p", "no:cacheprovider", *args)

    return run


@pytest.fixture(params=[[], ["-n", "2"]], ids=["serial", "xdist"])
def mode(request: pytest.FixtureRequest) -> list[str]:
    return list(request.param)
