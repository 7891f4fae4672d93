"""A ledger made by the earlier orchestrator opens, migrates and reads; every time stored is UTC."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from planhelpers import sh, step

from pytest_planrun import Orchestrator
from pytest_planrun.cli import main as planrun
from pytest_planrun.ledger import queries
from pytest_planrun.ledger.schema import SCHEMA_VERSION, connect

# SPEC §5: the earlier orchestrator's tables, exactly, without the columns planrun adds.
EARLIER_DDL = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, project_id TEXT, phase_id TEXT, workstream_id TEXT, execution_request_id TEXT,
    created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending','running','succeeded','failed','quarantined','canceled')),
    exit_code INTEGER, error_message TEXT, metadata TEXT
);
CREATE TABLE step_attempts (
    step_attempt_id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), sequence INTEGER,
    tool_id TEXT, tool_run_id TEXT, execution_request_id TEXT, prompt_id TEXT, started_at TEXT, ended_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('running','succeeded','failed','canceled')),
    exit_code INTEGER, input_prompt TEXT, output_patch_id TEXT, error_log TEXT, metadata TEXT
);
CREATE TABLE run_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp TEXT NOT NULL,
    event_type TEXT NOT NULL, data TEXT
);
"""
EARLIER_COLUMNS = {
    "runs": [
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
    ],
    "step_attempts": [
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
    ],
    "run_events": ["event_id", "run_id", "timestamp", "event_type", "data"],
}
TIME_COLUMNS = {
    "runs": ["created_at", "started_at", "ended_at"],
    "step_attempts": ["started_at", "ended_at"],
    "run_events": ["timestamp"],
}
# A zone of its own (POSIX TZ syntax, no tz database needed): local time is 5:30 ahead of UTC.
NOT_UTC = "PLN-5:30"


def attempt(run_id: str, sequence: int, step_id: str, state: str, exit_code: int, at: str) -> tuple[Any, ...]:
    metadata = json.dumps({"step_id": step_id, "step_name": step_id.title(), "attempt": 1})
    return (f"{run_id}-{sequence}", run_id, sequence, f"tool-{step_id}", at, at, state, exit_code, metadata)


def earlier_ledger(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Two runs as the earlier orchestrator wrote them; returns every row, as stored."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(EARLIER_DDL)
        runs = [
            ("r-old-ok", "proj", "2025-05-01T08:00:00+00:00", "succeeded", 0, {"plan_id": "PLAN-OLD"}),
            ("r-old-bad", "proj", "2025-05-02T08:00:00+00:00", "failed", 1, {"plan_id": "PLAN-OTHER"}),
        ]
        for run_id, project, at, state, code, metadata in runs:
            conn.execute(
                "INSERT INTO runs (run_id, project_id, created_at, started_at, ended_at, state, exit_code, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, project, at, at, at, state, code, json.dumps(metadata)),
            )
        attempts = [
            attempt("r-old-ok", 0, "build", "succeeded", 0, "2025-05-01T08:00:01+00:00"),
            # a row whose metadata its writer did not fill in (or not as JSON)
            ("r-old-ok-1", "r-old-ok", 1, "tool-x", None, None, "canceled", None, "not JSON"),
            attempt("r-old-bad", 0, "build", "succeeded", 0, "2025-05-02T08:00:01+00:00"),
            attempt("r-old-bad", 1, "test", "failed", 3, "2025-05-02T08:00:02+00:00"),
        ]
        conn.executemany(
            "INSERT INTO step_attempts (step_attempt_id, run_id, sequence, tool_id, started_at, ended_at, state,"
            " exit_code, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempts,
        )
        conn.executemany(
            "INSERT INTO run_events (run_id, timestamp, event_type, data) VALUES (?, ?, ?, ?)",
            [
                ("r-old-bad", "2025-05-02T08:00:00+00:00", "run_created", json.dumps({"steps": 2})),
                ("r-old-bad", "2025-05-02T08:00:02+00:00", "step_failed", json.dumps({"step_id": "test"})),
                ("r-old-bad", "2025-05-02T08:00:03+00:00", "run_completed", json.dumps({"state": "failed"})),
            ],
        )
        conn.commit()
        return {table: dump(conn, table) for table in EARLIER_COLUMNS}
    finally:
        conn.close()


def dump(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(EARLIER_COLUMNS[table])
    return conn.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


def is_utc(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() == timedelta(0)


def stored_times(db: Path) -> list[tuple[str, str, str | None]]:
    """Every time stored in the ledger: (table, column, value)."""
    conn = sqlite3.connect(db)
    try:
        return [
            (table, column, value)
            for table, columns in TIME_COLUMNS.items()
            for column in columns
            for (value,) in conn.execute(f"SELECT {column} FROM {table}")
        ]
    finally:
        conn.close()


def test_an_earlier_ledger_migrates_and_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "framework.db"
    before = earlier_ledger(db)

    assert planrun(["runs", "--ledger", str(db)]) == 0
    body = capsys.readouterr().out.splitlines()[1:]  # below the header: one line per run, newest first
    assert [line.split()[0] for line in body] == ["r-old-bad", "r-old-ok"]
    assert {"failed", "1", "PLAN-OTHER"} <= set(body[0].split()) and {"succeeded", "0"} <= set(body[1].split())

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {table: dump(conn, table) for table in EARLIER_COLUMNS} == before  # nothing rewritten
        columns = {row[1] for row in conn.execute("PRAGMA table_info(step_attempts)")}
        assert {"step_id", "attempt", "outcome", "reason"} <= columns - set(EARLIER_COLUMNS["step_attempts"])
    finally:
        conn.close()

    # the earlier writer's meanings fill the new columns: metadata's step_id and attempt, the plan id
    assert planrun(["runs", "--ledger", str(db), "--plan-id", "PLAN-OLD"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["r-old-ok"]
    assert planrun(["runs", "--ledger", str(db), "--state", "failed"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["r-old-bad"]

    assert planrun(["show", "r-old-bad", "--ledger", str(db), "--events"]) == 0
    shown = capsys.readouterr().out
    assert "run r-old-bad: failed (exit code 1)" in shown
    test_line = next(line for line in shown.splitlines() if line.split()[:1] == ["test"])
    assert test_line.split()[:4] == ["test", "#1", "failed", "failed"] and "exit 3" in test_line
    assert "2025-05-02T08:00:03+00:00 run_completed" in shown

    assert planrun(["show", "r-old-ok", "--ledger", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[2:]] == [["build", "#1", "succeeded"], ["?", "#?", "canceled"]]

    api = Orchestrator(db_path=db)
    assert api.get_run_status("r-old-bad")["metadata"] == {"plan_id": "PLAN-OTHER"}
    steps = api.get_run_steps("r-old-bad")
    assert [(s["step_id"], s["attempt"], s["tool_id"], s["exit_code"]) for s in steps] == [
        ("build", 1, "tool-build", 0),
        ("test", 1, "tool-test", 3),
    ]
    assert steps[1]["metadata"] == {"step_id": "test", "step_name": "Test", "attempt": 1}
    events = api.get_run_events("r-old-bad")
    assert [(e["event_type"], e["data"]) for e in events][1] == ("step_failed", {"step_id": "test"})
    assert [r["run_id"] for r in api.list_runs(plan_id="PLAN-OTHER")] == ["r-old-bad"]


def test_planrun_records_new_runs_in_an_earlier_ledger(
    pytester: pytest.Pytester, write_plan: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = pytester.path / "framework.db"
    before = earlier_ledger(db)
    write_plan([step("a", "true"), sh("b", "exit 1", depends_on=["a"], critical=False)])
    monkeypatch.setenv("TZ", NOT_UTC)
    result = pytester.runpytest_subprocess("--plan", "plan.json", "--planrun-ledger", str(db), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, xfailed=1)
    runs = queries.list_runs(db)
    assert [r["run_id"] for r in runs][1:] == ["r-old-bad", "r-old-ok"]
    assert runs[0]["state"] == "succeeded" and runs[0]["plan_id"] == "PLAN-TEST"
    assert [entry for entry in stored_times(db) if entry[2] is not None and not is_utc(entry[2])] == []
    conn = sqlite3.connect(db)
    try:
        assert [row for row in dump(conn, "runs") if row[0].startswith("r-old")] == before["runs"]
    finally:
        conn.close()


def test_a_run_marked_canceled_on_reading_records_utc_times(tmp_path: Path) -> None:
    """A reader that finds a run whose controller is gone writes its end time: in UTC, whatever the
    reader's local zone."""
    db = tmp_path / "framework.db"
    earlier_ledger(db)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    # the ledger of a planrun run whose controller died, with one attempt still running
    conn = connect(db, create=True)
    try:
        started = "2025-05-03T08:00:00+00:00"
        conn.execute(
            "INSERT INTO runs (run_id, created_at, started_at, state, hostname, controller_pid)"
            " VALUES ('r-dead', ?, ?, 'running', ?, ?)",
            (started, started, socket.gethostname(), gone.pid),
        )
        conn.execute(
            "INSERT INTO step_attempts (step_attempt_id, run_id, sequence, started_at, state, step_id, attempt)"
            " VALUES ('r-dead:a:1', 'r-dead', 0, ?, 'running', 'a', 1)",
            (started,),
        )
    finally:
        conn.close()
    env = {**os.environ, "TZ": NOT_UTC}
    listed = subprocess.run(
        [sys.executable, "-m", "pytest_planrun.cli", "runs", "--ledger", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "r-dead" in listed.stdout
    run = queries.get_run_status(db, "r-dead")
    assert run["state"] == "canceled" and run["error_message"] == f"controller process {gone.pid} is gone"
    (row,) = queries.get_run_steps(db, "r-dead")
    (event,) = queries.get_run_events(db, "r-dead")
    assert (row["state"], event["event_type"]) == ("canceled", "run_canceled")
    assert is_utc(run["ended_at"]) and is_utc(row["ended_at"]) and is_utc(event["timestamp"])
    assert [entry for entry in stored_times(db) if entry[2] is not None and not is_utc(entry[2])] == []
