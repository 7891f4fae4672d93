"""The safe-merge gate (the packaged safe_merge.json) against a bare origin and clones in a temp dir:
what it pushes, and that every way it can stop leaves origin and the checkout exactly as they were."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from gatehelpers import (
    DEFAULT_TESTS,
    Snapshot,
    clone,
    commit,
    finished,
    gate,
    gate_command,
    gate_env,
    git,
    make_origin,
    push_branch,
)

import pytest_planrun

PROJECT = {".gitignore": "__pycache__/\n", "test_ok.py": "def test_ok():\n    assert True\n", "shared.txt": "base\n"}


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare origin whose main has a passing test."""
    return make_origin(tmp_path, PROJECT)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The text of ``path`` once it appears (written by a test command)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the gate ended before {path} appeared:\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)
    return path.read_text().strip()


def start_gate(root: Path, repo: Path, branch: str, test_command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        gate_command(root, branch, test_command=test_command),
        cwd=repo,
        env=gate_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def parked(marker: Path) -> str:
    """A test command that says it runs (its pid, in ``marker``), then waits to be stopped."""
    return f"echo $$ > {marker}.tmp && mv {marker}.tmp {marker} && exec sleep 300"


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_clean_merge_is_tested_and_pushed(origin: Path, tmp_path: Path) -> None:
    feature = push_branch(origin, "feature", {"feature.txt": "new\n"})
    repo = clone(origin, "dev")
    before = Snapshot.take(origin, repo)
    done = gate(tmp_path, repo, "feature")
    assert done.returncode == 0, done.output
    merge = git(origin, "rev-parse", "main")
    assert git(origin, "log", "-1", "--format=%B", merge) == (
        f"Merge origin/feature into main\n\nPlanrun-Run-Id: {done.run_id}"
    )
    assert git(origin, "rev-list", "--parents", "--max-count=1", merge).split()[1:] == [before.head, feature]
    assert f"testing merge commit {merge}" in done.log("test_merged")
    # the checkout is on main, at the pushed merge, and nothing else changed
    after = Snapshot.take(origin, repo)
    assert (after.head, after.branch, git(repo, "rev-parse", "main")) == (merge, "refs/heads/main", merge)
    assert after.status == before.status and len(after.worktrees.splitlines()) == 1 and after.stashes == ""
    assert after.git_dir_files == ("ORIG_HEAD",)  # as a git merge leaves it; no state file


def test_from_another_branch_the_target_gets_the_merge_and_is_checked_out(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "feature", {"feature.txt": "new\n"})
    repo = clone(origin, "dev")
    git(repo, "checkout", "-q", "-b", "notes")
    commit(repo, {"notes.txt": "mine\n"}, "local notes")
    done = gate(tmp_path, repo, "feature", variables=("TARGET=main",))
    assert done.returncode == 0, done.output
    merge = git(origin, "rev-parse", "main")
    assert git(origin, "log", "-1", "--format=%s", merge) == "Merge origin/feature into main"
    assert "notes.txt" not in git(origin, "ls-tree", "--name-only", "main")
    assert (git(repo, "rev-parse", "HEAD"), git(repo, "symbolic-ref", "HEAD")) == (merge, "refs/heads/main")
    assert git(repo, "rev-parse", "notes") != merge  # the branch the gate started on is as it was


def test_a_conflicting_merge_fails_naming_the_files_and_changes_nothing(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "feature", {"shared.txt": "theirs\n"})
    repo = clone(origin, "dev")
    commit(repo, {"shared.txt": "ours\n"}, "local change")
    git(repo, "push", "-q", "origin", "HEAD:main")
    before = Snapshot.take(origin, repo)
    done = gate(tmp_path, repo, "feature")
    assert done.returncode == 1
    assert "merging origin/feature into main conflicts in: shared.txt" in done.output
    assert (done.run_dir / "conflicts.txt").read_text() == "shared.txt\n"
    assert Snapshot.take(origin, repo) == before


def test_failing_tests_block_the_push_and_the_checkout_is_put_back(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "feature", {"test_broken.py": "def test_broken():\n    assert False\n"})
    repo = clone(origin, "dev")
    before = Snapshot.take(origin, repo)
    # the tests leave a file of their own behind: reported, never deleted
    done = gate(tmp_path, repo, "feature", test_command=f"{DEFAULT_TESTS}; code=$?; echo x > made.txt; exit $code")
    assert done.returncode == 1
    assert "the tests failed on the merged tree (exit code 1); nothing is merged" in done.output
    assert "1 failed, 1 passed" in done.log("test_merged")
    assert "left in place, not there before the gate (the tests made them?): ?? made.txt" in done.log("test_merged")
    assert (repo / "made.txt").exists() and not (repo / "test_broken.py").exists()
    assert Snapshot.take(origin, repo) == replace(before, status="?? made.txt")


def test_preflight_refuses_a_missing_branch_and_a_dirty_tree(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "feature", {"feature.txt": "x\n"})
    repo = clone(origin, "dev")
    before = Snapshot.take(origin, repo)
    done = gate(tmp_path, repo, "no-such-branch")
    assert done.returncode == 1 and "branch 'no-such-branch' does not exist on remote 'origin'" in done.output
    assert Snapshot.take(origin, repo) == before
    (repo / "shared.txt").write_text("dirty\n")
    before = Snapshot.take(origin, repo)
    done = gate(tmp_path, repo, "feature")
    assert done.returncode == 1 and "uncommitted changes" in done.output and "M shared.txt" in done.output
    assert Snapshot.take(origin, repo) == before


def test_fetch_tells_a_failing_remote_which_may_recover_from_a_refusal(origin: Path, tmp_path: Path) -> None:
    # the plan retries exit code 3 (git itself failed) with backoff, never a refusal (exit code 1)
    push_branch(origin, "feature", {"feature.txt": "x\n"})
    repo = clone(origin, "dev")

    def fetch(remote: str, branch: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pytest_planrun.gate", "fetch", "--branch", branch, "--remote", remote]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, env=gate_env(tmp_path))

    missing = fetch("origin", "no-such-branch")
    assert (missing.returncode, "does not exist on remote 'origin'" in missing.stderr) == (1, True)
    git(repo, "remote", "add", "gone", str(tmp_path / "no-such-origin.git"))
    unreachable = fetch("gone", "feature")
    assert (unreachable.returncode, "cannot read the branches of remote 'gone'" in unreachable.stderr) == (3, True)
    assert fetch("origin", "feature").returncode == 0
    plan = json.loads((Path(pytest_planrun.__file__).parent / "plans" / "safe_merge.json").read_text())
    (step,) = [s for s in plan["steps"] if s["id"] == "fetch"]
    assert 1 not in step["retry_on"] and 3 in step["retry_on"]


def test_an_ignored_file_the_merge_would_overwrite_stops_the_gate_before_anything_moves(tmp_path: Path) -> None:
    origin = make_origin(tmp_path, {**PROJECT, ".gitignore": "__pycache__/\nlocal.cfg\n"})
    push_branch(origin, "feature", {"local.cfg": "theirs\n"})
    repo = clone(origin, "dev")
    (repo / "local.cfg").write_text("mine\n")  # git would overwrite it, the restore delete it
    before = Snapshot.take(origin, repo)
    done = gate(tmp_path, repo, "feature")
    assert done.returncode == 1
    assert "that git does not track (ignored?): local.cfg" in done.output
    assert (repo / "local.cfg").read_text() == "mine\n"
    assert Snapshot.take(origin, repo) == before


def test_ctrl_c_during_the_tests_puts_the_checkout_back(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "feature", {"feature.txt": "new\n"})
    repo = clone(origin, "dev")
    before = Snapshot.take(origin, repo)
    marker = tmp_path / "tests-running"
    proc = start_gate(tmp_path, repo, "feature", parked(marker))
    try:
        tests = int(wait_for(marker, proc))
        assert git(repo, "rev-parse", "HEAD") != before.head  # the tests run on the merge, in the checkout
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, output  # pytest's "interrupted"
    assert gone(tests)
    run = finished(tmp_path, proc.returncode, output)
    assert "stopped by SIGTERM during 'test'" in run.log("test_merged")
    assert f"the checkout is back as it was: 'main' at {before.head}" in run.log("test_merged")
    assert Snapshot.take(origin, repo) == before


@pytest.mark.parametrize("when", ["during-the-tests", "at-the-push"])
def test_a_target_that_moves_during_the_gate_gets_nothing_pushed(origin: Path, tmp_path: Path, when: str) -> None:
    push_branch(origin, "feature", {"feature.txt": "new\n"})
    other = clone(origin, "other")
    theirs = commit(other, {"other.txt": "theirs\n"}, "pushed meanwhile")
    repo = clone(origin, "dev")
    push_theirs = f"git -C {other} push -q origin HEAD:main"
    test_command = DEFAULT_TESTS
    if when == "during-the-tests":  # the merge step sees it
        test_command = f"{push_theirs} && {DEFAULT_TESTS}"
    else:  # the server rejects the push: the remote moved after the last check
        hook = Path(git(repo, "rev-parse", "--absolute-git-dir")) / "hooks" / "pre-push"
        hook.write_text(f"#!/bin/sh\n{push_theirs}\n")
        hook.chmod(0o755)
    before = Snapshot.take(origin, repo)
    done = gate(tmp_path, repo, "feature", test_command=test_command)
    assert done.returncode == 1, done.output
    assert "'origin/main' moved while the gate ran" in done.output and "nothing is pushed" in done.output
    if when == "at-the-push":
        assert "[remote rejected]" in done.log("push")  # its compare-and-swap on the ref failed
    assert git(origin, "rev-parse", "main") == theirs  # theirs, not ours on top or instead
    expected_origin = before.origin_refs.replace(before.head, theirs)
    assert Snapshot.take(origin, repo) == replace(before, origin_refs=expected_origin)


def test_a_second_gate_on_a_busy_checkout_refuses_and_a_killed_gate_is_recovered(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "feature", {"feature.txt": "new\n"})
    repo = clone(origin, "dev")
    before = Snapshot.take(origin, repo)
    marker = tmp_path / "tests-running"
    first = start_gate(tmp_path, repo, "feature", parked(marker))
    try:
        tests = psutil.Process(int(wait_for(marker, first)))
        busy = git(repo, "rev-parse", "HEAD")
        second = gate(tmp_path, repo, "feature")
        assert second.returncode == 1
        assert "is using this checkout" in second.log("preflight")
        assert "held by another gate run" in second.log("cleanup")  # and left alone
        assert git(repo, "rev-parse", "HEAD") == busy
        # SIGKILL: nothing of the first gate can restore anything
        for process in (psutil.Process(first.pid), tests.parent(), tests):
            assert process is not None
            process.kill()
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert Snapshot.take(origin, repo).git_dir_files == ("ORIG_HEAD", "planrun-gate.json")
    third = gate(tmp_path, repo, "feature")
    assert third.returncode == 0, third.output
    preflight = third.log("preflight")
    assert "ended without restoring the checkout" in preflight
    assert f"the checkout is back as it was: 'main' at {before.head}" in preflight
    merge = git(origin, "rev-parse", "main")
    assert git(origin, "rev-list", "--parents", "--max-count=1", merge).split()[1] == before.head
    assert third.run_id in git(origin, "log", "-1", "--format=%B", merge)


def test_two_gates_racing_to_push_are_serialized(origin: Path, tmp_path: Path) -> None:
    push_branch(origin, "one", {"one.txt": "1\n"})
    push_branch(origin, "two", {"two.txt": "2\n"})
    repos = [clone(origin, "dev1"), clone(origin, "dev2")]
    before = [Snapshot.take(origin, repo) for repo in repos]
    procs = [start_gate(tmp_path, repo, branch, "true") for repo, branch in zip(repos, ("one", "two"), strict=True)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    tree = git(origin, "ls-tree", "--name-only", "main")
    # both end correctly: either both merged (one after the other), or the later one saw main move —
    # while it ran (at the push), or before it began (its fetch finds origin/main ahead of its main) —
    # pushed nothing, said so and put its checkout back
    if codes == [0, 0]:
        assert "one.txt" in tree and "two.txt" in tree
    else:
        assert sorted(codes) == [0, 1], outputs
        assert ("one.txt" in tree) != ("two.txt" in tree)
        loser = codes.index(1)
        said = outputs[loser]
        assert "moved while the gate ran" in said or "does not contain 'origin/main'" in said, outputs
        after = Snapshot.take(origin, repos[loser])
        assert replace(after, origin_refs="") == replace(before[loser], origin_refs="")


def test_the_demo_runs_the_gate_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_planrun.cli", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 passed" in done.stdout and "push PASSED" in done.stdout
