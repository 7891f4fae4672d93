"""One attempt of a plan step: from the resolved step to a process spec, and back to a record.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..plan import Masker, ResolvedStep
from .locks import LockCancelled, LockTimeout, holding
from .process import AttemptOutcome, AttemptSpec, CancelToken, Forward, Watch, run_attempt
from .provided import DEFAULT_LIMIT_MB, ProvidedFile, ProvideFailed, collect, deliver
from .records import AttemptRecord, AttemptState


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every attempt of a run shares, on the controller and on workers alike."""

    run_id: str
    run_dir: Path
    invocation_dir: Path
    masker: Masker
    kill_grace: float = 3.0
    # a remote worker writes logs into a run directory of its own and streams them to the
    # controller's (this one): reports name the controller's paths
    shown_run_dir: Path | None = None
    provide_limit: int = int(DEFAULT_LIMIT_MB * 1024 * 1024)  # bytes, per provided file

    def shown(self, path: str) -> str:
        """``path`` (in ``run_dir``) as the controller knows it."""
        if self.shown_run_dir is None or not path:
            return path
        try:
            return str(self.shown_run_dir / Path(path).relative_to(self.run_dir))
        except ValueError:
            return path


@dataclass(frozen=True, slots=True)
class HeldLocks:
    """The step's locks, already taken by the controller of an xdist run before it sent the attempt
    (whatever machine runs it, one process decides): the attempt does not take them again."""

    waited_for: str | None  # a lock another run held when the controller wanted it
    waited: float  # seconds the controller waited; part of the attempt's timeout


def shell_line(step: ResolvedStep) -> str:
    """With ``shell: true`` the command is shell text; ``args`` are appended quoted, one word each."""
    return " ".join([step.command, *map(shlex.quote, step.args)])


def display_command(step: ResolvedStep, masker: Masker) -> str:
    """The command as a user would type it, secrets masked."""
    return masker.mask(shell_line(step) if step.shell else shlex.join([step.command, *step.args]))


def log_paths(run_dir: Path, step_id: str, attempt: int) -> tuple[Path, Path]:
    base = run_dir / "steps" / step_id.replace(os.sep, "_")
    return base / f"attempt-{attempt}.stdout.log", base / f"attempt-{attempt}.stderr.log"


def step_environment(step: ResolvedStep, ctx: RunContext, attempt: int) -> dict[str, str]:
    """The process environment overlaid by the plan's env (never replaced wholesale), plus the
    PLANRUN_* markers that let a sweep find any process the step left behind."""
    env = dict(os.environ)
    env.update(step.env)
    env.update(
        PLANRUN_RUN_ID=ctx.run_id,
        PLANRUN_STEP_ID=step.id,
        PLANRUN_ATTEMPT=str(attempt),
        PLANRUN_RUN_DIR=str(ctx.run_dir),
    )
    return env


def execute_attempt(
    step: ResolvedStep,
    attempt: int,
    ctx: RunContext,
    *,
    worker: str,
    token: CancelToken | None = None,
    on_beat: Callable[[], None] | None = None,
    beat_every: float | None = None,
    forward: Forward | None = None,
    held: HeldLocks | None = None,
    deliveries: tuple[ProvidedFile, ...] = (),
) -> AttemptRecord:
    """Run one attempt of ``step`` to its end and describe how it ended; ``on_beat`` is called every
    ``beat_every`` seconds while the process runs, ``forward`` with its output as it is logged.
    ``deliveries``: files of the steps it consumes from, placed before its command starts."""
    stdout_path, stderr_path = log_paths(ctx.run_dir, step.id, attempt)
    argv = (shell_line(step),) if step.shell else (step.command, *step.args)
    cwd = ctx.invocation_dir / step.cwd
    spec = AttemptSpec(
        argv=argv,
        shell=step.shell,
        cwd=cwd,
        env=step_environment(step, ctx, attempt),
        timeout=step.timeout_sec or None,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        secrets=ctx.masker.secrets,
        kill_grace=ctx.kill_grace,
        forward=forward,
    )
    waited: list[str] = []
    begun, begun_wall = time.monotonic(), time.time()
    deadline = begun + step.timeout_sec if step.timeout_sec else None
    if held is not None:
        waited += [held.waited_for] if held.waited_for else []
        deadline = None if deadline is None else deadline - held.waited
    locks = () if held is not None else step.locks
    provided: tuple[ProvidedFile, ...] = ()

    def not_run(message: str, *, timed_out: bool = False, cancelled: str | None = None) -> AttemptOutcome:
        """The outcome of an attempt whose command never started; its message is its stderr."""
        stderr_path.parent.mkdir(parents=True, exist_ok=True)
        stdout_path.touch()
        stderr_path.write_text(message + "\n")
        if forward is not None:
            forward("stderr", (message + "\n").encode())
        ended = time.time()
        return AttemptOutcome(None, timed_out, cancelled, message, begun_wall, ended, time.monotonic() - begun, None)

    try:
        with holding(locks, deadline=deadline, token=token, on_wait=waited.append) as lock_wait:
            if held is not None:
                lock_wait = held.waited
            if deadline is not None:
                spec = replace(spec, timeout=max(0.001, deadline - time.monotonic()))
            try:
                deliver(deliveries, cwd, ctx.run_dir)
            except (ProvideFailed, OSError) as undelivered:
                outcome = not_run(str(undelivered))
            else:
                watch = Watch(silence=step.no_output_timeout_sec, beat_every=beat_every, on_beat=on_beat)
                outcome = run_attempt(spec, token, watch)
    except (LockTimeout, LockCancelled) as stopped:
        if isinstance(stopped, LockTimeout):
            outcome = not_run(f"timed out after {step.timeout_sec:g} s waiting for lock '{stopped}'", timed_out=True)
        else:
            outcome = not_run(f"cancelled: {stopped}", cancelled=str(stopped))
        lock_wait = time.monotonic() - begun
    state: AttemptState
    if outcome.cancelled is not None:
        state = "canceled"
    elif outcome.exit_code == 0 and not outcome.timed_out and outcome.error is None:
        state = "succeeded"
    else:
        state = "failed"
    error = outcome.error
    if outcome.timed_out and outcome.pid is not None and not outcome.silent:
        error = f"timed out after {step.timeout_sec:g} s"  # the step's limit, not what was left of it
    if error is None and state == "failed" and outcome.exit_code is not None:
        error = f"exit code {outcome.exit_code}" if outcome.exit_code >= 0 else f"killed by signal {-outcome.exit_code}"
    if state == "succeeded" and step.provided_files:
        try:
            provided = collect(((f.name, f.path) for f in step.provided_files), cwd, ctx.run_dir, ctx.provide_limit)
        except (ProvideFailed, OSError) as unprovided:
            state, error = "failed", str(unprovided)
            with stderr_path.open("a") as log:
                log.write(error + "\n")
            if forward is not None:
                forward("stderr", (error + "\n").encode())
    return AttemptRecord(
        step_id=step.id,
        attempt=attempt,
        state=state,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        started_at=outcome.started_at,
        ended_at=outcome.ended_at,
        duration=outcome.duration,
        command=display_command(step, ctx.masker),
        stdout_path=str(stdout_path),
        stderr_path=str(stderr_path),
        error=ctx.masker.mask(error) if error else None,
        worker=worker,
        waited_for_lock=waited[0] if waited else None,
        lock_wait=lock_wait,
        timeout_kind=("no_output" if outcome.silent else "wall_clock") if outcome.timed_out else None,
        provided=provided,
    )
