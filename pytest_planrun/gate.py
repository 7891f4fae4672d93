"""The safe-merge gate's steps (``python -m pytest_planrun.gate STEP``), called by plans/safe_merge.json.

Each step is a small git operation that prints what it found and exits non-zero when the gate must
stop. The merge is tried and tested in a temporary worktree under the run directory first, so the
user's checkout only moves (fast-forward) to a merge that merged cleanly and passed the tests, and a
push happens only under the ``push`` lock and only if the target did not move meanwhile.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


class GateError(Exception):
    """The gate must stop here; the message says why."""


def git(*args: str, cwd: str | Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise GateError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def run_dir() -> Path:
    return Path(os.environ.get("PLANRUN_RUN_DIR", ".planrun-gate"))


def worktree() -> Path:
    return run_dir() / "merge-worktree"


def target_branch(given: str) -> str:
    if given:
        return given
    branch = git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    if branch == "HEAD":
        raise GateError("the checkout is on a detached HEAD; pass --var TARGET=<branch>")
    return branch


def preflight(args: argparse.Namespace) -> None:
    git("rev-parse", "--git-dir")
    dirty = [line for line in git("status", "--porcelain", "--untracked-files=no").stdout.splitlines() if line]
    if dirty:
        raise GateError("the working tree has uncommitted changes:\n" + "\n".join(dirty))
    target = target_branch(args.target)
    found = git("ls-remote", "--exit-code", "--heads", args.remote, args.branch, check=False)
    if found.returncode != 0:
        raise GateError(f"branch '{args.branch}' does not exist on remote '{args.remote}'")
    print(f"clean working tree on '{target}'; '{args.remote}/{args.branch}' exists")


def fetch(args: argparse.Namespace) -> None:
    git("fetch", args.remote, f"+refs/heads/{args.branch}:refs/remotes/{args.remote}/{args.branch}")
    print(f"fetched {args.remote}/{args.branch}")


def trial_merge(args: argparse.Namespace) -> None:
    """Merge in a temporary worktree; on conflicts, list the conflicted files and stop."""
    tree = worktree()
    if tree.exists():
        git("worktree", "remove", "--force", str(tree), check=False)
    git("worktree", "add", "--detach", str(tree), "HEAD")
    merged = git("merge", "--no-ff", "--no-edit", f"{args.remote}/{args.branch}", cwd=tree, check=False)
    if merged.returncode != 0:
        conflicted = git("diff", "--name-only", "--diff-filter=U", cwd=tree, check=False).stdout.split()
        report = run_dir() / "conflicts.txt"
        report.write_text("\n".join(conflicted) + "\n")
        git("merge", "--abort", cwd=tree, check=False)
        if conflicted:
            raise GateError(f"merging {args.remote}/{args.branch} conflicts in: {', '.join(conflicted)}")
        raise GateError(f"merge failed: {merged.stdout.strip()} {merged.stderr.strip()}")
    head = git("rev-parse", "HEAD", cwd=tree).stdout.strip()
    (run_dir() / "merge-commit").write_text(head + "\n")
    print(f"merged {args.remote}/{args.branch} cleanly in {tree}: {head}")


def test_command(given: str, tree: Path) -> str:
    if given:
        return given
    if (tree / ".ci" / "run").exists():
        return "bash .ci/run"
    return f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"


def test_merged(args: argparse.Namespace) -> None:
    tree = worktree()
    command = test_command(args.test_command, tree)
    print(f"running '{command}' in {tree}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANRUN_")}  # a nested run is its own
    done = subprocess.run(command, shell=True, cwd=tree, env=env)
    if done.returncode != 0:
        raise GateError(f"the tests failed on the merged tree (exit code {done.returncode}); nothing is merged")


def merge(args: argparse.Namespace) -> None:
    commit = (run_dir() / "merge-commit").read_text().strip()
    git("merge", "--ff-only", commit)
    print(f"'{target_branch(args.target)}' is now at the tested merge {commit}")


def push(args: argparse.Namespace) -> None:
    """Push the tested merge, only if the target did not move since (else rerun the gate)."""
    target = target_branch(args.target)
    git("fetch", args.remote, f"+refs/heads/{target}:refs/remotes/{args.remote}/{target}", check=False)
    remote_ref = f"refs/remotes/{args.remote}/{target}"
    if git("rev-parse", "--verify", "--quiet", remote_ref, check=False).returncode == 0:
        ancestor = git("merge-base", "--is-ancestor", remote_ref, "HEAD", check=False)
        if ancestor.returncode != 0:
            raise GateError(f"'{args.remote}/{target}' moved while the gate ran; nothing pushed, run the gate again")
    git("push", args.remote, f"HEAD:refs/heads/{target}")
    print(f"pushed {target} to {args.remote}")


def cleanup(args: argparse.Namespace) -> None:
    tree = worktree()
    if tree.exists():
        git("worktree", "remove", "--force", str(tree), check=False)
    git("worktree", "prune", check=False)
    print(f"removed {tree}" if not tree.exists() else f"could not remove {tree}")


STEPS = {
    "preflight": preflight,
    "fetch": fetch,
    "trial-merge": trial_merge,
    "test": test_merged,
    "merge": merge,
    "push": push,
    "cleanup": cleanup,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_planrun.gate", description=__doc__)
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--branch", default="")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--target", default="", help="Branch to merge into (default: the checked-out one)")
    parser.add_argument("--test-command", default="")
    args = parser.parse_args(argv)
    try:
        STEPS[args.step](args)
    except GateError as error:
        print(f"safe-merge gate: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
