"""Files handed between steps (``provides`` with a path) in real runs, serial and with local xdist
workers; remote workers are tested in tests/remote/."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from planhelpers import ledger_of, sh

from conftest import RunPlan
from pytest_planrun.ledger import queries


def run_dir_of(root: Path) -> Path:
    (run,) = (root / ".ledger" / "runs").iterdir()
    return run


def test_a_consumer_in_another_folder_gets_the_file(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    for folder in ("make", "use"):
        (pytester.path / folder).mkdir()
    result = run_plan(
        [
            sh(
                "build",
                "mkdir -p dist && printf 'v1 %s' $PLANRUN_STEP_ID > dist/app.txt",
                cwd="make",
                provides=[{"name": "app", "path": "dist/app.txt"}, "announced"],
            ),
            sh(
                "ship",
                'cat dist/app.txt > got.txt && cat "$PLANRUN_RUN_DIR/provided/dist/app.txt" > kept.txt',
                cwd="use",
                depends_on=["build"],
                consumes=["app", "announced"],
            ),
        ],
        *mode,
    )
    result.assert_outcomes(passed=2)
    assert (pytester.path / "use" / "got.txt").read_text() == "v1 build"
    assert (pytester.path / "use" / "kept.txt").read_text() == "v1 build"
    kept = run_dir_of(pytester.path) / "provided" / "dist" / "app.txt"
    assert kept.read_text() == "v1 build"
    attempts, _ = ledger_of(pytester.path)
    assert [a["step_id"] for a in attempts] == ["build", "ship"]


def test_a_missing_declared_file_fails_its_producer(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    result = run_plan(
        [
            sh("build", "echo built", provides=[{"name": "app", "path": "dist/app.tgz"}]),
            sh("ship", "touch shipped", depends_on=["build"], consumes=["app"]),
        ],
        "-rfs",
        *mode,
    )
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*step 'build' failed: provides 'app': file dist/app.tgz not found in *"])
    assert not (pytester.path / "shipped").exists()
    stderr = (run_dir_of(pytester.path) / "steps" / "build" / "attempt-1.stderr.log").read_text()
    assert "provides 'app': file dist/app.tgz not found" in stderr


def test_a_file_above_the_limit_fails_its_producer(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [sh("build", "head -c 2048 /dev/zero > big.bin", provides=[{"name": "big", "path": "big.bin"}])],
        "--planrun-max-provided-mb=0.001",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*provides 'big': big.bin is 2048 bytes, above the limit of 1048 bytes*"])


def test_a_retried_producer_hands_on_its_last_file(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    # the first attempt writes the file and fails; the second writes another: the consumer gets the second
    script = "if [ -e tried ]; then echo second > out.txt; else touch tried; echo first > out.txt; exit 1; fi"
    result = run_plan(
        [
            sh("build", script, retries=1, provides=[{"name": "out", "path": "out.txt"}]),
            sh("check", 'cp "$PLANRUN_RUN_DIR/provided/out.txt" seen.txt', depends_on=["build"], consumes=["out"]),
        ],
        *mode,
    )
    assert result.parseoutcomes() == {"passed": 2, "rerun": 1}
    assert (pytester.path / "seen.txt").read_text() == "second\n"


def test_runs_on_without_a_fitting_worker_is_a_usage_error(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    plan = [sh("gpu", "touch ran", runs_on=["gpu", "linux"])]
    result = run_plan(plan, *mode)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "step 'gpu': runs_on ['gpu', 'linux'] matches no worker" in result.stderr.str()
    assert not (pytester.path / "ran").exists()
    worker = "gw1" if mode else "main"
    result = run_plan(plan, *mode, f"--planrun-worker-label={worker}=linux,gpu")
    result.assert_outcomes(passed=1)
    attempts, _ = ledger_of(pytester.path)
    assert [(a["step_id"], a["worker"]) for a in attempts] == [("gpu", worker)]


def test_a_provided_file_is_kept_whole_in_the_run_dir(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan([sh("build", "printf abc > a.bin", provides=[{"name": "a", "path": "a.bin"}])])
    result.assert_outcomes(passed=1)
    kept = run_dir_of(pytester.path) / "provided" / "a.bin"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert not list(kept.parent.glob(".*.part"))


def test_the_ledger_records_what_was_provided(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    result = run_plan([sh("build", "printf abc > a.bin", provides=[{"name": "a", "path": "a.bin"}])], *mode)
    result.assert_outcomes(passed=1)
    _, events = ledger_of(pytester.path)
    (provided,) = [e["data"] for e in events if e["event_type"] == "step_provided"]
    sha = hashlib.sha256(b"abc").hexdigest()
    assert provided["files"] == [{"name": "a", "path": "a.bin", "size": 3, "sha256": sha}]


def test_planrun_show_lists_what_a_step_provided(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan([sh("build", "printf abc > a.bin", provides=[{"name": "a", "path": "a.bin"}])])
    result.assert_outcomes(passed=1)
    (run,) = queries.list_runs(pytester.path / ".ledger" / "framework.db")
    shown = subprocess.run(
        [sys.executable, "-m", "pytest_planrun.cli", "show", run["run_id"]],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sha = hashlib.sha256(b"abc").hexdigest()
    assert f"provided a: a.bin (3 bytes, sha256 {sha})" in shown
