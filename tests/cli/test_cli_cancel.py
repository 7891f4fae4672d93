"""``planrun cancel RUN [STEP]``: what it sends to a live run, and each case where it cannot.

A live run is stood in for by a ledger row naming a process this test started as its controller;
``tests/e2e/test_cancel.py`` cancels real runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.helpers import Planrun

from pytest_planrun.ledger.events import iso
from pytest_planrun.ledger.schema import connect


def add_run(db: Path, run_id: str, state: str, pid: int | None, run_dir: Path, host: str | None = None) -> None:
    conn = connect(db, create=True)
    try:
        now = iso(time.time())
        conn.execute(
            "INSERT INTO runs (run_id, created_at, started_at, state, controller_pid, hostname, run_dir)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, now, now, state, pid, host or socket.gethostname(), str(run_dir)),
        )
        conn.execute(
            "INSERT INTO run_events (run_id, timestamp, event_type, data) VALUES (?, ?, 'run_created', ?)",
            (run_id, now, json.dumps({"step_ids": ["a", "b"]})),
        )
    finally:
        conn.close()


@pytest.fixture
def controller() -> Iterator[subprocess.Popen[bytes]]:
    """A process that runs until it is signalled or its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "framework.db"


def test_a_whole_run_gets_sigterm_at_its_controller(
    planrun: Planrun, db: Path, tmp_path: Path, controller: subprocess.Popen[bytes]
) -> None:
    add_run(db, "live", "running", controller.pid, tmp_path / "runs" / "live")
    result = planrun("cancel", "live", "--ledger", str(db))
    assert (result.code, result.err) == (0, "")
    assert result.out == f"cancelling run live (SIGTERM to controller {controller.pid})\n"
    assert controller.wait(timeout=60) == -signal.SIGTERM


def test_one_step_is_asked_for_through_the_runs_control_channel(
    planrun: Planrun, db: Path, tmp_path: Path, controller: subprocess.Popen[bytes]
) -> None:
    run_dir = tmp_path / "runs" / "live"
    run_dir.mkdir(parents=True)
    os.mkfifo(run_dir / "control")
    reader = os.open(run_dir / "control", os.O_RDONLY | os.O_NONBLOCK)  # the controller's end
    try:
        add_run(db, "live", "running", controller.pid, run_dir)
        unknown = planrun("cancel", "live", "nope", "--ledger", str(db))
        assert (unknown.code, unknown.out) == (2, "")
        assert unknown.err == "planrun: run live has no step 'nope'\n"
        result = planrun("cancel", "live", "b", "--ledger", str(db))
        assert (result.code, result.err, result.out) == (0, "", "cancelling step 'b' of run live\n")
        assert os.read(reader, 4096) == b"cancel b\n"  # and nothing for the unknown step
    finally:
        os.close(reader)
    assert controller.poll() is None  # the run goes on


def test_a_run_whose_channel_is_closed_is_exit_1(
    planrun: Planrun, db: Path, tmp_path: Path, controller: subprocess.Popen[bytes]
) -> None:
    add_run(db, "live", "running", controller.pid, tmp_path / "runs" / "live")
    result = planrun("cancel", "live", "a", "--ledger", str(db))
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith("planrun: run live: no controller listens on ")


@pytest.mark.parametrize("state", ["succeeded", "failed", "canceled"])
def test_an_ended_run_is_exit_1(planrun: Planrun, db: Path, tmp_path: Path, state: str) -> None:
    add_run(db, "done", state, None, tmp_path)
    result = planrun("cancel", "done", "--ledger", str(db))
    assert (result.code, result.out, result.err) == (1, "", f"planrun: run done is {state}; nothing to cancel\n")


def test_a_run_on_another_machine_is_exit_1(
    planrun: Planrun, db: Path, tmp_path: Path, controller: subprocess.Popen[bytes]
) -> None:
    add_run(db, "far", "running", controller.pid, tmp_path, host="elsewhere.invalid")
    result = planrun("cancel", "far", "--ledger", str(db))
    assert (result.code, result.out) == (1, "")
    assert result.err == "planrun: run far runs on elsewhere.invalid; cancel it there\n"
    assert controller.poll() is None  # a process that happens to have that pid here is left alone


def test_a_run_whose_controller_is_gone_is_exit_1(planrun: Planrun, db: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    add_run(db, "orphan", "running", gone.pid, tmp_path)
    result = planrun("cancel", "orphan", "--ledger", str(db))
    assert (result.code, result.out) == (1, "")
    assert result.err == "planrun: run orphan is canceled; nothing to cancel\n"  # reading the ledger marked it


def test_an_unknown_run_a_missing_ledger_and_bad_arguments(planrun: Planrun, db: Path, tmp_path: Path) -> None:
    add_run(db, "done", "succeeded", None, tmp_path)
    unknown = planrun("cancel", "nope", "--ledger", str(db))
    assert (unknown.code, unknown.out, unknown.err) == (2, "", f"planrun: no run 'nope' in {db}\n")
    missing = tmp_path / "missing.db"
    no_ledger = planrun("cancel", "done", "--ledger", str(missing))
    assert (no_ledger.code, no_ledger.out) == (2, "")
    assert no_ledger.err.startswith(f"planrun: no ledger at {missing}") and not missing.exists()
    for argv in ([], ["done", "a", "b"]):
        bad = planrun("cancel", *argv, "--ledger", str(db))
        assert bad.code == 2 and "usage: planrun" in bad.err, argv
