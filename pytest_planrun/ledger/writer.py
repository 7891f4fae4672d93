"""The controller's ledger recorder: a ``RunObserver`` that writes runs, attempts and events.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..run.observer import Progress, RunInfo
from ..run.records import ALLOWED_FAILURE, AttemptRecord, StepResult
from .events import EventType, append_event, iso
from .queries import mark_stale_runs
from .schema import connect

log = logging.getLogger(__name__)

GIVEN_KEY = "planrun_given_variables"  # in the run's metadata

_OUTCOME_EVENTS: dict[str, EventType] = {
    "succeeded": "step_succeeded",
    "failed": "step_failed",
    "skipped": "step_skipped",
    "canceled": "step_canceled",
}


class LedgerRecorder:
    """Writes one run. Each call is one short ``BEGIN IMMEDIATE`` transaction, so concurrent runs
    wait for each other (busy timeout) instead of failing, and a run killed at any moment leaves
    only whole rows behind."""

    def __init__(self, db_path: Path, run_dir: Path, given: tuple[str, ...] | None = None) -> None:
        self.db_path = db_path
        self.given = given  # names of the variables given with --var: what `planrun runs` shows
        self.run_dir = run_dir
        self.events_file = run_dir / "events.jsonl"
        self._conn: sqlite3.Connection | None = None
        self._run: RunInfo | None = None
        self._sequence: dict[str, int] = {}
        self._names: dict[str, str | None] = {}
        self._commands: dict[str, str] = {}

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            self._conn = connect(self.db_path, create=True)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _event(self, conn: sqlite3.Connection, event_type: EventType, now: float, **data: Any) -> None:
        assert self._run is not None
        append_event(conn, self.events_file, self._run.run_id, event_type, now, data)

    # -- RunObserver ----------------------------------------------------------------------------

    def run_started(self, run: RunInfo, now: float) -> None:
        self._run = run
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for step in run.steps:
            self._sequence[step.step_id] = step.index
            self._names[step.step_id] = step.name
            self._commands[step.step_id] = step.command
        if self.db_path.exists():
            mark_stale_runs(self.db_path)
        metadata = {**run.metadata, "plan_id": run.plan_id, "plan_path": run.plan_path}
        if self.given is not None:
            metadata[GIVEN_KEY] = list(self.given)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, project_id, created_at, started_at, state, metadata, plan_id, plan_path,"
                " plan_hash, variables, controller_pid, hostname, workers, run_dir)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    str(run.metadata.get("project", "")) or None,
                    iso(now),
                    iso(now),
                    json.dumps(metadata, default=str),
                    run.plan_id,
                    run.plan_path,
                    run.plan_hash,
                    json.dumps(dict(run.variables)),
                    run.pid,
                    socket.gethostname(),
                    run.workers,
                    run.run_dir,
                ),
            )
            self._event(
                conn,
                "run_created",
                now,
                plan_id=run.plan_id,
                plan_path=run.plan_path,
                variables=dict(run.variables),
                steps=len(run.steps),
                step_ids=[step.step_id for step in run.steps],
            )
            self._event(conn, "run_started", now, workers=run.workers, pid=run.pid)

    def _attempt_id(self, step_id: str, attempt: int) -> str:
        assert self._run is not None
        return f"{self._run.run_id}:{step_id}:{attempt}"

    def attempt_started(self, step_id: str, attempt: int, worker: str, now: float) -> None:
        assert self._run is not None
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO step_attempts (step_attempt_id, run_id, sequence, tool_id, started_at, state,"
                " metadata, step_id, attempt, worker) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (
                    self._attempt_id(step_id, attempt),
                    self._run.run_id,
                    self._sequence.get(step_id),
                    self._commands.get(step_id),
                    iso(now),
                    json.dumps({"step_id": step_id, "step_name": self._names.get(step_id), "attempt": attempt}),
                    step_id,
                    attempt,
                    worker,
                ),
            )
            self._event(conn, "step_started", now, step_id=step_id, attempt=attempt, worker=worker)

    def attempt_ended(self, record: AttemptRecord, will_retry: bool) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE step_attempts SET state = ?, ended_at = ?, exit_code = ?, error_log = ?, duration_sec = ?,"
                " timed_out = ?, stdout_path = ?, stderr_path = ?, worker = ?, tool_id = ?, retry_reason = ?,"
                " retry_delay_sec = ? WHERE step_attempt_id = ?",
                (
                    record.state,
                    iso(record.ended_at),
                    record.exit_code,
                    record.error,
                    record.duration,
                    int(record.timed_out),
                    record.stdout_path,
                    record.stderr_path,
                    record.worker,
                    record.command,
                    record.retry_reason,
                    record.retry_delay,
                    self._attempt_id(record.step_id, record.attempt),
                ),
            )
            data = {
                "step_id": record.step_id,
                "attempt": record.attempt,
                "exit_code": record.exit_code,
                "duration": round(record.duration, 6),
                "error": record.error,
                "stdout": record.stdout_path,
                "stderr": record.stderr_path,
                "worker": record.worker,
            }
            if record.retry_reason is not None:
                data |= {"retry_reason": record.retry_reason, "retry_delay": record.retry_delay}
            if record.timed_out:
                kind = record.timeout_kind or "wall_clock"
                self._event(conn, "step_timeout", record.ended_at, timeout_kind=kind, **data)
            if will_retry and record.state == "failed":
                self._event(conn, "step_retry", record.ended_at, next_attempt=record.attempt + 1, **data)
            if record.provided and record.state == "succeeded":  # kept in the run dir's provided/
                files = [asdict(file) for file in record.provided]
                self._event(conn, "step_provided", record.ended_at, step_id=record.step_id, files=files)

    def heartbeat(self, progress: Progress, now: float) -> None:
        """A running attempt is alive: one ``run_events`` row and one events.jsonl line per beat."""
        last = None if progress.last_output_at is None else iso(progress.last_output_at)
        with self._write() as conn:
            self._event(
                conn,
                "step_heartbeat",
                now,
                step_id=progress.step_id,
                attempt=progress.attempt,
                worker=progress.worker,
                output_bytes=progress.output_bytes,
                last_output_at=last,
            )

    def step_waiting(self, step_id: str, reason: str, now: float) -> None:
        with self._write() as conn:
            self._event(conn, "step_waiting", now, step_id=step_id, reason=reason)

    def step_finished(self, result: StepResult, now: float) -> None:
        assert self._run is not None
        # a reader of the ledger sees an allowed failure as such, as pytest shows it (xfailed)
        reason = result.reason or (ALLOWED_FAILURE if result.allowed_failure else None)
        retried = result.attempts[-1].retry_reason if result.attempts else None  # why the last was final
        with self._write() as conn:
            if result.attempts:
                last = result.attempts[-1]
                conn.execute(
                    "UPDATE step_attempts SET outcome = ?, reason = ? WHERE step_attempt_id = ?",
                    (result.outcome, reason, self._attempt_id(result.step_id, last.attempt)),
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO step_attempts (step_attempt_id, run_id, sequence, tool_id, started_at,"
                    " ended_at, state, error_log, metadata, step_id, attempt, outcome, reason)"
                    " VALUES (?, ?, ?, ?, NULL, ?, 'canceled', ?, ?, ?, 0, ?, ?)",
                    (
                        self._attempt_id(result.step_id, 0),
                        self._run.run_id,
                        self._sequence.get(result.step_id),
                        self._commands.get(result.step_id),
                        iso(now),
                        result.reason,
                        json.dumps(
                            {"step_id": result.step_id, "step_name": self._names.get(result.step_id), "attempt": 0}
                        ),
                        result.step_id,
                        result.outcome,
                        result.reason,
                    ),
                )
            self._event(
                conn,
                _OUTCOME_EVENTS[result.outcome],
                now,
                step_id=result.step_id,
                attempts=len(result.attempts),
                reason=reason,
                allowed_failure=result.allowed_failure,
                duration=round(sum(a.duration for a in result.attempts), 6),
                **({"retry_reason": retried} if retried else {}),
            )

    def run_finished(self, state: str, exit_code: int, message: str | None, now: float) -> None:
        assert self._run is not None
        with self._write() as conn:
            # Attempts still running when the run ended (interrupt) were cancelled with it.
            conn.execute(
                "UPDATE step_attempts SET state = 'canceled', ended_at = ?, outcome = COALESCE(outcome, 'canceled'),"
                " reason = COALESCE(reason, ?) WHERE run_id = ? AND state = 'running'",
                (iso(now), message, self._run.run_id),
            )
            conn.execute(
                "UPDATE runs SET state = ?, ended_at = ?, exit_code = ?, error_message = ? WHERE run_id = ?",
                (state, iso(now), exit_code, message, self._run.run_id),
            )
            event: EventType = "run_canceled" if state == "canceled" else "run_completed"
            self._event(conn, event, now, state=state, exit_code=exit_code, message=message)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
