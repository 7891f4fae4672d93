"""The git commands the gate runs on the user's checkout, each one a function that says what it found.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


class GateError(Exception):
    """The gate must stop here; the message says why and, where it helps, what to do."""

    exit_code = 1  # a refusal: running the step again gives the same answer


class GitFailed(GateError):
    """A git command itself failed (a network, a lock, a server): trying again may help, so the step
    exits with its own code, which the plan's ``retry_on`` lists for the steps that talk to the remote."""

    exit_code = 3


# Operations that leave the checkout half-way; the gate starts only when none is under way, so a
# MERGE_HEAD it finds later is its own.
IN_PROGRESS = {
    "MERGE_HEAD": "a merge",
    "CHERRY_PICK_HEAD": "a cherry-pick",
    "REVERT_HEAD": "a revert",
    "rebase-merge": "a rebase",
    "rebase-apply": "a rebase or git am",
    "BISECT_LOG": "a bisect",
}


@dataclass(frozen=True, slots=True)
class Checkout:
    """The user's repository as the gate sees it: its top level and its git directory."""

    top: Path
    git_dir: Path

    @classmethod
    def here(cls) -> Checkout:
        """The repository around the current directory (the directory pytest was started from)."""
        found = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir"], capture_output=True, text=True
        )
        if found.returncode != 0:
            raise GateError(f"not a git checkout: {os.getcwd()} ({found.stderr.strip()})")
        lines = found.stdout.splitlines()
        if len(lines) != 2:
            raise GateError(f"not a git checkout with a working tree: {os.getcwd()}")
        return cls(Path(lines[0]), Path(lines[1]))

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["git", *args], cwd=self.top, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip()).replace("\n", "\n  ")
            raise GitFailed(f"git {' '.join(args)} failed (exit code {done.returncode}):\n  {output}")
        return done

    def out(self, *args: str) -> str:
        return self.git(*args).stdout.strip()

    def rev(self, name: str) -> str | None:
        """The commit ``name`` points to, or None when there is no such ref."""
        done = self.git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def head(self) -> str:
        return self.out("rev-parse", "--verify", "HEAD")

    def branch(self) -> str | None:
        """The checked-out branch, or None on a detached HEAD."""
        done = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def tracked_changes(self) -> list[str]:
        """``git status`` lines of tracked files that differ from HEAD (staged, modified, unmerged)."""
        return [line for line in self.out("status", "--porcelain", "--untracked-files=no").splitlines() if line]

    def status(self) -> list[str]:
        """The ``git status --porcelain`` lines, untracked files and folders included (ignored ones not)."""
        return [line for line in self.git("status", "--porcelain").stdout.splitlines() if line]

    def in_progress(self) -> str | None:
        """What half-done operation the checkout is in (a merge, a rebase...), if any."""
        for name, what in IN_PROGRESS.items():
            if (self.git_dir / name).exists():
                return what
        return None

    def remote_heads(self, remote: str, *branches: str) -> dict[str, str]:
        """The commits of these branches on the remote (absent ones left out)."""
        refs = [f"refs/heads/{b}" for b in branches]
        done = self.git("ls-remote", "--heads", remote, *refs, check=False)
        if done.returncode not in (0, 2):
            raise GitFailed(f"cannot read the branches of remote '{remote}': {done.stderr.strip()}")
        found = {}
        for line in done.stdout.splitlines():
            commit, _, ref = line.partition("\t")
            found[ref] = commit
        return {b: found[r] for b, r in zip(branches, refs, strict=True) if r in found}

    def in_the_way(self, old: str, new: str) -> list[str]:
        """Files present in the working tree at paths that ``new`` adds to ``old``: untracked ones make
        git refuse, but ignored ones git overwrites, and the restore would then delete them."""
        added = self.out("diff", "--name-only", "--no-renames", "--diff-filter=A", "-z", old, new).split("\0")
        return [path for path in added if path and os.path.lexists(self.top / path)]
