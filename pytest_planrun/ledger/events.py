"""Event names and how one event is written: a ``run_events`` row and a line of ``events.jsonl``.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

EventType = Literal[
    "run_created",
    "run_started",
    "step_started",
    "step_succeeded",
    "step_failed",
    "step_retry",
    "step_timeout",
    "step_skipped",
    "step_canceled",
    "step_waiting",
    "step_heartbeat",
    "step_provided",
    "run_completed",
    "run_canceled",
]


def iso(epoch: float) -> str:
    """UTC ISO-8601, the ledger's time format."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def append_event(
    conn: sqlite3.Connection, events_file: Path, run_id: str, event_type: EventType, now: float, data: dict[str, Any]
) -> None:
    """Record one event; the caller holds the write transaction."""
    timestamp = iso(now)
    payload = json.dumps(data, sort_keys=True)
    conn.execute(
        "INSERT INTO run_events (run_id, timestamp, event_type, data) VALUES (?, ?, ?, ?)",
        (run_id, timestamp, event_type, payload),
    )
    line = json.dumps({"run_id": run_id, "timestamp": timestamp, "event_type": event_type, "data": data})
    with events_file.open("a", encoding="utf-8") as handle:  # one line per event: a reader can tail it
        handle.write(line + "\n")
