"""The safe-merge gate (plans/safe_merge.json) against a bare origin and clones in a temp dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PLAN = Path(__file__).resolve().parents[2] / "plans" / "safe_merge.json"  # -> the packaged plan


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, name: str, text: str, message: str) -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare origin with main (a passing test) and a clone to work in."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    for key, value in (("user.email", "dev@example.invalid"), ("user.name", "Dev")):
        git(seed, "config", key, value)
    commit(seed, "test_ok.py", "def test_ok():\n    assert True\n", "initial")
    commit(seed, "shared.txt", "base\n", "shared file")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


def clone(origin: Path, name: str) -> Path:
    repo = origin.parent / name
    git(origin.parent, "clone", "-q", str(origin), str(repo))
    for key, value in (("user.email", f"{name}@example.invalid"), ("user.name", name)):
        git(repo, "config", key, value)
    return repo


def push_feature(origin: Path, branch: str, name: str, text: str) -> None:
    work = clone(origin, f"author-{branch}")
    git(work, "checkout", "-q", "-b", branch)
    commit(work, name, text, f"work on {branch}")
    git(work, "push", "-q", "origin", branch)


def gate_command(branch: str, test_command: str) -> list[str]:
    # "--plan=": a separate value would become a rootdir candidate for pytest
    return [
        sys.executable,
        "-m",
        "pytest",
        f"--plan={PLAN}",
        "--var",
        f"BRANCH={branch}",
        "-p",
        "no:cacheprovider",
        "-rA",
        "--var",
        f"TEST_COMMAND={test_command}",
    ]


def gate(repo: Path, branch: str) -> subprocess.CompletedProcess[str]:
    tests = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    return subprocess.run(gate_command(branch, tests), cwd=repo, capture_output=True, text=True)


def remote_main(origin: Path) -> str:
    return git(origin, "rev-parse", "main")


def test_a_clean_merge_is_tested_and_pushed(origin: Path) -> None:
    push_feature(origin, "feature", "feature.txt", "new\n")
    repo = clone(origin, "dev")
    before = remote_main(origin)
    done = gate(repo, "feature")
    assert done.returncode == 0, done.stdout + done.stderr
    assert remote_main(origin) != before
    assert git(repo, "rev-parse", "HEAD") == remote_main(origin)
    assert "feature.txt" in git(origin, "ls-tree", "--name-only", "main")
    assert not list(repo.glob(".ledger/runs/*/merge-worktree"))
    assert "merge-worktree" not in git(repo, "worktree", "list")


def test_a_conflicting_merge_fails_naming_the_files_and_pushes_nothing(origin: Path) -> None:
    push_feature(origin, "feature", "shared.txt", "theirs\n")
    repo = clone(origin, "dev")
    commit(repo, "shared.txt", "ours\n", "local change")
    git(repo, "push", "-q", "origin", "HEAD:main")
    before = remote_main(origin)
    done = gate(repo, "feature")
    assert done.returncode == 1
    assert "conflicts in: shared.txt" in done.stdout
    assert remote_main(origin) == before
    assert "merge-worktree" not in git(repo, "worktree", "list")  # always() cleanup ran


def test_a_failing_test_command_blocks_the_push(origin: Path) -> None:
    push_feature(origin, "feature", "test_broken.py", "def test_broken():\n    assert False\n")
    repo = clone(origin, "dev")
    before = remote_main(origin)
    done = gate(repo, "feature")
    assert done.returncode == 1
    assert "the tests failed on the merged tree" in done.stdout
    assert remote_main(origin) == before
    assert git(repo, "rev-parse", "HEAD") == before  # the checkout did not move either
    assert "merge-worktree" not in git(repo, "worktree", "list")


def test_preflight_refuses_a_dirty_tree_and_a_missing_branch(origin: Path) -> None:
    repo = clone(origin, "dev")
    done = gate(repo, "no-such-branch")
    assert done.returncode == 1 and "does not exist on remote" in done.stdout
    (repo / "shared.txt").write_text("dirty\n")
    push_feature(origin, "feature", "feature.txt", "x\n")
    done = gate(repo, "feature")
    assert done.returncode == 1 and "uncommitted changes" in done.stdout


def test_two_gates_racing_to_push_are_serialized(origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANRUN_LOCK_DIR", str(tmp_path / "locks"))
    push_feature(origin, "one", "one.txt", "1\n")
    push_feature(origin, "two", "two.txt", "2\n")
    repos = [clone(origin, "dev1"), clone(origin, "dev2")]
    procs = [
        subprocess.Popen(
            gate_command(branch, "true"),
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for repo, branch in zip(repos, ("one", "two"), strict=True)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    tree = git(origin, "ls-tree", "--name-only", "main")
    # both end correctly: either both merged (one after the other), or the later one saw main move
    # and pushed nothing, saying so
    if codes == [0, 0]:
        assert "one.txt" in tree and "two.txt" in tree
    else:
        assert codes == [0, 1], outputs
        assert ("one.txt" in tree) != ("two.txt" in tree)
        assert any("moved while the gate ran" in out for out in outputs), outputs


def test_the_demo_runs_the_gate_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_planrun.cli", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 passed" in done.stdout and "push PASSED" in done.stdout
