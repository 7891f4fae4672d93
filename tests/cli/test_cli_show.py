"""``planrun show RUN``: one run's steps, attempts, reasons and logs, its events, and its failures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from cli.helpers import Ledger, Planrun

from pytest_planrun.ledger import queries


def is_utc(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() == timedelta(0)


def test_a_failed_run_step_by_step(planrun: Planrun, ledger: Ledger) -> None:
    result = planrun("show", ledger.bad, "--ledger", str(ledger.path))
    assert (result.code, result.err) == (0, "")
    head, message, times, *rest = result.lines
    assert head == f"run {ledger.bad}: failed (exit code 1) plan PLAN-BAD bad.json"
    assert message == "  step 'fatal' failed"
    words = times.split()
    assert words[0::2] == ["started", "ended", "logs"] and is_utc(words[1]) and is_utc(words[3])
    assert Path(words[5]).is_dir()
    attempts = [line.split(maxsplit=4) for line in rest if line.split()[0] != "logs"]
    assert [a[:4] for a in attempts] == [
        ["flaky", "#1", "failed", "failed"],
        ["flaky", "#2", "succeeded", "succeeded"],
        ["allowed", "#1", "failed", "failed"],
        ["after_allowed", "#0", "canceled", "skipped"],
        ["fatal", "#1", "failed", "failed"],
        ["never", "#0", "canceled", "canceled"],
    ]
    tails = [a[4] for a in attempts]
    assert tails[0].endswith("s  exit 1  exit code 1") and tails[1].endswith("s  exit 0")
    assert tails[2].endswith("s  exit 3  allowed failure (critical: false)")
    assert tails[3] == "dependency 'allowed' failed"
    assert tails[4].endswith("s  exit 2  exit code 2")
    assert tails[5] == "cancelled: 'fatal' failed (abort)"
    logs = [line.split()[1:] for line in rest if line.split()[0] == "logs"]
    assert len(logs) == 4  # one per attempt that ran, below it
    stdout, stderr = logs[3]
    assert Path(stdout).read_text() == "" and Path(stderr).read_text() == "broken\n"
    assert "events:" not in result.out


def test_events(planrun: Planrun, ledger: Ledger) -> None:
    result = planrun("show", ledger.good, "--ledger", str(ledger.path), "--events")
    assert result.code == 0, result.err
    lines = result.lines
    events = [line.split(maxsplit=2) for line in lines[lines.index("events:") + 1 :]]
    expected = queries.get_run_events(ledger.path, ledger.good)
    assert [(e[0], e[1], json.loads(e[2])) for e in events] == [
        (e["timestamp"], e["event_type"], e["data"]) for e in expected
    ]
    assert [e[1] for e in events] == [
        "run_created",
        "run_started",
        "step_started",
        "step_succeeded",
        "step_started",
        "step_succeeded",
        "run_completed",
    ]
    assert all(is_utc(e[0]) for e in events)


def test_an_unknown_run_is_exit_2(planrun: Planrun, ledger: Ledger) -> None:
    result = planrun("show", "nope", "--ledger", str(ledger.path))
    assert (result.code, result.out) == (2, "")
    assert result.err == f"planrun: no run 'nope' in {ledger.path}\n"


def test_a_missing_ledger_is_exit_2_and_stays_missing(planrun: Planrun, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = planrun("show", "any", "--ledger", str(missing))
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"planrun: no ledger at {missing}")
    assert not missing.exists()


def test_bad_arguments_are_exit_2(planrun: Planrun, ledger: Ledger) -> None:
    for argv in ([], ["a", "b"], ["a", "--no-such-option"]):
        result = planrun("show", *argv, "--ledger", str(ledger.path))
        assert result.code == 2, argv
        assert "usage: planrun" in result.err and result.out == ""
