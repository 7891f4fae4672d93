"""Conditions, resources and locks in real runs, serial and with xdist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from planhelpers import sh, stamped, stamps, step

from conftest import RunPlan


def test_each_status_function_and_outcome_expression(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    result = run_plan(
        [
            sh("build", "exit 1", on_failure="skip_dependents"),
            step("on_success", "touch", "success.ran", depends_on=["build"], condition="success()"),
            step("on_failure", "touch", "failure.ran", depends_on=["build"], condition="failure()"),
            step("on_always", "touch", "always.ran", depends_on=["build"], condition="always()"),
            step("on_cancel", "touch", "cancel.ran", depends_on=["build"], condition="cancelled()"),
            step(
                "by_outcome",
                "touch",
                "outcome.ran",
                depends_on=["build"],
                condition="always() && steps.build.outcome == 'failure'",
            ),
            step("by_var", "touch", "var.ran", condition="vars.BRANCH == 'main'"),
            step("by_other_var", "touch", "other.ran", condition="vars.BRANCH != 'main'"),
        ],
        "-rs",
        *mode,
        "--var",
        "BRANCH=main",
    )
    result.assert_outcomes(failed=1, passed=4, skipped=3)
    ran = sorted(p.name for p in pytester.path.glob("*.ran"))
    assert ran == ["always.ran", "failure.ran", "outcome.ran", "var.ran"]
    result.stdout.fnmatch_lines(["*condition false: success()*"])
    result.stdout.fnmatch_lines(["*condition false: vars.BRANCH != 'main'*"])


def test_cleanup_runs_after_an_abort(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    result = run_plan(
        [
            step("setup", "touch", "worktree"),
            sh("work", "exit 1", depends_on=["setup"]),
            step("publish", "touch", "published", depends_on=["work"]),
            step("cleanup", "rm", "worktree", depends_on=["work"], condition="always()"),
        ],
        "-rs",
        *mode,
    )
    result.assert_outcomes(failed=1, passed=2, skipped=1)
    assert not (pytester.path / "worktree").exists()
    assert not (pytester.path / "published").exists()
    result.stdout.fnmatch_lines(["*cancelled: 'work' failed (abort)*"])


def test_a_bad_condition_is_a_usage_error_with_its_column(run_plan: RunPlan) -> None:
    result = run_plan([step("a", "true"), step("b", "true", depends_on=["a"], condition="success() &&& failure()")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*plan.json: step 'b', field 'condition': unexpected '&' at column 13*"])
    result = run_plan([step("a", "true", condition="steps.nope.outcome == 'success'")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown step 'nope'*"])


def test_a_consumer_reads_the_file_its_provider_wrote(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    # Resources are files under the run directory, which every step sees as $PLANRUN_RUN_DIR.
    result = run_plan(
        [
            sh("produce", 'echo "built 42" > "$PLANRUN_RUN_DIR/artifact.txt"', provides=["artifact"]),
            sh(
                "consume",
                'cp "$PLANRUN_RUN_DIR/artifact.txt" received.txt',
                depends_on=["produce"],
                consumes=["artifact"],
            ),
        ],
        *mode,
    )
    result.assert_outcomes(passed=2)
    assert (pytester.path / "received.txt").read_text() == "built 42\n"


def test_a_consumed_resource_needs_an_upstream_provider(run_plan: RunPlan) -> None:
    result = run_plan([step("p", "true", provides=["r"]), step("c", "true", consumes=["r"])])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*step 'c'*consumes*'r'*"])


def test_lock_holders_never_overlap_within_a_run(
    run_plan: RunPlan, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANRUN_LOCK_DIR", str(tmp_path))
    # The lock holder waits until the free step has started: were the free step held up behind the lock,
    # the holder would time out instead of passing (no timing luck either way, however late workers come).
    wait_for_free = "until [ -e free-started ]; do sleep 0.02; done; sleep 0.3"
    steps = [stamped(f"push{i}", wait_for_free, locks=["push"], timeout_sec=60) for i in range(3)]
    steps.append(stamped("free", "touch free-started; sleep 0.3"))
    result = run_plan(steps, "-n", "3")
    result.assert_outcomes(passed=4)
    t = stamps(pytester.path)
    pushes = sorted(t[f"push{i}"] for i in range(3))
    assert all(a[1] <= b[0] for a, b in zip(pushes, pushes[1:], strict=False))
    assert any(t["free"][0] < p[1] and p[0] < t["free"][1] for p in pushes)  # not held up by the lock


def test_lock_excludes_two_concurrent_runs(
    pytester: pytest.Pytester, write_plan: Callable[..., Path], tmp_path: Path
) -> None:
    env = {**os.environ, "PLANRUN_LOCK_DIR": str(tmp_path)}
    for name in ("one", "two"):
        (pytester.path / name).mkdir()
        doc = {
            "plan_id": name,
            "version": "1",
            "globals": {"max_concurrency": 1},
            "steps": [stamped("push", "sleep 0.5", locks=["push"])],
        }
        (pytester.path / name / "plan.json").write_text(json.dumps(doc))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "--plan", "plan.json", "-q", "-p", "no:cacheprovider"],
            cwd=pytester.path / name,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in ("one", "two")
    ]
    outs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    a, b = (stamps(pytester.path / name)["push"] for name in ("one", "two"))
    assert a[1] <= b[0] or b[1] <= a[0]


def test_a_lock_wait_counts_toward_the_timeout_and_a_lock_survives_no_timeout(
    run_plan: RunPlan, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    monkeypatch.setenv("PLANRUN_LOCK_DIR", str(tmp_path))
    with FileLock(str(tmp_path / "push.lock")):  # another run holds the lock
        result = run_plan([step("push", "true", locks=["push"], timeout_sec=1)])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 1 s waiting for lock 'push'*"])
    # a step that timed out while holding the lock released it
    result = run_plan(
        [sh("hold", "sleep 30", locks=["push"], timeout_sec=1), step("next", "true", locks=["push"])],
        "-n",
        "2",
        max_concurrency=2,
    )
    result.assert_outcomes(failed=1, skipped=1)
    lock = FileLock(str(tmp_path / "push.lock"))
    lock.acquire(timeout=5)
    lock.release()


@pytest.mark.parametrize("victim", ["step", "worker"])
def test_a_lock_is_released_when_its_holder_is_killed(
    run_plan: RunPlan, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    from filelock import FileLock

    monkeypatch.setenv("PLANRUN_LOCK_DIR", str(tmp_path))
    # SIGKILL of the step's own process, or of the xdist worker holding the OS lock for it
    target, args = ("$$", []) if victim == "step" else ("$PPID", ["-n", "2"])
    result = run_plan(
        [
            sh("holder", f"kill -9 {target}; sleep 30", locks=["push"], on_failure="continue"),
            stamped("next", locks=["push"], depends_on=["holder"]),
        ],
        *args,
    )
    result.assert_outcomes(failed=1, passed=1)
    if victim == "worker":
        result.stdout.fnmatch_lines(["*worker lost*"])
    lock = FileLock(str(tmp_path / "push.lock"))
    lock.acquire(timeout=5)  # nobody holds it any more
    lock.release()
