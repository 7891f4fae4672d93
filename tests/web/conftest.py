"""Fixtures for the web view: ledgers made by real runs of plans, a real server."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from planhelpers import sh
from webhelpers import HOSTILE_NAME, HOSTILE_OUTPUT, LiveRun, Server, planrun_command, write_plan

from pytest_planrun.ledger import queries
from pytest_planrun.web import create_app

FINISHED_STEPS = [
    sh("build", "echo built; echo '" + HOSTILE_OUTPUT + "'", name=HOSTILE_NAME),
    sh("lint", "true"),
    sh("flaky", "if [ -f once ]; then echo fine; else touch once; echo boom >&2; exit 3; fi", retries=1),
    sh("test", "echo tests failed; exit 1", depends_on=["build", "flaky"], on_failure="skip_dependents"),
    sh("package", "true", depends_on=["test", "lint"]),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The ledger and run id of a finished run: a retried step, a failed one, a skipped dependent."""
    root = tmp_path_factory.mktemp("finished")
    write_plan(root, FINISHED_STEPS)
    result = subprocess.run(planrun_command(), cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    ledger = root / ".ledger" / "framework.db"
    return ledger, str(queries.list_runs(ledger)[0]["run_id"])


@pytest.fixture
def start_run(tmp_path: Path) -> Iterator[Callable[..., LiveRun]]:
    started: list[LiveRun] = []

    def start(steps: list[dict[str, Any]], *args: str) -> LiveRun:
        run = LiveRun(tmp_path, steps, *args)
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[Path], Server]]:
    servers: list[Server] = []

    def start(ledger: Path) -> Server:
        server = Server(create_app(ledger, interval=0.1))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
