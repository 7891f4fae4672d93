"""``planrun runs``: the table of recent runs, its filters, and its failures."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from cli.helpers import Ledger, Planrun, Result

HEADER = ["RUN", "STATE", "EXIT", "PLAN", "CREATED"]


def rows(result: Result) -> dict[str, list[str]]:
    """The table's rows, newest first, keyed by run id (the first column); the header checked."""
    assert result.code == 0, result.err
    header, *body = result.lines
    assert set(HEADER) <= set(header.split())  # other columns may come
    table = {line.split()[0]: line.split() for line in body}
    assert len(table) == len(body)
    return table


def test_every_run_newest_first(planrun: Planrun, ledger: Ledger) -> None:
    table = rows(planrun("runs", "--ledger", str(ledger.path)))
    assert list(table) == [ledger.again, ledger.bad, ledger.good]
    assert {"succeeded", "0", "PLAN-GOOD"} <= set(table[ledger.good])
    assert {"failed", "1", "PLAN-BAD"} <= set(table[ledger.bad])
    for cells in table.values():
        (created,) = [cell for cell in cells if re.match(r"\d{4}-\d\d-\d\dT", cell)]
        assert datetime.fromisoformat(created).utcoffset() == timedelta(0)


def test_filters(planrun: Planrun, ledger: Ledger) -> None:
    db = str(ledger.path)
    assert list(rows(planrun("runs", "--ledger", db, "--state", "failed"))) == [ledger.bad]
    assert list(rows(planrun("runs", "--ledger", db, "--state", "succeeded"))) == [ledger.again, ledger.good]
    assert list(rows(planrun("runs", "--ledger", db, "--plan-id", "PLAN-GOOD"))) == [ledger.again, ledger.good]
    assert list(rows(planrun("runs", "--ledger", db, "--plan-id", "PLAN-BAD", "--state", "succeeded"))) == []
    assert list(rows(planrun("runs", "--ledger", db, "--limit", "1"))) == [ledger.again]
    latest_succeeded = planrun("runs", "--ledger", db, "--limit", "2", "--state", "succeeded")
    assert list(rows(latest_succeeded)) == [ledger.again, ledger.good]


def test_a_missing_ledger_is_exit_2_and_stays_missing(planrun: Planrun, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = planrun("runs", "--ledger", str(missing))
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"planrun: no ledger at {missing}")
    assert not missing.exists()


def test_bad_arguments_are_exit_2(planrun: Planrun, ledger: Ledger) -> None:
    for argv in (["--limit", "many"], ["--no-such-option"], ["extra"]):
        result = planrun("runs", "--ledger", str(ledger.path), *argv)
        assert result.code == 2, argv
        assert "usage: planrun" in result.err and result.out == ""


def test_the_console_script(ledger: Ledger) -> None:
    """The ``planrun`` entry point installed beside this interpreter runs the same command."""
    script = Path(sys.executable).with_name("planrun")
    done = subprocess.run([str(script), "runs", "--ledger", str(ledger.path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == [ledger.again, ledger.bad, ledger.good]
    missing = subprocess.run([str(script), "runs", "--ledger", str(ledger.path) + ".nope"], capture_output=True)
    assert missing.returncode == 2
