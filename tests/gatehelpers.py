"""Helpers for the safe-merge gate's tests: throwaway git repositories (a bare origin, clones), the
gate run on one, and a snapshot of everything a gate could leave behind in the checkout or origin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PLAN = Path(__file__).resolve().parents[1] / "pytest_planrun" / "plans" / "safe_merge.json"
# the throwaway projects' tests need no plugin: without autoload their pytest starts in 0.3 s, not 1.5 s
DEFAULT_TESTS = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: Mapping[str, str | None], message: str) -> str:
    """Write (or with None, delete) files and commit them; the new commit's id."""
    for name, text in files.items():
        path = repo / name
        if text is None:
            git(repo, "rm", "-q", name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo, "add", "--force", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def clone(origin: Path, name: str) -> Path:
    repo = origin.parent / name
    git(origin.parent, "clone", "-q", str(origin), str(repo))
    for key, value in (("user.email", f"{name}@example.invalid"), ("user.name", name)):
        git(repo, "config", key, value)
    return repo


def make_origin(root: Path, files: Mapping[str, str]) -> Path:
    """A bare origin whose main holds ``files``."""
    bare = root / "origin.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = clone(bare, "seed")
    commit(seed, files, "initial")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


def push_branch(origin: Path, branch: str, files: Mapping[str, str | None]) -> str:
    """A branch off origin's main, changing ``files``, pushed; its commit."""
    work = clone(origin, f"author-{branch}")
    git(work, "checkout", "-q", "-b", branch)
    sha = commit(work, files, f"work on {branch}")
    git(work, "push", "-q", "origin", branch)
    return sha


def gate_env(root: Path) -> dict[str, str]:
    """The environment a user's shell would give: none of the outer test run's pytest or planrun
    variables; push locks private to the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLANRUN_", "PYTEST_"))}
    env["PLANRUN_LOCK_DIR"] = str(root / "locks")
    return env


def gate_command(
    root: Path,
    branch: str,
    *,
    python: str = sys.executable,
    test_command: str | None = DEFAULT_TESTS,
    variables: tuple[str, ...] = (),
) -> list[str]:
    """The gate as a user runs it in their checkout; the ledger lives outside the checkout."""
    command = [python, "-m", "pytest", f"--plan={PLAN}", "--var", f"BRANCH={branch}", "-p", "no:cacheprovider"]
    for variable in variables:
        command += ["--var", variable]
    command += [f"--planrun-ledger={root / 'ledger' / 'framework.db'}", "-rA"]
    if test_command is not None:
        command += ["--var", f"TEST_COMMAND={test_command}"]
    return command


@dataclass(frozen=True)
class GateRun:
    returncode: int
    output: str
    run_id: str
    run_dir: Path

    def log(self, step: str) -> str:
        """What a step printed (stdout then stderr of its first attempt)."""
        base = self.run_dir / "steps" / step
        return "".join((base / f"attempt-1.{s}.log").read_text() for s in ("stdout", "stderr"))


def finished(root: Path, returncode: int, output: str) -> GateRun:
    found = re.search(r"^planrun: run (\w+),", output, re.MULTILINE)
    assert found, output
    return GateRun(returncode, output, found.group(1), root / "ledger" / "runs" / found.group(1))


def gate(
    root: Path,
    repo: Path,
    branch: str,
    *,
    python: str = sys.executable,
    test_command: str | None = DEFAULT_TESTS,
    variables: tuple[str, ...] = (),
    timeout: float = 180,
) -> GateRun:
    done = subprocess.run(
        gate_command(root, branch, python=python, test_command=test_command, variables=variables),
        cwd=repo,
        env=gate_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return finished(root, done.returncode, done.stdout)


@dataclass(frozen=True)
class Snapshot:
    """Everything of the checkout and origin that a gate run must leave as it found it."""

    origin_refs: str
    head: str
    branch: str
    status: str
    worktrees: str  # each with its HEAD: the checkout's own line changes with it
    branches: str
    stashes: str
    local_refs: str  # all refs but the remote-tracking ones, which a fetch legitimately updates
    remote_ref_names: str
    git_dir_files: tuple[str, ...]  # planrun-gate.json, MERGE_HEAD...: none may be left

    @classmethod
    def take(cls, origin: Path, repo: Path) -> Snapshot:
        git_dir = Path(git(repo, "rev-parse", "--absolute-git-dir"))
        transient = ("planrun-gate.json", "MERGE_HEAD", "MERGE_MSG", "ORIG_HEAD", "AUTO_MERGE", "index.lock")
        return cls(
            origin_refs=git(origin, "for-each-ref", "--format=%(refname) %(objectname)"),
            head=git(repo, "rev-parse", "HEAD"),
            branch=subprocess.run(
                ["git", "symbolic-ref", "-q", "HEAD"], cwd=repo, capture_output=True, text=True
            ).stdout.strip(),
            status=git(repo, "status", "--porcelain"),
            worktrees=git(repo, "worktree", "list"),
            branches=git(repo, "branch", "--list", "-v"),
            stashes=git(repo, "stash", "list"),
            local_refs="\n".join(
                line
                for line in git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
                if not line.startswith("refs/remotes/")
            ),
            remote_ref_names=git(repo, "for-each-ref", "--format=%(refname)", "refs/remotes"),
            git_dir_files=tuple(sorted(name for name in transient if (git_dir / name).exists())),
        )
