"""Remote workers lost mid-step (their server killed), a step timing out on a remote worker, and an
interrupted controller: every attempt ends, the run ends, and nothing the run started goes on anywhere."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from planhelpers import sh
from remotehelpers import RemoteWorker, Workers, processes_left
from remoteruns import (
    by_step,
    controller_pid,
    failure_section,
    finish,
    log,
    log_path,
    run_remote,
    start_remote,
    still_there,
    the_run,
    wait_for_text,
)


def lose_the_worker_of(run_dir: Path, workers: list[RemoteWorker]) -> RemoteWorker:
    """Once the step ``long`` says on which worker it runs (streamed to the controller while it runs),
    kill that worker's server: the worker and its channel go at once."""
    line = wait_for_text(log_path(run_dir, "long"), "started on ")
    (victim,) = [w for w in workers if line == f"started on {w.name}"]
    victim.kill()
    return victim


def test_a_step_on_a_lost_worker_is_retried_on_another_worker(
    pytester: pytest.Pytester, remote_workers: Workers, request: pytest.FixtureRequest
) -> None:
    workers = remote_workers(2)
    run_dir = pytester.path / "out"
    script = 'echo "run_dir=$PLANRUN_RUN_DIR"; echo "started on $PLANRUN_TEST_WORKER"; '
    script += '[ "$PLANRUN_ATTEMPT" -ge 2 ] || exec sleep 300'
    steps = [sh("long", script, retries=1), sh("after", "true", depends_on=["long"])]
    proc = start_remote(pytester, request, workers, steps, "--planrun-run-dir", str(run_dir))
    victim = lose_the_worker_of(run_dir, workers)
    out = finish(proc)
    assert proc.returncode == 0, out
    (survivor,) = [w for w in workers if w is not victim]
    assert log_path(run_dir, "long", 2).read_text().splitlines()[-1] == f"started on {survivor.name}"
    run, rows = the_run(pytester)
    attempts = by_step(rows)
    first, second = attempts["long"]
    assert first["state"] == "failed" and "worker lost" in f"{first['error_log']} {first['reason']}"
    assert second["state"] == "succeeded" and second["worker"] != first["worker"]
    assert [row["state"] for row in attempts["after"]] == ["succeeded"]
    assert run["state"] == "succeeded"
    # nothing of the lost attempt goes on on the lost worker's machine (the controller cannot see it), and
    # the lost worker's temporary run folder is gone, as a worker's that ends normally
    assert processes_left(run["run_id"]) == []
    lost_run_dir = Path(log_path(run_dir, "long").read_text().splitlines()[0].removeprefix("run_dir="))
    assert not still_there(victim.seen(lost_run_dir)), sorted(victim.seen(lost_run_dir).rglob("*"))


@pytest.mark.parametrize("count", [2, 1], ids=["another-worker-left", "last-worker"])
def test_a_step_on_a_lost_worker_without_retries_fails_and_the_run_ends(
    pytester: pytest.Pytester, remote_workers: Workers, request: pytest.FixtureRequest, count: int
) -> None:
    workers = remote_workers(count)
    run_dir = pytester.path / "out"
    steps = [
        sh("long", 'echo "started on $PLANRUN_TEST_WORKER"; exec sleep 300'),
        sh("after", "true", depends_on=["long"]),
    ]
    proc = start_remote(pytester, request, workers, steps, "--planrun-run-dir", str(run_dir))
    lose_the_worker_of(run_dir, workers)
    out = finish(proc)
    assert proc.returncode == 1, out
    assert "worker lost" in failure_section(out, "long")
    run, rows = the_run(pytester)
    attempts = by_step(rows)
    assert [row["state"] for row in attempts["long"]] == ["failed"]
    assert "worker lost" in f"{attempts['long'][0]['error_log']} {attempts['long'][0]['reason']}"
    assert [row["outcome"] for row in attempts["after"]] == ["canceled"]
    assert run["state"] == "failed"
    assert processes_left(run["run_id"]) == []


def test_a_step_that_times_out_on_a_remote_worker_is_killed_there(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    (worker,) = remote_workers(1)
    result = run_remote(pytester, [worker], [sh("slow", "echo begun; sleep 300 & wait", timeout_sec=1)])
    result.assert_outcomes(failed=1)
    run, rows = the_run(pytester)
    assert [(row["state"], row["timed_out"]) for row in rows] == [("failed", 1)]
    assert log(run, "slow") == "begun\n"
    assert processes_left(run["run_id"]) == []  # the step's whole tree, on the worker's machine


def test_an_interrupted_controller_stops_the_steps_on_its_remote_workers(
    pytester: pytest.Pytester, remote_workers: Workers, request: pytest.FixtureRequest
) -> None:
    workers = remote_workers(2)
    run_dir = pytester.path / "out"
    steps = [sh(name, f'echo "started {name}"; sleep 300 & wait') for name in ("one", "two")]
    proc = start_remote(pytester, request, workers, steps, "--planrun-run-dir", str(run_dir))
    for name in ("one", "two"):
        wait_for_text(log_path(run_dir, name), "started")
    os.kill(controller_pid(proc, workers), signal.SIGTERM)
    out = finish(proc)
    run, rows = the_run(pytester)
    assert run["state"] == "canceled", out
    assert {row["step_id"]: row["worker"] for row in rows} in (
        {"one": "gw0", "two": "gw1"},
        {"one": "gw1", "two": "gw0"},
    )
    assert processes_left(run["run_id"]) == []
