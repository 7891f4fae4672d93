"""Helpers for the ``planrun`` command's tests: its result, and ledgers with real runs to read."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planhelpers import plan_doc

FLAKY = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 2 ]'


@dataclass(frozen=True)
class Result:
    """What one ``planrun`` command gave: its exit code and output."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


Planrun = Callable[..., Result]


def write_plan(path: Path, steps: list[dict[str, Any]], **fields: Any) -> Path:
    path.write_text(json.dumps(plan_doc(steps, **fields), indent=2))
    return path


@dataclass(frozen=True)
class Ledger:
    """A ledger with three real runs, oldest first: PLAN-GOOD succeeded, PLAN-BAD failed, PLAN-GOOD
    succeeded again."""

    path: Path
    good: str
    bad: str
    again: str


def record(root: Path, plan: Path, db: Path, run_id: str, exit_code: int) -> str:
    """Run ``plan`` with pytest in ``root``, recorded in ``db`` as ``run_id``."""
    command = [sys.executable, "-m", "pytest", "--plan", plan.name, f"--planrun-ledger={db}"]
    command += ["--planrun-run-id", run_id]
    done = subprocess.run([*command, "-p", "no:cacheprovider"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == exit_code, done.stdout + done.stderr
    return run_id
