"""Command-line options and ini keys, resolved once into a frozen ``Settings``.

The plugin is loaded in every session of every project that has it installed, so only the design's
``--plan`` and ``--var`` go unprefixed: every other option is ``--planrun-NAME`` with dest
``planrun_NAME`` and ini key ``planrun_NAME``, leaving ``--resume`` or ``--ledger`` to a project's conftest.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..core.placement import SERIAL_WORKER, is_label
from ..ledger.directory import DEFAULT_LEDGER
from ..run.provided import DEFAULT_LIMIT_MB

if TYPE_CHECKING:
    from ..core.whatif import Assumption

# Every session of every project with planrun installed imports this module: what parses a plan's
# values (pydantic, lark) is imported inside the parsers below, only when such an option is given.
ASSUME_HELP = (
    "With --collect-only: show what the run would do if STEP ended as OUTCOME "
    "(failed, succeeded, skipped, timed_out), nothing run; repeatable"
)

PLAN_HELP = (
    "Plan to run as pytest items: a JSON file (outside the rootdir write --plan=PATH) or the name of a plan "
    "shipped with planrun (planrun plans lists them); repeatable"
)
VAR_HELP = "Set a plan variable; repeatable"
LEDGER_HELP = "SQLite ledger to record runs in (default: .ledger/framework.db)"
RUN_DIR_HELP = "Directory for attempt logs and events (default: runs/<run_id> beside the ledger)"
KILL_GRACE_HELP = "Seconds between SIGTERM and SIGKILL when a step's process tree is stopped (default: 3)"
HEARTBEAT_HELP = "Seconds between heartbeats of a running step in the ledger and events.jsonl (default: 5)"
STATUS_HELP = "Seconds without a step ending before the terminal shows what is running (default: 10)"
SLOTS_HELP = (
    "With -n: steps one xdist worker runs at once (default: the plan's max_concurrency divided among the workers, "
    "so -n 2 with max_concurrency 8 runs 8 steps on 2 workers)"
)

MAX_PROVIDED_HELP = (
    "Largest file a step may provide to others (provides with a path), in MB (default: 100); "
    "a larger one fails the step"
)
WORKER_LABEL_HELP = (
    f"Labels of a worker for steps with runs_on: WORKER=LABEL[,LABEL...] (gw0=linux,gpu; without xdist the one "
    f"worker is {SERIAL_WORKER}); repeatable, one per line in the ini key. The option's labels of a worker replace "
    f"the ini key's"
)


def parse_assume(text: str) -> tuple[str, Assumption]:
    from .whatif import parse_assume as parse

    return parse(text)


def parse_var(text: str) -> tuple[str, str]:
    from ..plan.variables import split_var

    try:
        return split_var(text)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def parse_worker_label(text: str, where: str = "--planrun-worker-label") -> tuple[str, frozenset[str]]:
    """``gw0=linux,gpu`` -> ``("gw0", {"linux", "gpu"})``; ``gw0=`` gives the worker no labels."""
    worker, sep, listed = text.partition("=")
    labels = [label.strip() for label in listed.split(",")] if listed.strip() else []
    worker = worker.strip()
    if not sep or not is_label(worker) or not all(is_label(label) for label in labels):
        raise pytest.UsageError(
            f"{where} expects WORKER=LABEL[,LABEL...] (for example gw0=linux,gpu; names and labels of "
            f"letters, digits, '_', '.', '-'), got {text!r}"
        )
    return worker, frozenset(labels)


FLAGS = ("--planrun-no-ledger",)  # the options of ours that take no value


def takes_value(arg: str) -> bool:
    """Whether ``arg`` is an option of ours written apart from its value (``--plan PATH``)."""
    return arg in ("--plan", "--var") or (arg.startswith("--planrun-") and "=" not in arg and arg not in FLAGS)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("planrun", "Run JSON plans of command steps")
    group.addoption("--plan", action="append", default=[], metavar="PLAN", help=PLAN_HELP)
    group.addoption("--var", action="append", default=[], type=parse_var, metavar="NAME=VALUE", help=VAR_HELP)
    group.addoption("--planrun-ledger", metavar="PATH", default=None, help=LEDGER_HELP)
    group.addoption("--planrun-no-ledger", action="store_true", default=False, help="Do not record the run in a ledger")
    group.addoption("--planrun-run-dir", metavar="DIR", default=None, help=RUN_DIR_HELP)
    group.addoption(
        "--planrun-run-id",
        metavar="ID",
        default=None,
        help="Use this run id instead of a new one (for the API)",
    )
    group.addoption("--planrun-kill-grace", metavar="SECONDS", default=None, help=KILL_GRACE_HELP)
    group.addoption("--planrun-slots-per-worker", metavar="K", type=int, default=None, help=SLOTS_HELP)
    group.addoption("--planrun-max-provided-mb", metavar="MB", default=None, help=MAX_PROVIDED_HELP)
    parser.addini("planrun_max_provided_mb", MAX_PROVIDED_HELP)
    group.addoption(
        "--planrun-resume",
        nargs="?",
        const="last",
        default=None,
        metavar="RUN_ID",
        help="Run only the steps that did not succeed in RUN_ID (default: the plan's last run) and their dependents",
    )
    group.addoption("--planrun-heartbeat", metavar="SECONDS", default=None, help=HEARTBEAT_HELP)
    group.addoption("--planrun-status-after", metavar="SECONDS", default=None, help=STATUS_HELP)
    parser.addini("planrun_heartbeat", HEARTBEAT_HELP)
    parser.addini("planrun_status_after", STATUS_HELP)
    group.addoption(
        "--planrun-assume",
        action="append",
        dest="planrun_assume",
        default=[],
        type=parse_assume,
        metavar="STEP=OUTCOME",
        help=ASSUME_HELP,
    )
    group.addoption(
        "--planrun-worker-label",
        action="append",
        dest="planrun_worker_label",
        default=[],
        type=parse_worker_label,
        metavar="WORKER=LABELS",
        help=WORKER_LABEL_HELP,
    )
    parser.addini("planrun_worker_labels", WORKER_LABEL_HELP, type="linelist", default=[])
    parser.addini("planrun_ledger", LEDGER_HELP)
    parser.addini("planrun_kill_grace", KILL_GRACE_HELP)
    parser.addini("planrun_slots_per_worker", SLOTS_HELP)


def _amount(value: str, where: str, unit: str) -> float:
    try:
        amount = float(value)
    except ValueError:
        raise pytest.UsageError(f"invalid number of {unit} {value!r} from {where}") from None
    if amount < 0:
        raise pytest.UsageError(f"invalid number of {unit} {value!r} from {where}: must not be negative")
    return amount


def _setting(
    config: pytest.Config, name: str, default: float, *, positive: bool = False, unit: str = "seconds"
) -> float:
    """An amount (of ``unit``) from ``--planrun-x-y``, else the ini key ``planrun_x_y``, else ``default``."""
    flag = getattr(config.option, name)
    if flag is not None:
        amount = _amount(flag, "--" + name.replace("_", "-"), unit)
    elif config.getini(name):
        amount = _amount(str(config.getini(name)), f"ini {name}", unit)
    else:
        return default
    if positive and amount == 0:
        raise pytest.UsageError(f"{name.replace('_', ' ')}: the number of {unit} must be above 0")
    return amount


def _count(value: str, where: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise pytest.UsageError(f"invalid number {value!r} from {where}") from None
    if count < 1:
        raise pytest.UsageError(f"invalid number {value!r} from {where}: must be at least 1")
    return count


def _worker_labels(ini_lines: Iterable[str], flags: Iterable[tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Each worker's labels: the flags' labels of a worker replace its ini labels; within one
    source, a worker named more than once carries all the labels given."""
    from_ini: dict[str, frozenset[str]] = {}
    for line in ini_lines:
        worker, labels = parse_worker_label(line, "ini planrun_worker_labels")
        from_ini[worker] = from_ini.get(worker, frozenset()) | labels
    from_flags: dict[str, frozenset[str]] = {}
    for worker, labels in flags:
        from_flags[worker] = from_flags.get(worker, frozenset()) | labels
    return {**from_ini, **from_flags}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every planrun setting, with its precedence resolved (flag, then ini key, then default)."""

    plans: tuple[str, ...]
    variables: dict[str, str]
    ledger: Path | None
    run_dir: Path | None
    run_id: str | None
    kill_grace: float
    resume: str | None
    invocation_dir: Path
    # ``--lf`` with a plan: resume the plan's last run, or run everything when there is nothing to
    # resume (pytest's ``--last-failed`` habit, ``--lfnf`` included)
    resume_if_any: bool = False
    nothing_failed: str = "all"
    heartbeat: float = 5.0
    status_after: float = 10.0
    assume: tuple[tuple[str, Assumption], ...] = ()  # --planrun-assume: a what-if under --collect-only
    slots_per_worker: int | None = None  # None: max_concurrency divided among the workers
    provide_limit: int = int(DEFAULT_LIMIT_MB * 1024 * 1024)  # bytes per provided file
    # worker name (gw0, or main without xdist) -> its labels; a worker not named carries none
    worker_labels: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        opt = config.option
        invocation_dir = Path(config.invocation_params.dir)
        ledger: Path | None = None
        if not opt.planrun_no_ledger:
            raw = opt.planrun_ledger or config.getini("planrun_ledger") or DEFAULT_LEDGER
            ledger = invocation_dir / os.path.expanduser(raw)
        grace = _setting(config, "planrun_kill_grace", 3.0)
        heartbeat = _setting(config, "planrun_heartbeat", 5.0, positive=True)
        status_after = _setting(config, "planrun_status_after", 10.0)
        run_dir = invocation_dir / opt.planrun_run_dir if opt.planrun_run_dir else None
        slots = opt.planrun_slots_per_worker
        if slots is None and config.getini("planrun_slots_per_worker"):
            slots = _count(str(config.getini("planrun_slots_per_worker")), "ini planrun_slots_per_worker")
        elif slots is not None:
            slots = _count(str(slots), "--planrun-slots-per-worker")
        resume = opt.planrun_resume
        provide_limit = int(_setting(config, "planrun_max_provided_mb", DEFAULT_LIMIT_MB, unit="MB") * 1024 * 1024)
        last_failed = bool(getattr(opt, "lf", False))  # absent with -p no:cacheprovider
        return cls(
            plans=tuple(opt.plan),
            variables=dict(opt.var),
            ledger=ledger,
            run_dir=run_dir,
            run_id=opt.planrun_run_id,
            kill_grace=grace,
            resume=resume or ("last" if last_failed else None),
            invocation_dir=invocation_dir,
            resume_if_any=last_failed and resume is None,
            nothing_failed=str(getattr(opt, "last_failed_no_failures", "all")),
            heartbeat=heartbeat,
            status_after=status_after,
            assume=tuple(opt.planrun_assume),
            slots_per_worker=slots,
            provide_limit=provide_limit,
            worker_labels=_worker_labels(config.getini("planrun_worker_labels"), opt.planrun_worker_label),
        )


settings_key = pytest.StashKey[Settings]()
undo_key = pytest.StashKey[list[Callable[[], object]]]()  # what pytest_unconfigure puts back


def on_unconfigure(config: pytest.Config, undo: Callable[[], object]) -> None:
    config.stash.setdefault(undo_key, []).append(undo)
