"""Plans on remote xdist workers (``--tx socket=...//chdir=DIR``): where a step runs and with which
environment, its logs on the controller, files provided from one worker to another, locks taken by the
controller, and ``runs_on`` pinning. Lost workers, timeouts and interrupts: test_remote_losses.py.

The workers are socket servers on this machine (tests/remotehelpers.py). Isolated, they and the controller
share no files, so whatever a test finds on the controller crossed the xdist channel.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from filelock import FileLock
from planhelpers import overlap, plan_doc, sh
from remotehelpers import Workers, controller_prefix, tx_args
from remoteruns import (
    STAMPED,
    STAMPED_LONG,
    by_step,
    failure_section,
    finish,
    labels,
    log,
    log_path,
    run_remote,
    span,
    start_remote,
    the_run,
    wait_for_text,
    write_remote_plan,
)

from pytest_planrun.ledger import queries
from pytest_planrun.run.locks import lock_path

SECRET = "s3cr3t-Value"
SECRET_PLAN = {"variables": {"TOKEN": {"secret": True}}}


def test_the_plan_option_may_be_two_arguments(pytester: pytest.Pytester, remote_workers: Workers) -> None:
    """``--plan plan.json``, as the README writes it: xdist 3.8 maps every argument naming an existing file
    onto an rsync root for a remote worker, which a plan given this way must get past."""
    (worker,) = remote_workers(1)
    write_remote_plan(pytester, [worker], [sh("a", "echo hi")])
    args = ["--plan", "plan.json", *tx_args([worker]), "--dist", "load", "-p", "no:cacheprovider"]
    result = pytester.run(*controller_prefix([worker]), sys.executable, "-m", "pytest", *args, timeout=240)
    result.assert_outcomes(passed=1)
    run, _ = the_run(pytester)
    assert log(run, "a") == "hi\n"


def test_a_step_runs_in_its_workers_directory_and_environment_and_shares_no_files(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    (worker,) = remote_workers(1)
    (worker.files() / "sub").mkdir()
    script = (
        'echo "pwd=$(pwd)"; echo "home=$HOME"; echo "worker=$PLANRUN_TEST_WORKER"; echo "greeting=$GREETING"; '
        'echo "step=$PLANRUN_STEP_ID"; echo "attempt=$PLANRUN_ATTEMPT"; echo "run_dir=$PLANRUN_RUN_DIR"; '
        'echo "run_dir_is_dir=$(test -d "$PLANRUN_RUN_DIR" && echo yes)"; '
        f'echo "project=$(ls -A {pytester.path} | tr "\\n" " ")"; echo from-the-worker > written'
    )
    result = run_remote(
        pytester, [worker], [sh("where", script, cwd="sub", env={"GREETING": "hello"})], "--planrun-run-dir", "out"
    )
    result.assert_outcomes(passed=1)
    run, rows = the_run(pytester)
    assert Path(run["run_dir"]) == pytester.path / "out"
    seen = dict(line.split("=", 1) for line in log(run, "where").splitlines())
    # the worker's directory joined with the step's cwd; the worker's own environment, overlaid
    assert seen["pwd"] == str(worker.directory / "sub")
    assert (seen["home"], seen["worker"]) == (str(worker.directory), worker.name)
    assert (seen["greeting"], seen["step"], seen["attempt"]) == ("hello", "where", "1")
    # $PLANRUN_RUN_DIR is a directory on the worker, not the controller's run directory, gone with the worker
    worker_run_dir = Path(seen["run_dir"])
    assert seen["run_dir_is_dir"] == "yes" and worker_run_dir != pytester.path / "out"
    assert not worker.seen(worker_run_dir).exists()
    assert rows[0]["worker"] == "gw0"
    assert (worker.files() / "sub" / "written").read_text() == "from-the-worker\n"
    if worker.isolated:
        assert seen["project"] == ""  # the plan, the ledger, the run directory: none of it is on the worker
        assert not (worker.directory / "sub").exists()  # nor is the worker's file on the controller


def test_logs_reach_the_controller_whole_masked_and_in_the_reports(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    (worker,) = remote_workers(1)
    steps = [
        sh(
            "chatty",
            "printf 'out-1\\nout-2 %s\\n' \"$TOKEN\"; printf 'err-1 %s\\n' \"$TOKEN\" >&2; printf 'out-3'",
            env={"TOKEN": "${TOKEN}"},
        ),
        sh("big", "seq 1 700000; seq 700000 -1 1 >&2"),  # 4.7 MB on each stream
        sh("failing", "seq 1 50; echo last-words; echo oops >&2; exit 5", depends_on=["chatty", "big"]),
    ]
    result = run_remote(
        pytester, [worker], steps, "--var", f"TOKEN={SECRET}", "--junitxml=junit.xml", plan_fields=SECRET_PLAN
    )
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1
    run, rows = the_run(pytester)
    run_dir = Path(run["run_dir"])
    assert run_dir == pytester.path / ".ledger" / "runs" / run["run_id"]
    assert log(run, "chatty") == "out-1\nout-2 ***\nout-3"
    assert log(run, "chatty", stream="stderr") == "err-1 ***\n"
    assert log(run, "big") == "".join(f"{i}\n" for i in range(1, 700001))
    assert log(run, "big", stream="stderr") == "".join(f"{i}\n" for i in range(700000, 0, -1))
    for row in rows:
        assert row["worker"] == "gw0"
        assert Path(row["stdout_path"]) == log_path(run_dir, row["step_id"], row["attempt"], "stdout")
        assert Path(row["stderr_path"]) == log_path(run_dir, row["step_id"], row["attempt"], "stderr")
    # the failure's tail in the terminal report and in JUnit, as for a local run
    section = failure_section(result.stdout.str(), "failing")
    assert "exit code 5" in section and "50\nlast-words" in section
    cases = {case.get("name"): case for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    failure = cases["failing"].find("failure")
    assert failure is not None and failure.text is not None
    assert "exit code 5" in failure.text and "50\nlast-words" in failure.text
    out, err = cases["chatty"].find("system-out"), cases["chatty"].find("system-err")
    assert out is not None and out.text is not None and "out-1\nout-2 ***\nout-3" in out.text
    assert err is not None and err.text is not None and "err-1 ***" in err.text
    everything = [result.stdout.str(), result.stderr.str(), (pytester.path / "junit.xml").read_text()]
    everything += [path.read_text() for path in run_dir.rglob("*") if path.is_file()]
    assert not [text for text in everything if SECRET in text]


def test_a_provided_file_goes_from_its_producers_worker_to_its_consumers_worker(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    build, deploy = remote_workers(2)
    (build.files() / "b").mkdir()
    (deploy.files() / "d" / "e").mkdir(parents=True)
    steps = [
        sh(
            "package",
            "mkdir -p dist && head -c 3000000 /dev/urandom > dist/app.tgz && sha256sum dist/app.tgz",
            cwd="b",
            runs_on="build",
            provides=[{"name": "app", "path": "dist/app.tgz"}],
        ),
        sh(
            "install",
            'sha256sum dist/app.tgz "$PLANRUN_RUN_DIR/provided/dist/app.tgz"',
            cwd="d/e",
            runs_on="deploy",
            consumes=["app"],
            depends_on=["package"],
        ),
    ]
    result = run_remote(pytester, [build, deploy], steps, *labels("gw0=build", "gw1=deploy"))
    result.assert_outcomes(passed=2)
    run, rows = the_run(pytester)
    assert {row["step_id"]: row["worker"] for row in rows} == {"package": "gw0", "install": "gw1"}
    produced = log(run, "package").split()[0]
    kept = Path(run["run_dir"]) / "provided" / "dist" / "app.tgz"
    assert kept.stat().st_size == 3000000 and hashlib.sha256(kept.read_bytes()).hexdigest() == produced
    # both places on the consumer's worker: its cwd and its run directory
    assert [line.split()[0] for line in log(run, "install").splitlines()] == [produced, produced]
    assert hashlib.sha256((deploy.files() / "d" / "e" / "dist" / "app.tgz").read_bytes()).hexdigest() == produced
    if build.isolated:
        assert not (deploy.files() / "b").exists()  # the consumer's worker never saw the producer's directory


def test_a_provided_file_missing_or_too_large_fails_its_producer(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    build, deploy = remote_workers(2)
    steps = [
        sh("forgets", "true", runs_on="build", provides=[{"name": "app", "path": "dist/app.tgz"}]),
        sh(
            "overdoes",
            "mkdir -p out && head -c 2100000 /dev/zero > out/big.bin",
            runs_on="build",
            provides=[{"name": "big", "path": "out/big.bin"}],
        ),
        sh("use_app", "touch used-app", runs_on="deploy", consumes=["app"], depends_on=["forgets"]),
        sh("use_big", "touch used-big", runs_on="deploy", consumes=["big"], depends_on=["overdoes"]),
    ]
    for producer in steps[:2]:
        producer["on_failure"] = "skip_dependents"  # both producers run whichever fails first
    result = run_remote(
        pytester, [build, deploy], steps, *labels("gw0=build", "gw1=deploy"), "--planrun-max-provided-mb", "1"
    )
    result.assert_outcomes(failed=2, skipped=2)
    missing = failure_section(result.stdout.str(), "forgets")
    assert "dist/app.tgz" in missing and "not found" in missing
    too_large = failure_section(result.stdout.str(), "overdoes")
    assert "out/big.bin" in too_large and re.search(r"\b(1 ?MB|1048576 bytes)\b", too_large), too_large
    run, rows = the_run(pytester)
    assert [row["outcome"] for row in by_step(rows)["forgets"]] == ["failed"]
    assert not (deploy.files() / "used-app").exists() and not (deploy.files() / "used-big").exists()


def test_steps_sharing_a_lock_on_two_workers_never_overlap(pytester: pytest.Pytester, remote_workers: Workers) -> None:
    first, second = remote_workers(2)
    pinned = labels("gw0=a", "gw1=b")
    # without the lock the same two steps overlap: each has a worker to itself
    result = run_remote(
        pytester,
        [first, second],
        [sh("one", STAMPED_LONG, runs_on="a"), sh("two", STAMPED_LONG, runs_on="b")],
        *pinned,
        "--planrun-run-dir",
        "unlocked",
    )
    result.assert_outcomes(passed=2)
    unlocked = pytester.path / "unlocked"
    assert overlap(*(span(log_path(unlocked, name).read_text()) for name in ("one", "two")))
    steps = [sh("one", STAMPED_LONG, locks=["db"], runs_on="a"), sh("two", STAMPED_LONG, locks=["db"], runs_on="b")]
    result = run_remote(pytester, [first, second], steps, *pinned, "--planrun-run-dir", "locked")
    result.assert_outcomes(passed=2)
    locked = pytester.path / "locked"
    assert not overlap(*(span(log_path(locked, name).read_text()) for name in ("one", "two")))
    db = pytester.path / ".ledger" / "framework.db"
    for run in queries.list_runs(db):
        rows = queries.get_run_steps(db, run["run_id"])
        assert {row["step_id"]: row["worker"] for row in rows} == {"one": "gw0", "two": "gw1"}


def test_a_lock_held_by_another_process_on_the_controllers_machine_delays_the_step(
    pytester: pytest.Pytester, remote_workers: Workers, request: pytest.FixtureRequest
) -> None:
    first, second = remote_workers(2)
    steps = [
        sh("locked", STAMPED, locks=["deploy"], runs_on="a"),
        sh("free", f"{STAMPED}; echo ready", runs_on="b"),
    ]
    run_dir = pytester.path / "out"
    held = FileLock(str(lock_path("deploy")))  # the controller's lock folder: PLANRUN_LOCK_DIR of this test
    held.acquire(timeout=5)
    try:
        proc = start_remote(
            pytester, request, [first, second], steps, *labels("gw0=a", "gw1=b"), "--planrun-run-dir", str(run_dir)
        )
        wait_for_text(log_path(run_dir, "free"), "ready")  # the run is under way; "locked" was due as early
        released = time.time()
    finally:
        held.release()
    out = finish(proc)
    assert proc.returncode == 0, out
    assert span(log_path(run_dir, "free").read_text())[0] < released < span(log_path(run_dir, "locked").read_text())[0]


def test_runs_on_pins_steps_to_the_workers_with_all_its_labels(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    gpu, arm = remote_workers(2)
    where = 'echo "$PLANRUN_TEST_WORKER"'
    steps = [sh(f"gpu{i}", where, runs_on=["linux", "gpu"]) for i in range(3)]
    steps += [sh(f"arm{i}", where, runs_on="arm") for i in range(3)]
    steps += [sh("any", where, runs_on="linux")]
    pytester.makeini("[pytest]\nplanrun_worker_labels =\n    gw1=linux,arm\n")  # the controller's ini only
    result = run_remote(pytester, [gpu, arm], steps, *labels("gw0=linux,gpu"))
    result.assert_outcomes(passed=7)
    run, rows = the_run(pytester)
    workers = {row["step_id"]: row["worker"] for row in rows}
    assert [workers[f"gpu{i}"] for i in range(3)] == ["gw0"] * 3
    assert [workers[f"arm{i}"] for i in range(3)] == ["gw1"] * 3
    assert workers["any"] in {"gw0", "gw1"}
    assert [log(run, f"gpu{i}") for i in range(3)] == [f"{gpu.name}\n"] * 3
    assert [log(run, f"arm{i}") for i in range(3)] == [f"{arm.name}\n"] * 3


def test_a_step_no_worker_fits_is_a_usage_error_before_anything_runs(
    pytester: pytest.Pytester, remote_workers: Workers
) -> None:
    workers = remote_workers(2)
    steps = [sh("first", "touch ran"), sh("train", "touch ran", runs_on=["linux", "gpu"], depends_on=["first"])]
    result = run_remote(pytester, workers, steps, *labels("gw0=linux", "gw1=gpu"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR:*train*"])
    assert "gpu" in result.stderr.str() and "Traceback" not in result.stderr.str()
    assert not [w.name for w in workers if (w.files() / "ran").exists()]
    db = pytester.path / ".ledger" / "framework.db"
    assert not db.exists() or not [r for r in queries.list_runs(db) if queries.get_run_steps(db, r["run_id"])]


def test_a_popen_worker_with_a_folder_of_its_own_is_a_remote_worker(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("popen-worker")
    script = 'echo "pwd=$(pwd)"; echo "run_dir=$PLANRUN_RUN_DIR"'
    (pytester.path / "plan.json").write_text(json.dumps(plan_doc([sh("where", script)])))
    tx = f"popen//chdir={folder}"
    result = pytester.run(
        sys.executable,
        "-m",
        "pytest",
        "--plan=plan.json",
        "--tx",
        tx,
        "--dist",
        "load",
        "-p",
        "no:cacheprovider",
        timeout=240,
    )
    result.assert_outcomes(passed=1)
    run, rows = the_run(pytester)
    seen = dict(line.split("=", 1) for line in log(run, "where").splitlines())
    assert seen["pwd"] == str(folder)
    # a temporary folder of the worker's, not the controller's run directory
    assert Path(seen["run_dir"]) != Path(run["run_dir"]) and not Path(seen["run_dir"]).exists()
    assert rows[0]["worker"] == "gw0"
