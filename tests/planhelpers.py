"""Helpers for planrun's tests: build plans, read what their steps recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PY = sys.executable


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
