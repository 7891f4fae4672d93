"""The gate's state file: what the checkout was before the trial merge, who holds it, how to put it back.

``<git dir>/planrun-gate.json`` is written (atomically, and only if absent: it is also the lock that
keeps a second gate off the same checkout) before the gate moves anything, updated as the gate goes
on, and removed once the checkout is back as it was or on the pushed merge. A run killed outright
(SIGKILL) leaves it behind; the next gate's preflight sees that its owner is dead and restores.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from .git import Checkout, GateError

STATE_FILE = "planrun-gate.json"

Phase = Literal["merging", "merged", "pushed"]


def run_id() -> str:
    """This gate run's id: the plan run's, or one per calling shell when a step is run by hand."""
    return os.environ.get("PLANRUN_RUN_ID") or f"manual-{os.getppid()}"


def owner() -> tuple[int, float]:
    """The process the gate belongs to: the step's parent, which lives as long as the plan run
    (the pytest controller, or the xdist worker running the steps)."""
    pid = os.getppid()
    try:
        return pid, psutil.Process(pid).create_time()
    except psutil.Error:
        return pid, 0.0


@dataclass(frozen=True, slots=True)
class GateState:
    run_id: str
    owner_pid: int
    owner_started: float  # with the pid, tells the owner from a later process given the same pid
    remote: str
    branch: str
    target: str
    original_branch: str | None  # None: the checkout was on a detached HEAD
    original_head: str
    base: str  # the target branch's commit the merge is made on
    fetched: str  # the remote branch's commit that is merged
    status: list[str] = field(default_factory=list)  # `git status --porcelain` before the gate
    orig_head: str | None = None  # the ORIG_HEAD the merge overwrites
    merge: str | None = None
    phase: Phase = "merging"
    since: float = field(default_factory=time.time)

    @property
    def where(self) -> str:
        return f"'{self.original_branch}'" if self.original_branch else "a detached HEAD"

    def owner_alive(self) -> bool:
        try:
            owner = psutil.Process(self.owner_pid)
            return bool(owner.status() != psutil.STATUS_ZOMBIE and abs(owner.create_time() - self.owner_started) < 1.0)
        except psutil.Error:
            return False

    def describe_owner(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"gate run {self.run_id} (pid {self.owner_pid}, since {started})"


def state_path(repo: Checkout) -> Path:
    return repo.git_dir / STATE_FILE


def load(repo: Checkout) -> GateState | None:
    path = state_path(repo)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise GateError(
            f"cannot read the gate's state file {path}: {error}; remove it once the checkout is right"
        ) from None
    return GateState(**data)


def save(repo: Checkout, state: GateState) -> None:
    path = state_path(repo)
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(state), indent=1) + "\n")
    os.replace(temporary, path)


def forget(repo: Checkout) -> None:
    state_path(repo).unlink(missing_ok=True)


def claim(repo: Checkout, state: GateState) -> None:
    """Write the state file if there is none: the checkout is this run's until it is removed."""
    path = state_path(repo)
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(state), indent=1) + "\n")
    try:
        os.link(temporary, path)  # atomic and exclusive: the lock
    except FileExistsError:
        held = load(repo)
        raise GateError(
            f"another {held.describe_owner() if held else 'gate run'} holds this checkout ({path})"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)


def mine(repo: Checkout, step: str) -> GateState:
    """The state file of this run, which the steps after the trial merge need."""
    state = load(repo)
    if state is None:
        raise GateError(
            f"no trial merge of this run is checked out (no {state_path(repo)}): '{step}' needs the "
            "steps before it in the same run; run the whole gate again"
        )
    if state.run_id != run_id():
        raise GateError(f"the checkout is held by another {state.describe_owner()}, not by this run")
    return state


def _status_notes(before: list[str], after: list[str]) -> list[str]:
    """The gate never deletes files it did not make; it says what the tests left or removed."""
    notes = []
    added = [line for line in after if line not in set(before)]
    gone = [line for line in before if line not in set(after)]
    if added:
        notes.append("warning: left in place, not there before the gate (the tests made them?): " + ", ".join(added))
    if gone:
        notes.append("warning: gone since the gate started (the tests removed them?): " + ", ".join(gone))
    return notes


def roll_back(repo: Checkout, state: GateState) -> list[str]:
    """Put the checkout back where the state file says it was, then remove the file.

    Only what the gate changed is undone: an unfinished merge is aborted, tracked files and HEAD go
    back to the original branch (``checkout --force``: the tree was clean when the gate began, so any
    change to a tracked file is the merge's or the tests'). Untracked files are never deleted.
    """
    if (repo.git_dir / "MERGE_HEAD").exists():
        repo.git("merge", "--abort", check=False)
    notes = []
    if state.original_branch is not None:
        now = repo.rev(f"refs/heads/{state.original_branch}")
        if now is None:
            raise GateError(f"branch '{state.original_branch}' no longer exists; the checkout is left on {repo.head()}")
        if now != state.original_head:
            notes.append(f"warning: '{state.original_branch}' was moved during the gate (to {now}), not by the gate")
        repo.git("checkout", "--quiet", "--force", state.original_branch)
    else:
        repo.git("checkout", "--quiet", "--force", "--detach", state.original_head)
    _put_orig_head(repo, state.orig_head)
    notes += _status_notes(state.status, repo.status())
    forget(repo)
    return notes


def finish(repo: Checkout, state: GateState) -> list[str]:
    """After the push: the target branch takes the pushed merge (compare-and-swap from the commit the
    merge was made on) and is checked out; then the state file goes."""
    assert state.merge is not None
    message = f"planrun gate: merge {state.remote}/{state.branch} (run {state.run_id})"
    moved = repo.git("update-ref", "-m", message, f"refs/heads/{state.target}", state.merge, state.base, check=False)
    if moved.returncode != 0:
        now = repo.rev(f"refs/heads/{state.target}")
        notes = roll_back(repo, state)
        return [
            f"warning: '{state.target}' was moved during the gate (to {now}), not by the gate: it is left "
            f"there; the pushed merge is {state.merge} ({state.remote}/{state.target})",
            *notes,
        ]
    repo.git("checkout", "--quiet", state.target)
    forget(repo)
    return []


def pushed(repo: Checkout, state: GateState) -> bool:
    """Whether the merge reached the remote: the state says so, or the push updated the remote-tracking
    ref before the step could write it down (killed in between)."""
    if state.phase == "pushed":
        return True
    return state.merge is not None and repo.rev(f"refs/remotes/{state.remote}/{state.target}") == state.merge


def settle(repo: Checkout, state: GateState) -> list[str]:
    """Whatever point a gate run stopped at: finish a pushed merge, undo anything else."""
    return finish(repo, state) if pushed(repo, state) else roll_back(repo, state)


def _put_orig_head(repo: Checkout, value: str | None) -> None:
    """``git merge`` sets ORIG_HEAD; a merge that did not happen must not change it."""
    if value is None:
        repo.git("update-ref", "-d", "ORIG_HEAD", check=False)
    else:
        repo.git("update-ref", "--no-deref", "ORIG_HEAD", value, check=False)
