"""The Python API: run a plan through pytest and read runs back from the ledger.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .ledger import queries
from .ledger.directory import DEFAULT_LEDGER
from .plan import Plan


class Orchestrator:
    """``Orchestrator(db_path=...)``: execute plans and query the ledger, as the seed's tools did."""

    def __init__(self, db_path: str | Path = DEFAULT_LEDGER) -> None:
        self.db_path = Path(db_path)

    def execute_plan(
        self, path: str | Path, variables: Mapping[str, str] | None = None, workers: int | None = None
    ) -> str:
        """Run the plan with pytest in a subprocess, wait for it, and return its run id.

        The plan is validated here first, so a bad plan raises as ``Plan.from_file`` does and nothing
        runs. The run is started from the current directory (a step's relative ``cwd`` is taken from
        it) and ignores any pytest configuration and ``conftest.py`` found there: the caller is not
        running tests.
        """
        Plan.from_file(path, variables)
        run_id = uuid.uuid4().hex[:12]
        command = [sys.executable, "-m", "pytest", f"--plan={path}", "--planrun-ledger", str(self.db_path)]
        command += ["--planrun-run-id", run_id, "-p", "no:cacheprovider", "-q"]
        command += ["-c", os.devnull, "--noconftest"]
        for name, value in (variables or {}).items():
            command += ["--var", f"{name}={value}"]
        if workers is not None:
            command += ["-n", str(workers)]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        try:
            queries.get_run_status(self.db_path, run_id)
        except (LookupError, FileNotFoundError):
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise RuntimeError(f"pytest exited {done.returncode} without recording run {run_id}:\n{tail}") from None
        return run_id

    def get_run_status(self, run_id: str) -> dict[str, Any]:
        return queries.get_run_status(self.db_path, run_id)

    def get_run_steps(self, run_id: str) -> list[dict[str, Any]]:
        return queries.get_run_steps(self.db_path, run_id)

    def get_run_events(self, run_id: str) -> list[dict[str, Any]]:
        return queries.get_run_events(self.db_path, run_id)

    def list_runs(self, state: str | None = None, plan_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        return queries.list_runs(self.db_path, state=state, plan_id=plan_id, limit=limit)
