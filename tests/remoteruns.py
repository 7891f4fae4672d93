"""Runs of plans on remote test workers (tests/remotehelpers.py) and what they leave: the controller's
command, its ledger, logs and failure report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from planhelpers import plan_doc, stop
from remotehelpers import RemoteWorker, controller_prefix, tx_args

from pytest_planrun.ledger import queries

# A step's start and end on its stdout: the workers share no disk with the test, their logs reach it.
STAMPED = 'echo "start $(date +%s.%N)"; sleep 1; echo "end $(date +%s.%N)"'
# The same for 2 s: long enough to overlap another worker's step even if that worker came up late.
STAMPED_LONG = STAMPED.replace("sleep 1", "sleep 2")


def remote_args(workers: list[RemoteWorker], *args: str) -> list[str]:
    return ["--plan=plan.json", *tx_args(workers), "--dist", "load", "-p", "no:cacheprovider", *args]


def write_remote_plan(
    pytester: pytest.Pytester, workers: list[RemoteWorker], steps: list[dict[str, Any]], **globals_: Any
) -> None:
    globals_.setdefault("max_concurrency", len(workers))
    (pytester.path / "plan.json").write_text(json.dumps(plan_doc(steps, **globals_), indent=2))


def run_remote(
    pytester: pytest.Pytester, workers: list[RemoteWorker], steps: list[dict[str, Any]], *args: str, **globals_: Any
) -> pytest.RunResult:
    """Run the plan of ``steps`` on ``workers`` (gw0, gw1, ... in order); the plan's cap is their number."""
    write_remote_plan(pytester, workers, steps, **globals_)
    return pytester.run(*pytest_command(workers, *args), timeout=240)


def pytest_command(workers: list[RemoteWorker], *args: str) -> list[str]:
    """The controller's command; isolated, in a PID namespace of its own (see tests/remotehelpers.py)."""
    return [*controller_prefix(workers), sys.executable, "-m", "pytest", *remote_args(workers, *args)]


def start_remote(
    pytester: pytest.Pytester,
    request: pytest.FixtureRequest,
    workers: list[RemoteWorker],
    steps: list[dict[str, Any]],
    *args: str,
) -> subprocess.Popen[bytes]:
    """The same run in the background, for a test that acts while it goes."""
    write_remote_plan(pytester, workers, steps)
    proc = subprocess.Popen(
        pytest_command(workers, *args),
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    request.addfinalizer(lambda: stop(proc))
    return proc


def controller_pid(proc: subprocess.Popen[bytes], workers: list[RemoteWorker]) -> int:
    """The pytest controller's pid as this test sees it: the child of ``unshare`` when it has its own PID
    namespace (see ``controller_prefix``)."""
    if not controller_prefix(workers):
        return proc.pid
    deadline = time.monotonic() + 30
    while not (children := psutil.Process(proc.pid).children()) and time.monotonic() < deadline:
        time.sleep(0.01)  # unshare forks the controller at once; the interval sets no order
    (child,) = children
    return int(child.pid)


def finish(proc: subprocess.Popen[bytes]) -> str:
    """The background run's output once it has ended; a run that hangs fails the test."""
    __tracebackhide__ = True
    try:
        return proc.communicate(timeout=180)[0].decode()
    except subprocess.TimeoutExpired:
        raise AssertionError("the run did not end within 180 s") from None


def labels(*specs: str) -> list[str]:
    return [arg for spec in specs for arg in ("--planrun-worker-label", spec)]


def the_run(pytester: pytest.Pytester) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one run in the project's ledger and its attempts."""
    db = pytester.path / ".ledger" / "framework.db"
    (run,) = queries.list_runs(db)
    return run, queries.get_run_steps(db, run["run_id"])


def by_step(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["step_id"], []).append(row)
    return found


def log_path(run_dir: Path, step_id: str, attempt: int = 1, stream: str = "stdout") -> Path:
    return run_dir / "steps" / step_id / f"attempt-{attempt}.{stream}.log"


def log(run: dict[str, Any], step_id: str, attempt: int = 1, stream: str = "stdout") -> str:
    return log_path(Path(run["run_dir"]), step_id, attempt, stream).read_text()


def span(text: str) -> tuple[float, float]:
    """The ``start``/``end`` stamps a STAMPED step printed."""
    stamps = dict(line.split() for line in text.splitlines() if line.startswith(("start ", "end ")))
    return float(stamps["start"]), float(stamps["end"])


def wait_for_text(path: Path, needle: str, timeout: float = 60.0) -> str:
    """The first line of ``path`` containing ``needle``, once the controller has written it."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if needle in line:
                    return line
        time.sleep(0.02)  # polls the controller's log; the interval sets no order
    raise AssertionError(f"{needle!r} never appeared in {path}")


def still_there(path: Path, timeout: float = 10.0) -> bool:
    """Whether ``path`` still exists after up to ``timeout`` s (a worker's cleanup may take a moment)."""
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def failure_section(output: str, step_id: str) -> str:
    """The text of pytest's failure section for ``step_id``: titled ``step <id>: <command>``, or, for a step
    whose worker was lost (xdist reports the crash), the section that says ``step '<id>' failed``."""
    __tracebackhide__ = True
    parts = re.split(r"^_+ (.+?) _+$", output, flags=re.MULTILINE)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        if title.startswith(f"step {step_id}:") or f"step '{step_id}' failed" in body:
            return body
    raise AssertionError(f"no failure section for step {step_id!r} in:\n{output}")
