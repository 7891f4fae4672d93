"""The ledger after real runs: rows, states, attempts, events; concurrency, crashes, resuming.

The API is tested in tests/unit/test_api_contract.py, the ``planrun`` command in tests/cli/.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from planhelpers import alive, kill_run_processes, sh, step, stop, wait_for, write_pid

from conftest import RunPlan
from pytest_planrun.ledger import queries

FLAKY = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 2 ]'


def every_outcome() -> list[dict[str, Any]]:
    return [
        sh("ok", "echo fine"),
        sh("flaky", FLAKY, retries=1),
        sh("slow", "sleep 30", timeout_sec=1, critical=False, on_failure="continue"),
        sh("allowed", "exit 3", critical=False),
        step("after_allowed", "true", depends_on=["allowed"]),
        sh("fatal", "exit 2", depends_on=["ok", "flaky", "slow"]),
        step("never", "true", depends_on=["fatal"]),
    ]


def only_run(db: Path) -> dict[str, Any]:
    runs = queries.list_runs(db)
    assert len(runs) == 1
    return runs[0]


def test_a_run_with_every_outcome_is_recorded(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    secret = {"variables": {"TOKEN": {"secret": True}}}
    result = run_plan(every_outcome(), *mode, "--var", "TOKEN=abc", plan_fields=secret)
    assert result.ret == 1
    db = pytester.path / ".ledger" / "framework.db"
    run = only_run(db)
    assert run["state"] == "failed" and run["exit_code"] == 1
    assert run["variables"] == {"TOKEN": "***"}
    rows = queries.get_run_steps(db, run["run_id"])
    by_step: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_step.setdefault(row["step_id"], []).append(row)
    assert [r["state"] for r in by_step["flaky"]] == ["failed", "succeeded"]
    assert by_step["flaky"][-1]["outcome"] == "succeeded"
    assert by_step["slow"][0]["timed_out"] == 1 and by_step["slow"][0]["outcome"] == "failed"
    assert by_step["after_allowed"][0]["outcome"] == "skipped"
    assert by_step["after_allowed"][0]["reason"] == "dependency 'allowed' failed"
    assert by_step["allowed"][0]["state"] == "failed" and by_step["allowed"][0]["exit_code"] == 3
    assert by_step["allowed"][0]["reason"] == "allowed failure (critical: false)"
    assert by_step["fatal"][0]["exit_code"] == 2
    assert by_step["never"][0]["outcome"] == "canceled"
    assert by_step["never"][0]["reason"] == "cancelled: 'fatal' failed (abort)"
    # seed meanings: tool_id is the command, sequence the plan index, metadata step_id/step_name/attempt
    assert by_step["ok"][0]["tool_id"] == "sh -c 'echo fine'"
    assert by_step["fatal"][0]["sequence"] == 5
    assert by_step["flaky"][1]["metadata"] == {"step_id": "flaky", "step_name": None, "attempt": 2}
    events = [e["event_type"] for e in queries.get_run_events(db, run["run_id"])]
    assert events[:2] == ["run_created", "run_started"] and events[-1] == "run_completed"
    for name in ("step_retry", "step_timeout", "step_skipped", "step_canceled", "step_failed", "step_succeeded"):
        assert name in events, name
    lines = (Path(run["run_dir"]) / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event_type"] for line in lines] == events


def test_a_reader_of_the_seed_columns_works(
    run_plan: RunPlan, pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    run_plan([step("a", "true"), sh("b", "exit 1", depends_on=["a"])])
    conn = sqlite3.connect(pytester.path / ".ledger" / "framework.db")
    request.addfinalizer(conn.close)
    (run_id, state, exit_code) = conn.execute("SELECT run_id, state, exit_code FROM runs").fetchone()
    assert (state, exit_code) == ("failed", 1)
    rows = conn.execute(
        "SELECT step_attempt_id, run_id, sequence, tool_id, state, exit_code, metadata, started_at, ended_at"
        " FROM step_attempts WHERE run_id = ? ORDER BY sequence",
        (run_id,),
    ).fetchall()
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [(0, "true", "succeeded", 0), (1, "sh -c 'exit 1'", "failed", 1)]
    assert json.loads(rows[1][6])["step_id"] == "b"
    types = [
        r[0] for r in conn.execute("SELECT event_type FROM run_events WHERE run_id = ? ORDER BY event_id", (run_id,))
    ]
    assert types[0] == "run_created"


def test_eight_concurrent_runs_lose_nothing(pytester: pytest.Pytester, write_plan: Callable[..., Path]) -> None:
    write_plan([sh(f"s{i}", "true") for i in range(12)], max_concurrency=2)
    db = pytester.path / "shared.db"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "--plan",
                "plan.json",
                "--planrun-ledger",
                str(db),
                "-q",
                "-p",
                "no:cacheprovider",
                *(["-n", "2"] if i % 2 else ["-n", "0"]),
            ],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert not any("database is locked" in out for out in outputs)
    runs = queries.list_runs(db, limit=100)
    assert len(runs) == 8 and {r["state"] for r in runs} == {"succeeded"}
    for run in runs:
        assert len(queries.get_run_steps(db, run["run_id"])) == 12
        events = queries.get_run_events(db, run["run_id"])
        assert sum(e["event_type"] == "step_succeeded" for e in events) == 12


def test_a_killed_controller_leaves_a_run_that_is_later_marked_canceled(
    pytester: pytest.Pytester, write_plan: Callable[..., Path], request: pytest.FixtureRequest
) -> None:
    write_plan([sh("long", f"{write_pid('long.pid')}; exec sleep 300")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--plan", "plan.json", "-q", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    request.addfinalizer(lambda: stop(proc))
    orphan = psutil.Process(int(wait_for(pytester.path / "long.pid")))
    run_id = orphan.environ()["PLANRUN_RUN_ID"]  # read now: once the test kills it, it is gone
    request.addfinalizer(lambda: kill_run_processes(run_id))  # whatever the assertions below say
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    db = pytester.path / ".ledger" / "framework.db"
    run = only_run(db)  # listing detects the dead controller
    assert run["run_id"] == run_id
    assert run["state"] == "canceled"
    assert f"controller process {proc.pid} is gone" == run["error_message"]
    rows = queries.get_run_steps(db, run["run_id"])
    assert [r["state"] for r in rows] == ["canceled"]
    # no controller was left to sweep the step's process: the test ends it, and only what this run started
    assert set(kill_run_processes(run_id)) <= {orphan.pid}
    assert not alive(orphan.pid)


def test_resume_runs_only_what_did_not_succeed(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    steps = [
        sh("a", "touch a.$$"),
        sh("b", "test -f fixed", depends_on=["a"], on_failure="skip_dependents"),
        sh("c", "touch c.$$", depends_on=["b"]),
        sh("d", "touch d.$$"),
    ]
    first = run_plan(steps)
    first.assert_outcomes(passed=2, failed=1, skipped=1)
    (pytester.path / "fixed").touch()
    second = run_plan(steps, "--planrun-resume", "-rs")
    second.assert_outcomes(passed=2, skipped=2)
    second.stdout.fnmatch_lines(["*succeeded in run *"])
    assert len(list(pytester.path.glob("a.*"))) == 1 and len(list(pytester.path.glob("d.*"))) == 1
    assert len(list(pytester.path.glob("c.*"))) == 1


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_last_failed_resumes_the_plans_last_run(
    pytester: pytest.Pytester, write_plan: Callable[..., Path], workers: list[str]
) -> None:
    plan = write_plan(
        [
            sh("a", "touch a.$$"),
            sh("b", "test -f fixed", depends_on=["a"], on_failure="skip_dependents"),
            sh("c", "touch c.$$", depends_on=["b"]),
            sh("d", "touch d.$$"),
        ],
        # serial: one step at a time runs in pytest's own process (a cap of 2 would start workers)
        max_concurrency=2 if workers else 1,
    )

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("--plan", plan.name, "-rs", *workers, *args)

    first = run("--lf")  # nothing to resume yet: every step runs, as pytest does without a last failure
    first.stdout.fnmatch_lines(["planrun: --lf: plan PLAN-TEST has no earlier run in *; running every step"])
    first.assert_outcomes(passed=2, failed=1, skipped=1)
    (pytester.path / "fixed").touch()
    second = run("--lf")
    second.stdout.fnmatch_lines(["planrun: resuming run *: 2 step(s) to run, 2 succeeded there"])
    second.assert_outcomes(passed=2, skipped=2)
    second.stdout.fnmatch_lines(["SKIPPED [[]1[]] plan.json:*: succeeded in run *"] * 2)
    assert len(list(pytester.path.glob("a.*"))) == 1 and len(list(pytester.path.glob("d.*"))) == 1
    assert len(list(pytester.path.glob("c.*"))) == 1
    third = run("--lf")  # the last run failed nothing: run everything again (--lfnf=all)
    third.stdout.fnmatch_lines(["planrun: --lf: every step succeeded in run *; running every step"])
    third.assert_outcomes(passed=4)
    fourth = run("--lf", "--lfnf=none")
    fourth.assert_outcomes(skipped=4)


def test_no_ledger_writes_nothing(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    run_plan([step("a", "true")], "--planrun-no-ledger").assert_outcomes(passed=1)
    assert not (pytester.path / ".ledger" / "framework.db").exists()


def test_a_file_that_is_not_a_ledger_is_named_by_the_ledger_layer(tmp_path: Path) -> None:
    # the plugin falls back to weights on this error without knowing the storage behind it
    db = tmp_path / "framework.db"
    db.write_bytes(b"not a database, " * 512)
    with pytest.raises(queries.LedgerUnreadable, match="cannot read the ledger .*framework.db"):
        queries.previous_durations(db, "PLAN-TEST")
