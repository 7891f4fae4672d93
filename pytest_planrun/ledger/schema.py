"""The ledger's tables and their migrations, applied when a connection opens.

The seed's tables and columns are kept as they were, so readers written against them keep working;
planrun's own facts are added as new columns. A skipped or cancelled step that never ran gets one
``step_attempts`` row with the seed state ``canceled`` and the real outcome (``skipped`` or
``canceled``) in the added ``outcome`` column, with its reason.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 3

_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    project_id TEXT,
    phase_id TEXT,
    workstream_id TEXT,
    execution_request_id TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending','running','succeeded','failed','quarantined','canceled')),
    exit_code INTEGER,
    error_message TEXT,
    metadata TEXT
);
CREATE TABLE IF NOT EXISTS step_attempts (
    step_attempt_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    sequence INTEGER,
    tool_id TEXT,
    tool_run_id TEXT,
    execution_request_id TEXT,
    prompt_id TEXT,
    started_at TEXT,
    ended_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('running','succeeded','failed','canceled')),
    exit_code INTEGER,
    input_prompt TEXT,
    output_patch_id TEXT,
    error_log TEXT,
    metadata TEXT
);
CREATE TABLE IF NOT EXISTS run_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT
);
ALTER TABLE runs ADD COLUMN plan_id TEXT;
ALTER TABLE runs ADD COLUMN plan_path TEXT;
ALTER TABLE runs ADD COLUMN plan_hash TEXT;
ALTER TABLE runs ADD COLUMN variables TEXT;
ALTER TABLE runs ADD COLUMN controller_pid INTEGER;
ALTER TABLE runs ADD COLUMN hostname TEXT;
ALTER TABLE runs ADD COLUMN workers INTEGER;
ALTER TABLE runs ADD COLUMN run_dir TEXT;
ALTER TABLE step_attempts ADD COLUMN step_id TEXT;
ALTER TABLE step_attempts ADD COLUMN attempt INTEGER;
ALTER TABLE step_attempts ADD COLUMN outcome TEXT;
ALTER TABLE step_attempts ADD COLUMN reason TEXT;
ALTER TABLE step_attempts ADD COLUMN duration_sec REAL;
ALTER TABLE step_attempts ADD COLUMN timed_out INTEGER;
ALTER TABLE step_attempts ADD COLUMN stdout_path TEXT;
ALTER TABLE step_attempts ADD COLUMN stderr_path TEXT;
ALTER TABLE step_attempts ADD COLUMN worker TEXT;
CREATE INDEX IF NOT EXISTS step_attempts_run ON step_attempts(run_id, step_id);
CREATE INDEX IF NOT EXISTS run_events_run ON run_events(run_id, event_id);
CREATE INDEX IF NOT EXISTS runs_plan ON runs(plan_id, created_at);
"""

# A ledger of the earlier orchestrator (user_version 0) gets planrun's columns from _V1; its rows get
# them here, from where its writer kept them: `metadata` holds step_id and attempt (SPEC §5), and
# a run's metadata may name its plan. Rows planrun wrote have them already.
_V2 = """
UPDATE step_attempts SET step_id = json_extract(metadata, '$.step_id')
    WHERE step_id IS NULL AND CASE WHEN json_valid(metadata) THEN json_type(metadata, '$.step_id') END = 'text';
UPDATE step_attempts SET attempt = json_extract(metadata, '$.attempt')
    WHERE attempt IS NULL AND CASE WHEN json_valid(metadata) THEN json_type(metadata, '$.attempt') END = 'integer';
UPDATE runs SET plan_id = json_extract(metadata, '$.plan_id')
    WHERE plan_id IS NULL AND CASE WHEN json_valid(metadata) THEN json_type(metadata, '$.plan_id') END = 'text';
UPDATE runs SET plan_path = json_extract(metadata, '$.plan_path')
    WHERE plan_path IS NULL AND CASE WHEN json_valid(metadata) THEN json_type(metadata, '$.plan_path') END = 'text'
"""

# Each failed attempt: why it was or was not retried, and the seconds waited before the next one.
_V3 = """
ALTER TABLE step_attempts ADD COLUMN retry_reason TEXT;
ALTER TABLE step_attempts ADD COLUMN retry_delay_sec REAL
"""

MIGRATIONS = {1: _V1, 2: _V2, 3: _V3}


def _existing_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open the ledger (WAL, generous busy timeout) and bring its schema up to date."""
    if not create and not path.exists():
        raise FileNotFoundError(f"no ledger at {path} (run a plan first, or pass --ledger PATH)")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 60000")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
    except BaseException:
        conn.close()  # not a ledger, or a newer one: no connection left behind
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another run may have migrated
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in filter(None, (s.strip() for s in MIGRATIONS[target].split(";"))):
                if statement.startswith("ALTER TABLE"):
                    table, column = statement.split()[2], statement.split()[5]
                    if column in _existing_columns(conn, table):  # a seed ledger that already has it
                        continue
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
