"""The seven steps of the safe-merge gate, as the packaged plan ``safe_merge.json`` calls them.

Every step that runs after the state file exists undoes the gate's changes on its own failure path
(``restoring``); ``cleanup`` does it for a step that could not (killed outright).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..run.process import signal_group, stop_tree
from .git import Checkout, GateError
from .state import GateState, claim, finish, load, mine, owner, run_id, save, settle, state_path

STOP_GRACE = 1.0  # seconds the test tree gets between SIGTERM and SIGKILL: the runner's grace is 3 s


@dataclass(frozen=True, slots=True)
class Options:
    branch: str
    remote: str
    target: str
    test_command: str


def say(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)


def warn(*lines: str) -> None:
    if lines:
        print(*lines, sep="\n", file=sys.stderr, flush=True)


def target_branch(repo: Checkout, given: str) -> str:
    if given:
        return given
    branch = repo.branch()
    if branch is None:
        raise GateError("the checkout is on a detached HEAD; say which branch to merge into: --var TARGET=<branch>")
    return branch


def needs_branch(options: Options) -> str:
    if not options.branch:
        raise GateError("no branch to merge: --var BRANCH=<branch on the remote>")
    return options.branch


@contextmanager
def restoring(repo: Checkout) -> Iterator[None]:
    """On any failure inside (a git error, failing tests, SIGTERM), put the checkout back first."""
    try:
        yield
    except BaseException:
        # A signal arriving now waits until the checkout is back (the handler would cut the restore).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            state = load(repo)
            if state is not None and state.run_id == run_id():
                put_back(repo, state)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise


def put_back(repo: Checkout, state: GateState) -> None:
    """Settle a gate run's state file and say how the checkout ended; never raises."""
    try:
        notes = settle(repo, state)
    except GateError as error:
        warn(
            f"safe-merge gate: could not restore the checkout: {error}",
            f"the state is kept in {state_path(repo)}: the next gate run restores it in its preflight, "
            "or do it by hand (git merge --abort; git checkout --force "
            f"{state.original_branch or state.original_head})",
        )
        return
    warn(*notes)
    branch = repo.branch()
    if branch == state.target and repo.head() == state.merge:
        say(f"the merge {state.merge} was pushed; '{branch}' is checked out at it")
    else:
        say(f"the checkout is back as it was: {state.where} at {repo.head()}")


def recover_abandoned(repo: Checkout) -> None:
    """A state file whose owner is alive means another gate is using this checkout: refuse. One whose
    owner is dead was left by a run killed outright: restore the checkout, and say so."""
    state = load(repo)
    if state is None:
        return
    if state.run_id == run_id() or state.owner_alive():
        raise GateError(
            f"another {state.describe_owner()} is using this checkout (it holds {state_path(repo)}); "
            f"wait for it to end, or stop it with: planrun cancel {state.run_id}"
        )
    say(f"recovering: the {state.describe_owner()} ended without restoring the checkout (killed?)")
    put_back(repo, state)
    if load(repo) is not None:
        raise GateError("the checkout left by an earlier gate run could not be restored (see above)")


def preflight(options: Options) -> None:
    repo = Checkout.here()
    branch = needs_branch(options)
    recover_abandoned(repo)
    busy = repo.in_progress()
    if busy:
        raise GateError(f"the checkout is in the middle of {busy}: finish or abort it first")
    dirty = repo.tracked_changes()
    if dirty:
        listed = "\n  ".join(dirty)
        raise GateError(f"the working tree has uncommitted changes (commit or stash them first):\n  {listed}")
    target = target_branch(repo, options.target)
    if repo.rev(f"refs/heads/{target}") is None:
        raise GateError(f"there is no local branch '{target}' to merge into")
    if branch not in repo.remote_heads(options.remote, branch):
        raise GateError(f"branch '{branch}' does not exist on remote '{options.remote}'")
    where = f"'{repo.branch()}'" if repo.branch() else "a detached HEAD"
    say(f"clean working tree on {where}; '{options.remote}/{branch}' exists; it is merged into '{target}'")


def fetch(options: Options) -> None:
    """Fetch the branch and the target; the local target must contain the remote one (else the push
    could only fail): nothing has moved yet, so this is the cheap place to say so."""
    repo = Checkout.here()
    branch, remote = needs_branch(options), options.remote
    target = target_branch(repo, options.target)
    wanted = list(dict.fromkeys((branch, target)))
    refspec = {b: f"+refs/heads/{b}:refs/remotes/{remote}/{b}" for b in wanted}
    if repo.git("fetch", "--quiet", "--no-tags", remote, *refspec.values(), check=False).returncode != 0:
        # one connection when both exist; else find out which is missing (a new target is fine)
        heads = repo.remote_heads(remote, *wanted)
        if branch not in heads:
            raise GateError(f"branch '{branch}' does not exist on remote '{remote}'")
        repo.git("fetch", "--quiet", "--no-tags", remote, *(refspec[b] for b in wanted if b in heads))
        wanted = [b for b in wanted if b in heads]
    say(f"fetched {remote}/{branch} at {repo.rev(f'refs/remotes/{remote}/{branch}')}")
    local = repo.rev(f"refs/heads/{target}")
    if local is None:
        raise GateError(f"there is no local branch '{target}' to merge into")
    upstream = repo.rev(f"refs/remotes/{remote}/{target}") if target in wanted else None
    if upstream is None:
        say(f"'{target}' does not exist on '{remote}' yet: the push creates it")
        return
    if not repo.is_ancestor(upstream, local):
        raise GateError(
            f"local '{target}' ({local[:12]}) does not contain '{remote}/{target}' ({upstream[:12]}): bring it up "
            f"to date (git pull --ff-only {remote} {target}) and run the gate again; nothing was changed"
        )
    ahead = repo.out("rev-list", "--count", f"{upstream}..{local}")
    if ahead != "0":
        say(f"note: '{target}' has {ahead} commit(s) not on '{remote}/{target}'; they are pushed with the merge")


def trial_merge(options: Options) -> None:
    """Merge in the user's checkout, on a detached HEAD at the target: the tests then see the merged
    code whatever the project's install mode. On a conflict, name the files and put everything back."""
    repo = Checkout.here()
    branch, remote = needs_branch(options), options.remote
    recover_abandoned(repo)
    target = target_branch(repo, options.target)
    base = repo.rev(f"refs/heads/{target}")
    fetched = repo.rev(f"refs/remotes/{remote}/{branch}")
    if base is None or fetched is None:
        raise GateError(f"'{target}' or '{remote}/{branch}' is missing: the preflight and fetch steps come first")
    if repo.in_progress() or repo.tracked_changes():
        raise GateError("the working tree changed since the preflight; nothing was changed")
    if repo.is_ancestor(fetched, base):
        raise GateError(f"'{remote}/{branch}' ({fetched[:12]}) is already in '{target}': nothing to merge")
    head = repo.head()
    for old, new in ((head, base), (base, fetched)):
        clobbered = repo.in_the_way(old, new)
        if clobbered:
            raise GateError(
                f"the merge would overwrite files in the checkout that git does not track (ignored?): "
                f"{', '.join(clobbered)}; move them away and run the gate again; nothing was changed"
            )
    state = GateState(
        run_id(),
        *owner(),
        remote=remote,
        branch=branch,
        target=target,
        original_branch=repo.branch(),
        original_head=head,
        base=base,
        fetched=fetched,
        status=repo.status(),
        orig_head=repo.rev("ORIG_HEAD"),
    )
    claim(repo, state)
    with restoring(repo):
        repo.git("checkout", "--quiet", "--detach", base)
        subject = f"Merge {remote}/{branch} into {target}"
        trailer = f"Planrun-Run-Id: {state.run_id}"
        merged = repo.git("merge", "--no-ff", "--no-edit", "-m", subject, "-m", trailer, fetched, check=False)
        if merged.returncode != 0:
            listed = repo.git("diff", "--name-only", "--diff-filter=U", "-z").stdout
            conflicted = [path for path in listed.split("\0") if path]
            run_dir = os.environ.get("PLANRUN_RUN_DIR")
            if run_dir and conflicted:
                Path(run_dir, "conflicts.txt").write_text("\n".join(conflicted) + "\n")
            if conflicted:
                raise GateError(f"merging {remote}/{branch} into {target} conflicts in: {', '.join(conflicted)}")
            raise GateError(f"git merge failed: {(merged.stderr.strip() or merged.stdout.strip())}")
        merge = repo.head()
        parents = repo.out("rev-list", "--parents", "--max-count=1", merge).split()[1:]
        if parents != [base, fetched]:
            raise GateError(f"the merge {merge} has parents {parents}, expected {base} and {fetched}")
        save(repo, replace(state, merge=merge, phase="merged"))
    say(
        f"merged {remote}/{branch} ({fetched[:12]}) into {target} ({base[:12]}) in the checkout {repo.top}:",
        f"merge commit {merge} on a detached HEAD; '{target}' moves to it only once it is pushed",
    )


def test_command(given: str, top: Path) -> str:
    if given:
        return given
    if (top / ".ci" / "run").exists():
        return "bash .ci/run"
    return f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"


def _on_merge(repo: Checkout, state: GateState) -> str:
    """The trial merge, checked out and unchanged: what the tests run on and what is pushed."""
    assert state.merge is not None
    head = repo.head()
    if head != state.merge:
        raise GateError(f"HEAD is {head}, not the trial merge {state.merge}: the checkout was changed during the gate")
    return state.merge


def test_merged(options: Options) -> None:
    """Run the project's tests on the trial merge, after checking HEAD is that very commit."""
    repo = Checkout.here()
    state = mine(repo, "test_merged")
    with restoring(repo):
        merge = _on_merge(repo, state)
        command = test_command(options.test_command, repo.top)
        say(
            f"testing merge commit {merge} ({state.remote}/{state.branch} {state.fetched[:12]} into "
            f"{state.target} {state.base[:12]}), checked out in {repo.top}",
            f"$ {command}",
        )
        code = run_tests(command, repo.top)
        if code != 0:
            what = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
            raise GateError(f"the tests failed on the merged tree ({what}); nothing is merged")
        _on_merge(repo, state)
        changed = repo.tracked_changes()
        if changed:
            warn("warning: the tests changed tracked files; they are reset to the merge: " + ", ".join(changed))
            repo.git("reset", "--quiet", "--hard", merge)
    say(f"the tests passed on merge commit {merge}")


def run_tests(command: str, cwd: Path) -> int:
    """Run the test command in its own session (process group), so that on SIGTERM its whole tree
    goes before the checkout is put back; nothing it started outlives it."""
    # a nested planrun run (the project's own plans) is its own run, with its own markers
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANRUN_")}
    proc = subprocess.Popen(command, shell=True, cwd=cwd, env=env, start_new_session=True)
    try:
        # the exited leader stays a zombie, so its group id cannot be reused before the group is killed
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    except BaseException:
        stop_tree(proc, STOP_GRACE)
        raise
    signal_group(proc.pid, signal.SIGKILL)
    return proc.wait()


def _remote_unmoved(repo: Checkout, state: GateState) -> str | None:
    """The remote target's commit, after checking that the merge fast-forwards it (None: no such branch)."""
    assert state.merge is not None
    now = repo.remote_heads(state.remote, state.target).get(state.target)
    if now is not None and (repo.rev(now) is None or not repo.is_ancestor(now, state.merge)):
        raise GateError(_moved(state, now))
    return now


def _moved(state: GateState, now: str) -> str:
    return (
        f"'{state.remote}/{state.target}' moved while the gate ran (it is at {now[:12]} now, the merge was made on "
        f"{state.base[:12]}): nothing is pushed; run the gate again"
    )


def merge(options: Options) -> None:
    """The last checks before the push lock: the tested merge is still checked out, and neither the
    local nor the remote target moved (the push would fail, or carry what was not tested)."""
    repo = Checkout.here()
    state = mine(repo, "merge")
    with restoring(repo):
        merge = _on_merge(repo, state)
        if repo.tracked_changes():
            raise GateError("tracked files changed since the tests ran; nothing is pushed")
        local = repo.rev(f"refs/heads/{state.target}")
        if local != state.base:
            raise GateError(f"'{state.target}' was moved during the gate (to {local}); nothing is pushed")
        remote_now = _remote_unmoved(repo, state)
    remote = f"{state.remote}/{state.target}"
    where = f"'{remote}' (now {remote_now[:12]})" if remote_now else f"a new '{remote}'"
    say(f"the tested merge {merge} is ready to be pushed to {where}")


def push(options: Options) -> None:
    """Push the tested merge without force; only then does the local target take it (compare-and-swap).
    A remote target that moved since the merge step checked it (while this step waited for the push
    lock, say) rejects the push: git refuses what is not a fast-forward, and the server's ref update
    is itself a compare-and-swap."""
    repo = Checkout.here()
    state = mine(repo, "push")
    with restoring(repo):
        merge = _on_merge(repo, state)
        refspec = f"{merge}:refs/heads/{state.target}"
        done = repo.git("push", "--porcelain", "--no-follow-tags", state.remote, refspec, check=False)
        if done.returncode != 0:
            rejected = [line for line in done.stdout.splitlines() if line.startswith("!")]
            if rejected:
                now = repo.remote_heads(state.remote, state.target).get(state.target, "?")
                raise GateError(_moved(state, now) + f"\n  {rejected[0]}")
            raise GateError(f"git push failed (exit code {done.returncode}): {done.stderr.strip()}; nothing is pushed")
        state = replace(state, phase="pushed")
        save(repo, state)
        notes = finish(repo, state)
    warn(*notes)
    say(f"pushed the tested merge {merge} to {state.remote}/{state.target}")
    if not notes:
        say(f"'{state.target}' is at {merge} and checked out")


def cleanup(options: Options) -> None:
    """Runs whatever happened before (``always()``): if this run still holds the checkout, a step
    was stopped before it could restore it; do it now."""
    try:
        repo = Checkout.here()
    except GateError as error:
        say(f"nothing to clean up: {error}")
        return
    state = load(repo)
    if state is None:
        where = f"'{repo.branch()}'" if repo.branch() else "a detached HEAD"
        say(f"nothing to restore: the checkout is on {where} at {repo.head()}")
        return
    if state.run_id != run_id():
        say(f"the checkout is held by another {state.describe_owner()}: left alone")
        return
    put_back(repo, state)
    if load(repo) is not None:
        raise GateError("the checkout could not be restored (see above)")


STEPS = {
    "preflight": preflight,
    "fetch": fetch,
    "trial-merge": trial_merge,
    "test": test_merged,
    "merge": merge,
    "push": push,
    "cleanup": cleanup,
}
