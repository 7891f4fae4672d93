"""Reading the ledger: plain dicts with the seed's keys, for the API, the CLI and the scheduler.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from .events import iso
from .schema import connect


class LedgerUnreadable(sqlite3.DatabaseError):
    """The ledger's file cannot be read (not a ledger, damaged, a newer schema): readers outside this
    layer name this, not the storage's errors (a ``sqlite3.DatabaseError`` still, for older callers)."""


@contextmanager
def _reading(db_path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = connect(Path(db_path), create=False)
    except sqlite3.Error as error:
        raise LedgerUnreadable(f"cannot read the ledger {db_path}: {error}") from error
    try:
        yield conn
    except LedgerUnreadable:
        raise
    except sqlite3.Error as error:
        raise LedgerUnreadable(f"cannot read the ledger {db_path}: {error}") from error
    finally:
        conn.close()


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    for key in ("metadata", "data", "variables"):
        if isinstance(data.get(key), str):
            try:
                data[key] = json.loads(data[key])
            except ValueError:
                pass
    return data


def controller_alive(pid: int | None, started_at: str | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except psutil.Error:
        return False
    if started_at is None:
        return True
    # a pid reused by a process that began after the run did is not the run's controller
    return bool(created <= datetime.fromisoformat(started_at).timestamp() + 1.0)


def mark_stale_runs(db_path: Path) -> list[str]:
    """Runs left ``running`` by a controller that is gone (SIGKILL, power loss) become ``canceled``."""
    host = socket.gethostname()
    with _reading(db_path) as conn:
        candidates = conn.execute(
            "SELECT run_id, controller_pid, started_at, created_at FROM runs"
            " WHERE state IN ('pending', 'running') AND hostname = ?",
            (host,),
        ).fetchall()
        stale = [
            r["run_id"]
            for r in candidates
            if not controller_alive(r["controller_pid"], r["started_at"] or r["created_at"])
        ]
        if not stale:
            return []
        now = iso(time.time())
        conn.execute("BEGIN IMMEDIATE")
        for run_id in stale:
            pid = next(r["controller_pid"] for r in candidates if r["run_id"] == run_id)
            message = f"controller process {pid} is gone"
            conn.execute(
                "UPDATE runs SET state = 'canceled', ended_at = ?, error_message = ? WHERE run_id = ? AND state IN"
                " ('pending', 'running')",
                (now, message, run_id),
            )
            conn.execute(
                "UPDATE step_attempts SET state = 'canceled', ended_at = ?, outcome = 'canceled', reason = ?"
                " WHERE run_id = ? AND state = 'running'",
                (now, message, run_id),
            )
            conn.execute(
                "INSERT INTO run_events (run_id, timestamp, event_type, data) VALUES (?, ?, 'run_canceled', ?)",
                (run_id, now, json.dumps({"state": "canceled", "message": message})),
            )
        conn.execute("COMMIT")
        return stale


def get_run_status(db_path: Path, run_id: str) -> dict[str, Any]:
    mark_stale_runs(db_path)
    with _reading(db_path) as conn:
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise LookupError(f"no run {run_id!r} in {db_path}")
    return _row(row)


def get_run_steps(db_path: Path, run_id: str) -> list[dict[str, Any]]:
    """One dict per attempt (and one per step that never ran), in plan order."""
    get_run_status(db_path, run_id)
    with _reading(db_path) as conn:
        rows = conn.execute(
            "SELECT * FROM step_attempts WHERE run_id = ? ORDER BY sequence, attempt", (run_id,)
        ).fetchall()
    return [_row(r) for r in rows]


def get_run_events(db_path: Path, run_id: str) -> list[dict[str, Any]]:
    get_run_status(db_path, run_id)
    with _reading(db_path) as conn:
        rows = conn.execute("SELECT * FROM run_events WHERE run_id = ? ORDER BY event_id", (run_id,)).fetchall()
    return [_row(r) for r in rows]


def list_runs(
    db_path: Path, state: str | None = None, plan_id: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    mark_stale_runs(db_path)
    clauses, params = [], []
    if state is not None:
        clauses.append("state = ?")
        params.append(state)
    if plan_id is not None:
        clauses.append("plan_id = ?")
        params.append(plan_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with _reading(db_path) as conn:
        rows = conn.execute(
            f"SELECT * FROM runs {where} ORDER BY created_at DESC, rowid DESC LIMIT ?", (*params, limit)
        ).fetchall()
    return [_row(r) for r in rows]


def last_run(db_path: Path, plan_id: str) -> dict[str, Any] | None:
    runs = list_runs(db_path, plan_id=plan_id, limit=1)
    return runs[0] if runs else None


RESUMED_PREFIX = "succeeded in run "


def succeeded_steps(db_path: Path, run_id: str) -> dict[str, str]:
    """Steps that succeeded in a run, each with the run it really ran in: a step a resumed run
    skipped because it had succeeded before keeps that earlier run, so resumes can be chained."""
    done: dict[str, str] = {}
    for row in get_run_steps(db_path, run_id):
        step_id, reason = row["step_id"], row["reason"] or ""
        if step_id is None:
            continue
        if row["outcome"] == "succeeded":
            done[step_id] = run_id
        elif row["outcome"] == "skipped" and reason.startswith(RESUMED_PREFIX):
            done[step_id] = reason.removeprefix(RESUMED_PREFIX)
    return done


def previous_durations(db_path: Path, plan_id: str) -> dict[str, float]:
    """Each step's duration (all attempts) in the plan's latest succeeded run: the scheduler's expected
    durations for its critical path."""
    runs = list_runs(db_path, state="succeeded", plan_id=plan_id, limit=1)
    if not runs:
        return {}
    durations: dict[str, float] = {}
    for row in get_run_steps(db_path, runs[0]["run_id"]):
        if row["step_id"] is not None and row["duration_sec"] is not None:
            durations[row["step_id"]] = durations.get(row["step_id"], 0.0) + float(row["duration_sec"])
    return durations


def get_run_events_after(db_path: Path, run_id: str, after_event_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """A run's events with ids above ``after_event_id`` (the latest ``limit`` of them), oldest first:
    what a live view appends since it last looked, without re-reading the whole history."""
    with _reading(db_path) as conn:
        rows = conn.execute(
            "SELECT * FROM (SELECT * FROM run_events WHERE run_id = ? AND event_id > ? ORDER BY event_id DESC"
            " LIMIT ?) ORDER BY event_id",
            (run_id, after_event_id, limit),
        ).fetchall()
    return [_row(r) for r in rows]


def count_run_events(db_path: Path, run_id: str) -> int:
    with _reading(db_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM run_events WHERE run_id = ?", (run_id,)).fetchone()[0])
