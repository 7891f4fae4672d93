"""One attempt of a plan step: from the resolved step to a process spec, and back to a record."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..plan import Masker, ResolvedStep
from .process import AttemptSpec, CancelToken, run_attempt
from .records import AttemptRecord


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every attempt of a run shares, on the controller and on workers alike."""

    run_id: str
    run_dir: Path
    invocation_dir: Path
    masker: Masker
    kill_grace: float = 3.0


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
    step: ResolvedStep, attempt: int, ctx: RunContext, *, worker: str, token: CancelToken | None = None
) -> AttemptRecord:
    """Run one attempt of ``step`` to its end and describe how it ended."""
    stdout_path, stderr_path = log_paths(ctx.run_dir, step.id, attempt)
    argv = (shell_line(step),) if step.shell else (step.command, *step.args)
    spec = AttemptSpec(
        argv=argv,
        shell=step.shell,
        cwd=ctx.invocation_dir / step.cwd,
        env=step_environment(step, ctx, attempt),
        timeout=step.timeout_sec or None,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        secrets=ctx.masker.secrets,
        kill_grace=ctx.kill_grace,
    )
    outcome = run_attempt(spec, token)
    if outcome.cancelled is not None:
        state = "canceled"
    elif outcome.exit_code == 0 and not outcome.timed_out and outcome.error is None:
        state = "succeeded"
    else:
        state = "failed"
    error = outcome.error
    if error is None and state == "failed" and outcome.exit_code is not None:
        error = (
            f"exit code {outcome.exit_code}"
            if outcome.exit_code >= 0
            else f"killed by signal {-outcome.exit_code}"
        )
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
    )
