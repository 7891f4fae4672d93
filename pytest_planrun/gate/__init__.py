"""The safe-merge gate's steps (``python -m pytest_planrun.gate STEP``), run by the packaged plan safe_merge.json.

Design: the trial merge happens in the user's own checkout, not in a separate worktree. After the
preflight has found the working tree clean, the gate detaches HEAD at the target branch, merges
``<remote>/<branch>`` there (``Merge origin/feature into main``, with the run id as a trailer), runs
the tests on that checkout, pushes that very commit, and only then moves the target branch to it.

Why not a temporary worktree (the earlier design): the tests must import the merged code, and what
``import pkg`` resolves to is decided by the project's environment, not by the directory the tests
run in. A package installed editable (``pip install -e .``, src or flat layout) resolves to the
user's checkout; a ``TEST_COMMAND`` such as ``bash .ci/run`` may use the checkout's untracked
``.venv`` or other relative paths that a fresh worktree lacks. A worktree-based gate therefore
tested the pre-merge code and pushed a branch that broke 40 tests. Testing in the checkout itself is
right for every install mode with no knowledge of it; a disposable environment per run would also be
right but costs a full install of the project and its dependencies on every run.

The price is that the gate moves the user's checkout while it runs, so putting it back is part of
the design (the ``state`` module):
- before anything moves, the trial merge writes ``<git dir>/planrun-gate.json`` (original branch and
  HEAD, run id, owner pid), created exclusively: a second gate on the same checkout refuses;
- every step restores on its own failure path (a conflict: ``merge --abort``, back to the branch);
- SIGTERM/SIGINT (Ctrl-C, timeout, ``planrun cancel``: the plugin sends SIGTERM to the step's tree,
  then SIGKILL after its grace, 3 s by default) are trapped: the test tree, which runs in its own
  process group, is stopped within 1 s and the checkout restored;
- the ``cleanup`` step (``always()``) restores whenever the state file is still there and the push did
  not complete; the preflight of the next gate restores one left by a run killed outright (SIGKILL),
  whose owner is gone;
- the push is a plain one (no force): a remote target that moved since the fetch rejects it and
  nothing is pushed; the local target branch moves (``update-ref`` compare-and-swap) only after the
  push succeeded, so a failed push leaves it where it was.
After any failure the checkout is as before: same branch, same HEAD, same ``git status``; untracked
files the tests made are left in place and reported, never deleted.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from .git import GateError
from .steps import STEPS, Options

__all__ = ["GateError", "main"]


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived; a BaseException, so that only the restore paths see it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    # Once: the restore that follows must not be cut short by a second signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_planrun.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--branch", default="", help="Branch to merge, as it is named on the remote")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--target", default="", help="Branch to merge into (default: the checked-out one)")
    parser.add_argument("--test-command", default="", help="Default: bash .ci/run if present, else pytest")
    args = parser.parse_args(argv)
    options = Options(args.branch, args.remote, args.target, args.test_command)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        STEPS[args.step](options)
    except GateError as error:
        print(f"safe-merge gate: {error}", file=sys.stderr)
        return error.exit_code
    except Stopped as stopped:
        print(f"safe-merge gate: stopped by {stopped} during '{args.step}'", file=sys.stderr)
        return 128 + stopped.signum
    return 0
