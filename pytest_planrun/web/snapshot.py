"""What a page shows of the ledger, as JSON-ready dicts: the runs list and one run's live state.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..ledger import queries
from ..run.step import log_paths
from .graph import Dag, load_dag

TAIL_BYTES = 4096
EVENTS_SHOWN = 50
RUN_FIELDS = (
    "run_id",
    "plan_id",
    "plan_path",
    "variables",
    "state",
    "exit_code",
    "error_message",
    "created_at",
    "started_at",
    "ended_at",
    "workers",
    "hostname",
)


def duration(started: str | None, ended: str | None) -> float | None:
    """Seconds between two ledger times; up to now while ``ended`` is None."""
    if not started:
        return None
    end = datetime.fromisoformat(ended) if ended else datetime.now(timezone.utc)
    return max(0.0, (end - datetime.fromisoformat(started)).total_seconds())


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    summary = {key: run.get(key) for key in RUN_FIELDS}
    summary["duration"] = duration(run.get("started_at") or run.get("created_at"), run.get("ended_at"))
    return summary


def list_runs(ledger: Path, limit: int = 50) -> list[dict[str, Any]]:
    """The latest runs; none while no run has made the ledger yet (a server may start first)."""
    if not ledger.exists():
        return []
    return [run_summary(r) for r in queries.list_runs(ledger, limit=limit)]


def tail(path: Path, size: int = TAIL_BYTES) -> str:
    """The last ``size`` bytes of a log, decoded leniently (a cut may split a character)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def step_state(attempts: list[dict[str, Any]]) -> str:
    """One word per step: pending, running, retrying (an attempt failed, another follows) or its outcome."""
    if not attempts:
        return "pending"
    last = attempts[-1]
    if last["state"] == "running":
        return "running"
    if last["outcome"]:
        return str(last["outcome"])
    return "retrying"


def _attempt(row: dict[str, Any]) -> dict[str, Any]:
    seconds = row["duration_sec"]
    if seconds is None and row["state"] == "running":
        seconds = duration(row["started_at"], None)  # so far
    return {
        "attempt": row["attempt"],
        "state": row["state"],
        "outcome": row["outcome"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "duration": seconds,
        "exit_code": row["exit_code"],
        "timed_out": bool(row["timed_out"]),
        "reason": row["reason"] or row["error_log"],
        "worker": row["worker"],
    }


def step_ids_and_names(
    ledger: Path, run: dict[str, Any], rows: list[dict[str, Any]]
) -> tuple[list[str], dict[str, str]]:
    """Every step of the run in plan order (from its ``run_created`` event), with names where known."""
    first = next((e for e in queries.get_run_events(ledger, run["run_id"]) if e["event_type"] == "run_created"), None)
    ids: list[str] = list((first or {}).get("data", {}).get("step_ids") or [])
    names: dict[str, str] = {}
    for row in rows:
        if row["step_id"] not in ids:
            ids.append(row["step_id"])
        meta = row["metadata"] if isinstance(row["metadata"], dict) else {}
        if meta.get("step_name"):
            names[row["step_id"]] = str(meta["step_name"])
    return ids, names


def run_dag(ledger: Path, run_id: str) -> tuple[dict[str, Any], Dag]:
    run = queries.get_run_status(ledger, run_id)
    rows = [r for r in queries.get_run_steps(ledger, run_id) if r["step_id"] is not None]
    ids, names = step_ids_and_names(ledger, run, rows)
    return run, load_dag(run, ids, names)


def run_snapshot(ledger: Path, run_id: str, dag: Dag) -> dict[str, Any]:
    """A run's state for its page: the run, each step (state, attempts, log tails) and the events
    latest ``EVENTS_SHOWN``. Raises LookupError for an unknown run."""
    run = queries.get_run_status(ledger, run_id)
    by_step: dict[str, list[dict[str, Any]]] = {}
    for row in queries.get_run_steps(ledger, run_id):
        if row["step_id"] is not None:
            by_step.setdefault(row["step_id"], []).append(row)
    steps = []
    for node in dag.nodes:
        rows = by_step.get(node.step_id, [])
        ran = [r for r in rows if r["attempt"]]  # attempt 0: a verdict without a run (skipped, cancelled)
        last = ran[-1] if ran else None
        logs = {"stdout": "", "stderr": ""}
        if last is not None and run.get("run_dir"):
            out, err = log_paths(Path(run["run_dir"]), node.step_id, int(last["attempt"]))
            logs = {"stdout": tail(Path(last["stdout_path"] or out)), "stderr": tail(Path(last["stderr_path"] or err))}
        state = step_state(rows)
        steps.append(
            {
                "step_id": node.step_id,
                "name": node.name,
                "depends_on": list(node.depends_on),
                "state": state,
                "reason": (rows[-1]["reason"] or rows[-1]["error_log"]) if rows else None,
                "duration": sum(a["duration"] or 0.0 for a in map(_attempt, ran)) if ran else None,
                "attempts": [_attempt(r) for r in ran],
                "log": logs,
            }
        )
    events = queries.get_run_events_after(ledger, run_id, 0, limit=EVENTS_SHOWN)
    return {
        "run": run_summary(run),
        "live": run["state"] in ("pending", "running"),
        "steps": steps,
        "events": [
            {"id": e["event_id"], "timestamp": e["timestamp"], "type": e["event_type"], "data": e["data"]}
            for e in events
        ],
        "event_count": queries.count_run_events(ledger, run_id),
        "note": dag.note,
    }
