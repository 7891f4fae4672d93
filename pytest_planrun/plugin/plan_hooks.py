"""The hooks of a run with ``--plan``: pytest events turned into calls on planrun objects.

Registered by the entry point (``hooks``) only when a plan is given, so that a pytest start without
one imports none of this.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import inspect
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Generator
from pathlib import Path
from types import FrameType

import pytest

from ..core.graph import assumed_succeeded, topological_order
from ..core.placement import SERIAL_WORKER, placement_problems, shown_labels
from ..core.state import Verdict
from ..ledger.directory import make_ledger_dir
from ..plan import LoadedPlan, Masker, PlanError, load_plan
from ..plan.load import variable_names
from ..plan.packaged import PYTHON_ENV, PlanNotFound, find_plan, offer_python
from ..plan.variables import unknown_given
from ..remote.shipped import PLANS, unpack
from ..run.step import RunContext
from .controller import default_run_dir
from .items import PlanFile, Runtime, StepFailed, StepItem, marker_names, record_key, runtime_key, ticket_key
from .options import Settings, on_unconfigure, settings_key
from .report import assumed_lines, provisional_label
from .session import ControllerPlugin, WorkerLoop
from .whatif import check_assumptions, what_if_lines

plans_key = pytest.StashKey[list[LoadedPlan]]()
remote_root_key = pytest.StashKey[Path]()  # a remote worker's own temporary folder
shipped_nodeids_key = pytest.StashKey[dict[Path, str]]()
PLUGIN_NAMES = ("planrun-controller", "planrun-worker", "planrun-xdist", "planrun-junit")


def load_plans(settings: Settings) -> list[LoadedPlan]:
    """Load and validate every ``--plan`` (a file, or a packaged plan's name); all problems of all
    plans, and every ``--var`` that none of them declares or uses, in one usage error."""
    plans: list[LoadedPlan] = []
    problems: list[str] = []
    loaded: set[Path] = set()
    known: set[str] | None = set()
    for given in settings.plans:
        try:
            path, display = find_plan(given, settings.invocation_dir)
        except PlanNotFound as error:
            problems.append(str(error))
            known = None  # a plan we cannot read may use any name
            continue
        if (real := path.resolve()) in loaded:
            continue  # the same plan named twice
        loaded.add(real)
        names = variable_names(path)
        known = None if names is None or known is None else known | names
        try:
            plans.append(load_plan(path, settings.variables, display_path=display))
        except PlanError as error:
            problems.extend(str(p) for p in error.problems)
    if known is not None:  # the cause first: a typo'd --var leaves the real name without a value
        problems[:0] = unknown_given(settings.variables, known)
    seen: dict[str, str] = {}
    for plan in plans:
        for step in plan.steps:
            if step.id in seen:
                problems.append(
                    f"{plan.display_path}: step '{step.id}': the same step id is in {seen[step.id]}; "
                    "plans run together need distinct step ids"
                )
            seen.setdefault(step.id, plan.display_path)
    if problems:
        raise pytest.UsageError(*problems)
    return plans


def check_rootdir(config: pytest.Config, settings: Settings) -> None:
    """Refuse a run whose rootdir pytest took from a plan path given as a separate argument.

    pytest chooses its rootdir and configuration file (and applies that file's ``addopts``) from the
    positional arguments before any plugin is imported, so in ``--plan /elsewhere/x.json`` it takes
    the path for a test path; a plugin cannot undo that. ``--plan=PATH`` and packaged plan names are
    not affected.
    """
    args = list(config.invocation_params.args)
    separate = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--plan"]
    if not separate:
        return
    expected = rootdir_without(config, separate)
    if expected is None or expected == (config.rootpath, config.inipath):
        return
    given = separate[0]
    raise pytest.UsageError(
        f"--plan {given}: pytest took this plan path for a test path when it chose its rootdir "
        f"({config.rootpath}, configuration {config.inipath or 'none'}, instead of {expected[0]}, "
        f"configuration {expected[1] or 'none'}), "
        f"before planrun's options are known; write --plan={given}, or run a packaged plan by name "
        "(planrun plans lists them)"
    )


def rootdir_without(config: pytest.Config, dropped: list[str]) -> tuple[Path, Path | None] | None:
    """The rootdir and configuration file pytest would have chosen without the ``dropped`` arguments;
    None if this pytest's internals differ from what is expected here (the check is then skipped)."""
    try:
        from _pytest.config.findpaths import determine_setup

        namespace = config.known_args_namespace
        positional = [a for a in namespace.file_or_dir if a not in dropped] if namespace.file_or_dir else []
        kwargs: dict[str, object] = {
            "inifile": namespace.inifilename,
            "args": positional,
            "rootdir_cmd_arg": namespace.rootdir or None,
            "invocation_dir": config.invocation_params.dir,
        }
        if "override_ini" in inspect.signature(determine_setup).parameters:
            kwargs["override_ini"] = namespace.override_ini
        root, inipath = determine_setup(**kwargs)[:2]  # type: ignore[arg-type]
    except (ImportError, TypeError, AttributeError):
        return None
    return Path(root), None if inipath is None else Path(inipath)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def load_shipped(config: pytest.Config) -> list[LoadedPlan]:
    """A remote worker's plans, from its ``workerinput``, written into a temporary folder of its own
    that also holds its run directory; removed when the worker ends."""
    workerinput = config.workerinput  # type: ignore[attr-defined]
    root = Path(tempfile.mkdtemp(prefix=f"planrun-{workerinput['planrun_run_id']}-{workerinput['workerid']}-"))
    on_unconfigure(config, lambda: shutil.rmtree(root, ignore_errors=True))
    config.stash[remote_root_key] = root
    plans, nodeids = [], {}
    for path, shipped in unpack(workerinput[PLANS], root / "plans"):
        plans.append(load_plan(path, shipped.variables, environ={}, display_path=shipped.display_path))
        nodeids[path.absolute()] = shipped.nodeid
    config.stash[shipped_nodeids_key] = nodeids
    return plans


def prepare(config: pytest.Config, settings: Settings) -> None:
    """What ``pytest_cmdline_main`` does when plans are given: load them, and size xdist's workers."""
    # plans run planrun's own helpers (plans/safe_merge.json) with the interpreter pytest runs on
    if offer_python():
        on_unconfigure(config, lambda: os.environ.pop(PYTHON_ENV, None))
    if is_worker(config) and PLANS in config.workerinput:  # type: ignore[attr-defined]
        plans = load_shipped(config)  # a remote worker: the plans as the controller loaded them
    else:
        check_rootdir(config, settings)
        plans = load_plans(settings)  # a broken plan is a usage error: exit 4, nothing runs
    config.stash[plans_key] = plans
    check_assumptions(dict(settings.assume), plans, config.option.collectonly)
    if config.getoption("lf", False):
        # planrun answers --lf for plan steps from the ledger; pytest's own last-failed filter
        # (cacheprovider's, registered in its pytest_configure, after this) would drop the failed
        # steps' dependents and the succeeded steps' verdicts: it sits this session out.
        for name in ("lfplugin", "lfplugin-collwrapper"):
            config.pluginmanager.set_blocked(name)
    if not is_worker(config):
        check_placement(config, settings, plans)
    if not config.pluginmanager.hasplugin("xdist"):
        return
    from .xdist_seam import check_versions

    # Without -n the plan runs in this process, max_concurrency steps at once: steps are
    # subprocesses, so extra pytest processes would only add their start-up. -n/--tx spread the
    # steps over xdist workers, the plan's max_concurrency still capping the total.
    check_versions(config)  # before xdist starts a worker: a plan run only on tested versions


def check_placement(config: pytest.Config, settings: Settings, plans: list[LoadedPlan]) -> None:
    """A step whose ``runs_on`` no worker's labels fit is a usage error before anything runs."""
    required = {step.id: step.runs_on for plan in plans for step in plan.steps if step.runs_on}
    if not required:
        return
    distributed = config.pluginmanager.hasplugin("xdist") and (
        getattr(config.option, "numprocesses", None) or getattr(config.option, "tx", None)
    )
    if distributed:
        from .xdist_seam import worker_ids

        names = worker_ids(config)
        if names is None:  # -n auto: checked again when the workers are up (the scheduler)
            return
    else:
        names = [SERIAL_WORKER]
    problems = placement_problems(required, {name: settings.worker_labels.get(name, frozenset()) for name in names})
    if problems:
        raise pytest.UsageError(*problems)


def pytest_configure(config: pytest.Config) -> None:
    settings = config.stash.get(settings_key, None)
    if settings is None or not settings.plans:
        return
    plans = config.stash[plans_key]
    for plan in plans:
        for step in plan.steps:
            for tag in step.tags:
                for name in marker_names(tag):
                    config.addinivalue_line("markers", f"{name}: step tag '{tag}' from plan {plan.display_path}")
    _collect_plans_too(config, plans)
    shown_run_dir = None
    if is_worker(config):
        workerinput = config.workerinput  # type: ignore[attr-defined]
        run_id = workerinput["planrun_run_id"]
        run_dir = Path(workerinput["planrun_run_dir"])
        remote_root = config.stash.get(remote_root_key, None)
        if remote_root is not None:  # logs are written here, then streamed into the controller's run_dir
            run_dir, shown_run_dir = remote_root / "run", run_dir
    else:
        run_id = settings.run_id or uuid.uuid4().hex[:12]
        run_dir = settings.run_dir or default_run_dir(settings.ledger, settings.invocation_dir, run_id)
    masker = plans[0].masker if len(plans) == 1 else _merged_masker(plans)
    context = RunContext(
        run_id,
        run_dir,
        settings.invocation_dir,
        masker,
        settings.kill_grace,
        shown_run_dir=shown_run_dir,
        provide_limit=settings.provide_limit,
    )
    config.stash[runtime_key] = Runtime({p.path: p for p in plans}, context)
    if is_worker(config):
        config.pluginmanager.register(WorkerLoop(config), "planrun-worker")
    else:
        config.pluginmanager.register(ControllerPlugin(config, settings, plans, context), "planrun-controller")
        previous = _terminate_like_interrupt()
        if previous is not None:
            on_unconfigure(config, lambda: signal.signal(signal.SIGTERM, previous))
    if config.pluginmanager.hasplugin("xdist"):
        from .xdist_hooks import XdistHooks

        config.pluginmanager.register(XdistHooks(config), "planrun-xdist")


@pytest.hookimpl(wrapper=True)  # before the controller opens the run's directory
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    config = session.config
    settings = config.stash.get(settings_key, None)
    if settings is not None and settings.plans and not is_worker(config) and not config.option.collectonly:
        if settings.ledger is not None:
            make_ledger_dir(settings.ledger.parent)
        if settings.run_dir is None:  # runs/<run_id> in the ledger's directory (.ledger/ without a ledger)
            make_ledger_dir(config.stash[runtime_key].context.run_dir.parent.parent)
    return (yield)


def _merged_masker(plans: list[LoadedPlan]) -> Masker:
    return Masker(v for p in plans for v in p.masker.secrets)


def _collect_plans_too(config: pytest.Config, plans: list[LoadedPlan]) -> None:
    """With ``--plan`` only the plan's steps are collected, unless test paths are given too."""
    plan_args = [str(p.path) for p in plans]
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        config.args[:] = plan_args
    else:
        # `plan.json::build` names the plan too: then only that step is collected, as pytest does
        known = {Path(a.partition("::")[0]).resolve() for a in config.args}
        config.args.extend(a for a in plan_args if Path(a).resolve() not in known)


def _terminate_like_interrupt() -> signal.Handlers | None:
    """SIGTERM to pytest ends the run as Ctrl-C does: process trees killed, run recorded canceled.
    Returns the handler replaced (None: someone else's handler was kept)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None) or threading.current_thread() is not threading.main_thread():
        return None
    signal.signal(signal.SIGTERM, handler)
    return signal.SIG_DFL


def _outside(config: pytest.Config, path: Path) -> bool:
    return path != config.rootpath and config.rootpath not in path.parents


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> PlanFile | None:
    runtime = parent.config.stash.get(runtime_key, None)
    if runtime is None or file_path not in runtime.plans:
        return None
    shipped = parent.config.stash.get(shipped_nodeids_key, {})
    if file_path in shipped:  # a remote worker: the node ids the controller's plan files have
        return PlanFile.from_parent(parent, path=file_path, nodeid=shipped[file_path])
    if _outside(parent.config, file_path):
        # pytest names a file outside the rootdir '' (`::preflight`, a progress line reading `.`):
        # a packaged plan, or one given as --plan=/elsewhere/x.json, is named by its file name
        return PlanFile.from_parent(parent, path=file_path, nodeid=file_path.name)
    return PlanFile.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A directory outside the rootdir that leads to a plan is a plain directory, never a Python
    package: the package holding packaged plans is not imported as a test package."""
    runtime = parent.config.stash.get(runtime_key, None)
    if runtime is None or not _outside(parent.config, path):
        return None
    if any(path in plan.parents for plan in runtime.plans):
        return pytest.Dir.from_parent(parent, path=path)
    return None


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: order what is left
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Steps in execution order (dependencies first, critical path first), after other tests."""
    steps = {item.step.id: item for item in items if isinstance(item, StepItem)}
    if not steps:
        return
    deps = {sid: [d for d in item.step.depends_on if d in steps] for sid, item in steps.items()}
    order = topological_order(deps)
    others = [item for item in items if not isinstance(item, StepItem)]
    items[:] = others + [steps[sid] for sid in order]


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Say which dependencies of selected steps were deselected and are taken as succeeded."""
    deps = {item.step.id: item.step.depends_on for item in items if isinstance(item, StepItem)}
    lines = assumed_lines(assumed_succeeded(deps))
    settings = config.stash.get(settings_key, None)
    if settings is not None and settings.assume and deps:
        plans = config.stash[plans_key]
        lines += what_if_lines(dict(settings.assume), plans, list(deps))
    return lines


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    plans = config.stash.get(plans_key, None)
    runtime = config.stash.get(runtime_key, None)
    if not plans or runtime is None:
        return None
    settings = config.stash[settings_key]
    lines = [
        f"planrun: {p.display_path} (plan {p.plan.plan_id}, {len(p.steps)} steps, "
        f"max_concurrency {p.plan.globals.max_concurrency})"
        for p in plans
    ]
    lines.append(
        f"planrun: run {runtime.context.run_id}, logs in {runtime.context.run_dir}, "
        f"ledger {settings.ledger if settings.ledger else 'off'}"
    )
    masked = {k: v for p in plans for k, v in p.masked_variables().items()}
    if masked:
        lines.append("planrun: variables " + ", ".join(f"{k}={v}" for k, v in sorted(masked.items())))
    if settings.worker_labels:
        labelled = sorted(settings.worker_labels.items())
        lines.append("planrun: worker labels " + ", ".join(f"{w}={shown_labels(ls)}" for w, ls in labelled))
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not isinstance(item, StepItem) or report.when != "call":
        return report
    ticket = item.stash.get(ticket_key, None)
    record = item.stash.get(record_key, None)
    data: dict[str, object] = {"step_id": item.step.id, "attempt": ticket.attempt if ticket else 1}
    if record is not None:
        shown = item.config.stash[runtime_key].context.shown  # a remote worker's logs: the controller's copies
        paths = {"stdout_path": shown(record.stdout_path), "stderr_path": shown(record.stderr_path)}
        data["record"] = {**record.to_dict(), **paths}
        del item.stash[record_key]
    report.planrun = data  # type: ignore[attr-defined]
    if record is not None and call.excinfo is not None and isinstance(call.excinfo.value, StepFailed):
        provisional_label(report, ticket.if_failed if ticket else Verdict.FAILED, record)
    return report


def pytest_report_teststatus(
    report: pytest.TestReport,
) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    if report.outcome == "rerun":  # type: ignore[comparison-overlap]
        return "rerun", "R", ("RERUN", {"yellow": True})
    return None
