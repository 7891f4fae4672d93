"""Helpers for planrun's tests: build plans, read what their steps recorded."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from pytest_planrun.ledger import queries

PY = sys.executable
DATA = Path(__file__).parent / "data"
COMPAT = DATA / "compat"  # plans of the earlier orchestrator, copied unchanged (test_data_copies.py)


def step(step_id: str, *command: str, **fields: Any) -> dict[str, Any]:
    """A plan step: ``step("a", "true")``, ``step("b", "sh", "-c", "exit 2", depends_on=["a"])``."""
    cmd, *args = command
    return {"id": step_id, "command": cmd, "args": list(args), **fields}


def sh(step_id: str, script: str, **fields: Any) -> dict[str, Any]:
    """A step running a POSIX shell snippet."""
    return step(step_id, "sh", "-c", script, **fields)


def stamped(step_id: str, script: str = "true", **fields: Any) -> dict[str, Any]:
    """A step that records its start and end times (``stamps/<id>``: two wall-clock floats)."""
    body = f'mkdir -p stamps; s=$(date +%s.%N); {script}; rc=$?; echo "$s $(date +%s.%N)" > stamps/{step_id}; exit $rc'
    return sh(step_id, body, **fields)


def plan_doc(steps: list[dict[str, Any]], **globals_: Any) -> dict[str, Any]:
    extra = globals_.pop("plan_fields", {})
    return {
        "plan_id": "PLAN-TEST",
        "version": "1.0",
        "globals": {"max_concurrency": 1, "default_timeout_sec": 60, **globals_},
        "steps": steps,
        **extra,
    }


def stamps(root: Path) -> dict[str, tuple[float, float]]:
    """Start and end time of every stamped step that ran."""
    result = {}
    for path in (root / "stamps").glob("*"):
        start, end = path.read_text().split()
        result[path.name] = (float(start), float(end))
    return result


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def write_pid(name: str, pid: str = "$$") -> str:
    """Shell that records a pid in ``name`` atomically: a reader never sees the file empty."""
    return f"echo {pid} > {name}.tmp && mv {name}.tmp {name}"


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def processes_of_run(run_id: str) -> list[psutil.Process]:
    """Live processes whose environment marks them as started by the run ``run_id`` (its steps and
    anything they left behind): a test checks and kills only what its own run started."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PLANRUN_RUN_ID") == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_run_processes(run_id: str) -> list[int]:
    """SIGKILL every process of the run ``run_id``; their pids."""
    found = processes_of_run(run_id)
    for proc in found:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(found, timeout=10)
    return [p.pid for p in found]


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``check`` (a file or ledger written by another process) until it holds, or fail."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def wait_for(path: Path, timeout: float = 60.0) -> str:
    """The content of ``path`` once a step has written it (atomically, see ``write_pid``)."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)  # polls for the file that says "ready"; the interval sets no order
    return path.read_text().strip()


def survivors(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Those of ``pids`` still alive after up to ``timeout`` s (a zombie counts as gone: killed, not yet
    reaped by a parent that is not ours)."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill a pytest run the test started, if it is still going (a finalizer: the test failed early)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def ledger_of(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The attempts and the events of the one run recorded in ``root``'s default ledger, in order."""
    db = root / ".ledger" / "framework.db"
    (run,) = queries.list_runs(db)
    return queries.get_run_steps(db, run["run_id"]), queries.get_run_events(db, run["run_id"])


def event_order(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """``(event_type, step_id)`` in the order the controller recorded them (its decisions' order)."""
    return [(e["event_type"], e["data"].get("step_id")) for e in events]
