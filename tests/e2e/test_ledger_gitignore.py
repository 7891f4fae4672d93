"""The ledger's directory ignores itself, as pytest's cache does: a run leaves ``git status`` as it was."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from planhelpers import sh

from pytest_planrun.ledger.directory import GITIGNORE, make_ledger_dir


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def repo(pytester: pytest.Pytester, write_plan: Callable[..., Path]) -> Path:
    """pytester's directory as a git repository whose only file, the plan, is committed."""
    root = pytester.path
    git(root, "init", "-q")
    git(root, "config", "user.email", "t@example.invalid")
    git(root, "config", "user.name", "t")
    # pytester's own files (the subprocess's output), not the run's
    (root / ".git" / "info" / "exclude").write_text("stdout\nstderr\nrunpytest-current\n")
    write_plan([sh("a", "echo out; echo err >&2"), sh("b", "exit 3", depends_on=["a"], critical=False)])
    git(root, "add", "plan.json")
    git(root, "commit", "-q", "-m", "plan")
    assert git(root, "status", "--porcelain") == ""
    return root


@pytest.mark.parametrize(
    "extra",
    [[], ["-n", "2"], ["--planrun-no-ledger"], ["--planrun-ledger", "records/db/ledger.db"]],
    ids=["serial", "xdist", "no-ledger", "ledger-elsewhere"],
)
def test_a_run_leaves_git_status_clean(pytester: pytest.Pytester, repo: Path, extra: list[str]) -> None:
    result = pytester.runpytest_subprocess("--plan", "plan.json", "-p", "no:cacheprovider", *extra)
    result.assert_outcomes(passed=1, xfailed=1)
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / ".ledger" / "runs").is_dir() or "--planrun-ledger" in extra  # the run did write there
    made = repo / ("records/db" if "--planrun-ledger" in extra else ".ledger")
    assert (made / ".gitignore").read_text() == GITIGNORE


def test_a_directory_that_exists_is_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    make_ledger_dir(tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []
    make_ledger_dir(tmp_path / "new" / "deeper")
    assert sorted(p.name for p in (tmp_path / "new" / "deeper").iterdir()) == [".gitignore"]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["deeper"]  # no staging directory left
    make_ledger_dir(tmp_path / "new" / "deeper")  # a second run: nothing changes
    assert (tmp_path / "new" / "deeper" / ".gitignore").read_text() == GITIGNORE
