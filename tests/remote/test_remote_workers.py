"""Plans on remote xdist workers (``--tx socket=...//chdir=DIR``): where a step runs and with which
environment, its logs on the controller, files provided from one worker to another, locks taken by the
controller, ``runs_on`` pinning, and a worker lost mid-step.

The workers are socket servers on this machine (tests/remotehelpers.py). Isolated, they and the controller
share no files, so whatever a test finds on the controller crossed the xdist channel.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from filelock import FileLock
from planhelpers import overlap, plan_doc, sh, stop
from remotehelpers import RemoteWorker, controller_prefix, processes_left, tx_args

from pytest_planrun.ledger import queries
from pytest_planrun.run.locks import lock_path

Workers = Callable[[int], list[RemoteWorker]]
# A step's start and end on its stdout: the workers share no disk with the test, their logs reach it.
STAMPED = 'echo "start $(date +%s.%N)"; sleep 1; echo "end $(date +%s.%N)"'
SECRET = "s3cr3t-Value"
SECRET_PLAN = {"variables": {"TOKEN": {"secret": True}}}


def remote_args(workers: list[RemoteWorker], *args: str) -> list[str]:
    return ["--plan=plan.json", *tx_args(workers), "--dist", "load", "-p", "no:cacheprovider", *args]


def write_remote_plan(
    pytester: pytest.Pytester, workers: list[RemoteWorker], steps: list[dict[str, Any]], **globals_: Any
) -> None:
    globals_.setdefault("max_concurrency", len(workers))
    (pytester.path / "plan.json").write_text(json.dumps(plan_doc(steps, **globals_), indent=2))


def run_remote(
    pytester: pytest.Pytester, workers: list[RemoteWorker], steps: list[dict[str, Any]], *args: str, **globals_: Any
) -> pytest.RunResult:
    """Run the plan of ``steps`` on ``workers`` (gw0, gw1, ... in order); the plan's cap is their number."""
    write_remote_plan(pytester, workers, steps, **globals_)
    return pytester.run(*pytest_command(workers, *args), timeout=240)


def pytest_command(workers: list[RemoteWorker], *args: str) -> list[str]:
    """The controller's command; isolated, in a PID namespace of its own (see tests/remotehelpers.py)."""
    return [*controller_prefix(workers), sys.executable, "-m", "pytest", *remote_args(workers, *args)]


def start_remote(
    pytester: pytest.Pytester,
    request: pytest.FixtureRequest,
    workers: list[RemoteWorker],
    steps: list[dict[str, Any]],
    *args: str,
) -> subprocess.Popen[bytes]:
    """The same run in the background, for a test that acts while it goes."""
    write_remote_plan(pytester, workers, steps)
    proc = subprocess.Popen(
        pytest_command(workers, *args),
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    request.addfinalizer(lambda: stop(proc))
    return proc


def controller_pid(proc: subprocess.Popen[bytes], workers: list[RemoteWorker]) -> int:
    """The pytest controller's pid as this test sees it: the child of ``unshare`` when it has its own PID
    namespace (see ``controller_prefix``)."""
    if not controller_prefix(workers):
        return proc.pid
    deadline = time.monotonic() + 30
    while not (children := psutil.Process(proc.pid).children()) and time.monotonic() < deadline:
        time.sleep(0.01)  # unshare forks the controller at once; the interval sets no order
    (child,) = children
    return int(child.pid)


def finish(proc: subprocess.Popen[bytes]) -> str:
    """The background run's output once it has ended; a run that hangs fails the test."""
    __tracebackhide__ = True
    try:
        return proc.communicate(timeout=180)[0].decode()
    except subprocess.TimeoutExpired:
        raise AssertionError("the run did not end within 180 s") from None


def labels(*specs: str) -> list[str]:
    return [arg for spec in specs for arg in ("--planrun-worker-label", spec)]


def the_run(pytester: pytest.Pytester) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one run in the project's ledger and its attempts."""
    db = pytester.path / ".ledger" / "framework.db"
    (run,) = queries.list_runs(db)
    return run, queries.get_run_steps(db, run["run_id"])


def by_step(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["step_id"], []).append(row)
    return found


def log_path(run_dir: Path, step_id: str, attempt: int = 1, stream: str = "stdout") -> Path:
    return run_dir / "steps" / step_id / f"attempt-{attempt}.{stream}.log"


def log(run: dict[str, Any], step_id: str, attempt: int = 1, stream: str = "stdout") -> str:
    return log_path(Path(run["run_dir"]), step_id, attempt, stream).read_text()


def span(text: str) -> tuple[float, float]:
    """The ``start``/``end`` stamps a STAMPED step printed."""
    stamps = dict(line.split() for line in text.splitlines() if line.startswith(("start ", "end ")))
    return float(stamps["start"]), float(stamps["end"])


def wait_for_text(path: Path, needle: str, timeout: float = 60.0) -> str:
    """The first line of ``path`` containing ``needle``, once the controller has written it."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if needle in line:
                    return line
        time.sleep(0.02)  # polls the controller's log; the interval sets no order
    raise AssertionError(f"{needle!r} never appeared in {path}")


def failure_section(output: str, step_id: str) -> str:
    """The text of pytest's failure section for ``step_id``: titled ``step <id>: <command>``, or, for a step
    whose worker was lost (xdist reports the crash), the section that says ``step '<id>' failed``."""
    __tracebackhide__ = True
    parts = re.split(r"^_+ (.+?) _+$", output, flags=re.MULTILINE)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        if title.startswith(f"step {step_id}:") or f"step '{step_id}' failed" in body:
            return body
    raise AssertionError(f"no failure section for step {step_id!r} in:\n{output}")


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
    # without the lock the two steps overlap: each has a worker to itself
    result = run_remote(
        pytester,
        [first, second],
        [sh("one", STAMPED, runs_on="a"), sh("two", STAMPED, runs_on="b")],
        *pinned,
        "--planrun-run-dir",
        "unlocked",
    )
    result.assert_outcomes(passed=2)
    unlocked = pytester.path / "unlocked"
    assert overlap(*(span(log_path(unlocked, name).read_text()) for name in ("one", "two")))
    steps = [sh("one", STAMPED, locks=["db"], runs_on="a"), sh("two", STAMPED, locks=["db"], runs_on="b")]
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
    script = 'echo "started on $PLANRUN_TEST_WORKER"; [ "$PLANRUN_ATTEMPT" -ge 2 ] || exec sleep 300'
    steps = [sh("long", script, retries=1), sh("after", "true", depends_on=["long"])]
    proc = start_remote(pytester, request, workers, steps, "--planrun-run-dir", str(run_dir))
    victim = lose_the_worker_of(run_dir, workers)
    out = finish(proc)
    assert proc.returncode == 0, out
    (survivor,) = [w for w in workers if w is not victim]
    assert log_path(run_dir, "long", 2).read_text() == f"started on {survivor.name}\n"
    run, rows = the_run(pytester)
    attempts = by_step(rows)
    first, second = attempts["long"]
    assert first["state"] == "failed" and "worker lost" in f"{first['error_log']} {first['reason']}"
    assert second["state"] == "succeeded" and second["worker"] != first["worker"]
    assert [row["state"] for row in attempts["after"]] == ["succeeded"]
    assert run["state"] == "succeeded"
    # nothing of the lost attempt goes on on the lost worker's machine (the controller cannot see it)
    assert processes_left(run["run_id"]) == []


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
