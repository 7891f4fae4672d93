"""The ``planrun`` command: what is not a test run (validate, graph, plans, runs, show, cancel, ...).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ledger import queries
from .ledger.directory import DEFAULT_LEDGER
from .ledger.writer import GIVEN_KEY
from .plan.packaged import offer_python
from .plan.variables import split_var

if TYPE_CHECKING:  # the plan model is imported by the commands that need it, not by `planrun runs`
    from .plan import LoadedPlan

DESCRIPTION = """\
Plans run through pytest:

  pytest --plan PLAN [--var NAME=VALUE]... [-n N]

PLAN is a plan file or the name of a plan shipped with planrun (`planrun plans` lists them), for
example `pytest --plan safe-merge --var BRANCH=feature`. The planrun command is for what is not a
run: checking and drawing plans, listing the shipped ones, reading the ledger, cancelling a live run.
"""


def _vars(pairs: Sequence[str]) -> dict[str, str]:
    try:
        return dict(map(split_var, pairs))
    except ValueError as error:
        raise SystemExit(f"planrun: {error}") from None


def _load(given: Sequence[str], pairs: Sequence[str], strict: bool) -> tuple[list[tuple[str, LoadedPlan]], bool]:
    """Load plans to check or draw them: values are not needed (a missing one is a note on stderr,
    an error with ``strict``), but a ``--var`` that no plan declares or uses is an error."""
    from .plan import PlanError, load_plan
    from .plan.load import variable_names
    from .plan.packaged import PlanNotFound, find_plan
    from .plan.variables import unknown_given

    values = _vars(pairs)
    loaded: list[tuple[str, LoadedPlan]] = []
    failed = False
    known: set[str] | None = set()
    for text in given:
        try:
            path, display = find_plan(text, Path.cwd())
        except PlanNotFound as error:
            print(f"ERROR: {error}", file=sys.stderr)
            failed, known = True, None
            continue
        names = variable_names(path)
        known = None if names is None or known is None else known | names
        try:
            plan = load_plan(path, values, display_path=display, require_values=False)
        except PlanError as error:
            failed = True
            for problem in error.problems:
                print(f"ERROR: {problem}", file=sys.stderr)
            continue
        for problem in plan.missing_values:
            print(f"{'ERROR' if strict else 'note'}: {problem}", file=sys.stderr)
        if strict and plan.missing_values:
            failed = True
            continue
        loaded.append((text, plan))
    for message in unknown_given(values, known) if known is not None else []:
        print(f"ERROR: {message}", file=sys.stderr)
        failed = True
    return loaded, failed


def cmd_validate(args: argparse.Namespace) -> int:
    loaded, failed = _load(args.plans, args.var, args.strict)
    for given, plan in loaded:
        print(f"{given}: OK ({len(plan.steps)} steps)")
    return 1 if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .plan import plan_json_schema

    print(json.dumps(plan_json_schema(), indent=2))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    loaded, failed = _load([args.plan], args.var, args.strict)
    if failed or not loaded:
        return 1
    plan = loaded[0][1]
    if args.format == "dot":
        print("digraph plan {")
        for step in plan.steps:
            label = step.name.replace("\\", "\\\\").replace('"', '\\"')  # names are free text
            print(f'  "{step.id}" [label="{label}"];')
            for dep in step.depends_on:
                print(f'  "{dep}" -> "{step.id}";')
        print("}")
    else:
        print("graph TD")
        ids = {s.id: f"s{i}" for i, s in enumerate(plan.steps)}
        for step in plan.steps:
            label = step.name.replace('"', "#quot;")
            print(f'  {ids[step.id]}["{label}"]')
            for dep in step.depends_on:
                print(f"  {ids[dep]} --> {ids[step.id]}")
    return 0


def cmd_plans(args: argparse.Namespace) -> int:
    """The plans shipped in the package, which ``pytest --plan NAME`` runs from any repository."""
    from .plan import Plan, VariableSpec
    from .plan.packaged import packaged_plans

    shipped: list[dict[str, Any]] = []
    for name, path in packaged_plans().items():
        plan = Plan.model_validate_json(path.read_text(encoding="utf-8"))
        variables: list[dict[str, Any]] = []
        for var, spec in plan.variables.items():
            spec = VariableSpec(default=spec) if isinstance(spec, str) else spec
            variables.append(
                {
                    "name": var,
                    "default": spec.default,
                    "env": spec.env,
                    "secret": spec.secret,
                    "required": spec.default is None and spec.env is None,
                    "description": spec.description,
                }
            )
        required = [f"{v['name']}=..." for v in variables if v["required"]]
        command = ["pytest", "--plan", name, *(arg for value in required for arg in ("--var", value))]
        shipped.append(
            {
                "name": name,
                "file": str(path),
                "plan_id": plan.plan_id,
                "description": plan.description,
                "steps": [step.id for step in plan.steps],
                "variables": variables,
                "command": shlex.join(command),
            }
        )
    if args.json:
        print(json.dumps(shipped, indent=2))
        return 0
    for index, entry in enumerate(shipped):
        if index:
            print()
        print(f"{entry['name']}  ({entry['plan_id']}, {len(entry['steps'])} steps: {' -> '.join(entry['steps'])})")
        if entry["description"]:
            print(f"  {entry['description']}")
        print(f"  run: {entry['command']}")
        for var in entry["variables"]:
            print(f"  --var {var['name']:<14} {_source(var):<34} {var['description'] or ''}".rstrip())
    return 0


def _source(var: Mapping[str, Any]) -> str:
    """Where a packaged plan's variable gets its value: ``required``, ``default 'origin', env X, secret``."""
    if var["required"]:
        where = ["required"]
    else:
        where = [f"default {var['default']!r}"] if var["default"] is not None else []
    if var["env"]:
        where.append(f"env {var['env']}")
    if var["secret"]:
        where.append("secret")
    return ", ".join(where)


def variables_text(variables: Mapping[str, Any] | None, names: Sequence[str] | None = None) -> str:
    """``NAME=value`` pairs, quoted as a shell would need them (``***`` stays as it is)."""
    shown = {k: v for k, v in (variables or {}).items() if names is None or k in names}
    return " ".join(f"{k}={v if v == '***' else shlex.quote(str(v))}" for k, v in sorted(shown.items()))


VARS_WIDTH = 40


def given_variables(run: Mapping[str, Any]) -> str:
    """The run's variables as ``planrun runs`` shows them: those given with ``--var`` (all that have
    a value for a run recorded without that list), cut to one column."""
    variables = run.get("variables") if isinstance(run.get("variables"), dict) else {}
    metadata = run.get("metadata") if isinstance(run.get("metadata"), dict) else {}
    names = metadata.get(GIVEN_KEY) if isinstance(metadata, dict) else None
    if not isinstance(names, list):
        names = [k for k, v in (variables or {}).items() if v]
    text = variables_text(variables, names)
    return text if len(text) <= VARS_WIDTH else text[: VARS_WIDTH - 1] + "…"


def cmd_runs(args: argparse.Namespace) -> int:
    runs = queries.list_runs(Path(args.ledger), state=args.state, plan_id=args.plan_id, limit=args.limit)
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    print(f"{'RUN':<14}{'STATE':<11}{'EXIT':<6}{'PLAN':<28}{'CREATED':<34}VARIABLES")
    for run in runs:
        exit_code = "" if run["exit_code"] is None else str(run["exit_code"])
        print(
            f"{run['run_id']:<14}{run['state']:<11}{exit_code:<6}{str(run['plan_id']):<28}"
            f"{str(run['created_at']):<34}{given_variables(run)}".rstrip()
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ledger = Path(args.ledger)
    run = queries.get_run_status(ledger, args.run)
    steps = queries.get_run_steps(ledger, args.run)
    events = queries.get_run_events(ledger, args.run) if args.events else None
    provided = {  # step id -> the files it handed on (``provides`` with a path)
        event["data"]["step_id"]: event["data"]["files"]
        for event in queries.get_run_events(ledger, args.run)
        if event["event_type"] == "step_provided"
    }
    if args.json:
        document: dict[str, Any] = {"run": run, "steps": steps}
        if events is not None:
            document["events"] = events
        print(json.dumps(document, indent=2, default=str))
        return 0
    print(
        f"run {run['run_id']}: {run['state']} (exit code {run['exit_code']}) plan {run['plan_id']} {run['plan_path']}"
    )
    if run["error_message"]:
        print(f"  {run['error_message']}")
    print(f"  started {run['started_at']}  ended {run['ended_at']}  logs {run['run_dir']}")
    if run.get("variables"):
        print(f"  variables {variables_text(run['variables'])}")
    for row in steps:
        duration = "" if row["duration_sec"] is None else f"{row['duration_sec']:.2f}s"
        outcome = row["outcome"] or row["state"]
        # a row of the earlier orchestrator may lack the step id and attempt planrun adds
        step_id, attempt = row["step_id"] or "?", "?" if row["attempt"] is None else row["attempt"]
        line = f"  {step_id:<24} #{attempt} {row['state']:<10} {outcome:<10} {duration:>8}"
        if row["exit_code"] is not None:
            line += f"  exit {row['exit_code']}"
        if row["reason"] or row["error_log"]:
            line += f"  {row['reason'] or row['error_log']}"
        print(line)
        if row["stdout_path"]:
            print(f"  {'':<24} logs {row['stdout_path']} {row['stderr_path']}")
        if row["state"] == "succeeded":
            for file in provided.get(step_id, ()):
                size, sha256 = file["size"], file["sha256"]
                print(f"  {'':<24} provided {file['name']}: {file['path']} ({size} bytes, sha256 {sha256})")
    if events is not None:
        print("events:")
        for event in events:
            print(f"  {event['timestamp']} {event['event_type']:<15} {json.dumps(event['data'], sort_keys=True)}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a running run (SIGTERM to its controller: as Ctrl-C) or one step of it."""
    import signal
    import socket

    from .run.control import send_cancel

    ledger = Path(args.ledger)
    run = queries.get_run_status(ledger, args.run)  # marks a run whose controller is gone canceled
    if run["state"] not in ("pending", "running"):
        print(f"planrun: run {args.run} is {run['state']}; nothing to cancel", file=sys.stderr)
        return 1
    if run["hostname"] != socket.gethostname():
        print(f"planrun: run {args.run} runs on {run['hostname']}; cancel it there", file=sys.stderr)
        return 1
    if not queries.controller_alive(run["controller_pid"], run["started_at"] or run["created_at"]):
        print(f"planrun: run {args.run} has no live controller on this machine", file=sys.stderr)
        return 1
    if args.step is None:
        os.kill(run["controller_pid"], signal.SIGTERM)
        print(f"cancelling run {args.run} (SIGTERM to controller {run['controller_pid']})")
        return 0
    created = next((e for e in queries.get_run_events(ledger, args.run) if e["event_type"] == "run_created"), None)
    known = (created or {}).get("data", {}).get("step_ids")
    if known is not None and args.step not in known:
        print(f"planrun: run {args.run} has no step '{args.step}'", file=sys.stderr)
        return 2
    try:
        send_cancel(Path(run["run_dir"]), args.step)
    except ConnectionError as error:
        print(f"planrun: run {args.run}: {error}", file=sys.stderr)
        return 1
    print(f"cancelling step '{args.step}' of run {args.run}")
    return 0


def cmd_what_if(args: argparse.Namespace) -> int:
    """What a run would do if the ``--assume``d steps ended so, from the run's own core; nothing runs."""
    from .core.whatif import parse_assumption, unknown_steps, what_if
    from .plan.rules import plan_rules, plan_variables

    try:
        assume = dict(parse_assumption(text) for text in args.assume)
    except ValueError as error:
        print(f"planrun: {error}", file=sys.stderr)
        return 2
    loaded, failed = _load([args.plan], args.var, strict=True)
    if failed or not loaded:
        return 1
    plans = [plan for _, plan in loaded]
    if unknown := unknown_steps(assume, [s.id for p in plans for s in p.steps]):
        print("\n".join(f"planrun: {message}" for message in unknown), file=sys.stderr)
        return 2
    forecast = what_if(plan_rules(plans), assume, plan_variables(plans))
    print(forecast.to_json() if args.json else "\n".join(forecast.table()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo

    return demo()


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .web import serve  # the web extra: imported only by this command
    except ImportError as error:
        print(f"planrun serve needs the web extra: pip install 'pytest-planrun[web]' ({error})", file=sys.stderr)
        return 2
    serve(Path(args.ledger), host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="planrun", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = sub.add_parser("validate", help="Check plans without running anything (values may be missing)")
    validate.add_argument("plans", nargs="+", metavar="PLAN", help="a plan file or a packaged plan's name")
    validate.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    validate.add_argument("--strict", action="store_true", help="a variable without a value is an error")
    validate.set_defaults(func=cmd_validate)
    sub.add_parser("schema", help="Print the JSON Schema of the plan format").set_defaults(func=cmd_schema)
    graph = sub.add_parser("graph", help="Print a plan's DAG as Mermaid or DOT (values may be missing)")
    graph.add_argument("plan", help="a plan file or a packaged plan's name")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    graph.add_argument("--strict", action="store_true", help="a variable without a value is an error")
    graph.set_defaults(func=cmd_graph)
    plans = sub.add_parser("plans", help="List the plans shipped with planrun (pytest --plan NAME runs one)")
    plans.add_argument("--json", action="store_true")
    plans.set_defaults(func=cmd_plans)
    runs = sub.add_parser("runs", help="List recent runs from the ledger")
    runs.add_argument("--ledger", default=DEFAULT_LEDGER)
    runs.add_argument("--state")
    runs.add_argument("--plan-id")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)
    show = sub.add_parser("show", help="Show one run: variables, steps, attempts, reasons, logs")
    show.add_argument("run")
    show.add_argument("--ledger", default=DEFAULT_LEDGER)
    show.add_argument("--events", action="store_true")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    cancel = sub.add_parser("cancel", help="Cancel a running run (as Ctrl-C would) or one step of it")
    cancel.add_argument("run")
    cancel.add_argument("step", nargs="?", help="cancel only this step: its dependents are skipped, the rest goes on")
    cancel.add_argument("--ledger", default=DEFAULT_LEDGER)
    cancel.set_defaults(func=cmd_cancel)
    what_if = sub.add_parser("what-if", help="Show what a run would do if some steps failed; nothing runs")
    what_if.add_argument("plan", help="a plan file or a packaged plan's name")
    what_if.add_argument("--assume", action="append", default=[], metavar="STEP=OUTCOME",
                         help="failed, succeeded, skipped or timed_out; repeatable (other steps succeed)")  # fmt: skip
    what_if.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    what_if.add_argument("--json", action="store_true")
    what_if.set_defaults(func=cmd_what_if)
    sub.add_parser(
        "demo", help="Run the safe-merge gate against a throwaway origin and clone in a temp directory"
    ).set_defaults(func=cmd_demo)
    serve = sub.add_parser("serve", help="Serve a live web view of the ledger's runs (127.0.0.1 by default)")
    serve.add_argument("--ledger", default=DEFAULT_LEDGER)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    offer_python()
    try:
        return int(args.func(args))
    except (FileNotFoundError, LookupError) as error:
        print(f"planrun: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
