"""The ``planrun`` command: what is not a test run (validate, schema, graph, runs, show, cancel, demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .api import DEFAULT_LEDGER
from .ledger import queries


def _vars(pairs: Sequence[str]) -> dict[str, str]:
    result = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"planrun: --var expects NAME=VALUE, got {text!r}")
        result[name] = value
    return result


def cmd_validate(args: argparse.Namespace) -> int:
    from .plan import PlanError, load_plan

    failed = False
    for path in args.plans:
        try:
            plan = load_plan(path, _vars(args.var), display_path=path)
        except PlanError as error:
            failed = True
            for problem in error.problems:
                print(f"ERROR: {problem}", file=sys.stderr)
        else:
            print(f"{path}: OK ({len(plan.steps)} steps)")
    return 1 if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .plan import plan_json_schema

    print(json.dumps(plan_json_schema(), indent=2))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from .plan import PlanError, load_plan

    try:
        plan = load_plan(args.plan, _vars(args.var), display_path=args.plan)
    except PlanError as error:
        for problem in error.problems:
            print(f"ERROR: {problem}", file=sys.stderr)
        return 1
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


def cmd_runs(args: argparse.Namespace) -> int:
    runs = queries.list_runs(Path(args.ledger), state=args.state, plan_id=args.plan_id, limit=args.limit)
    print(f"{'RUN':<14}{'STATE':<11}{'EXIT':<6}{'PLAN':<28}{'CREATED'}")
    for run in runs:
        exit_code = "" if run["exit_code"] is None else str(run["exit_code"])
        print(f"{run['run_id']:<14}{run['state']:<11}{exit_code:<6}{str(run['plan_id']):<28}{run['created_at']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ledger = Path(args.ledger)
    run = queries.get_run_status(ledger, args.run)
    print(
        f"run {run['run_id']}: {run['state']} (exit code {run['exit_code']}) plan {run['plan_id']} {run['plan_path']}"
    )
    if run["error_message"]:
        print(f"  {run['error_message']}")
    print(f"  started {run['started_at']}  ended {run['ended_at']}  logs {run['run_dir']}")
    for row in queries.get_run_steps(ledger, args.run):
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
    if args.events:
        print("events:")
        for event in queries.get_run_events(ledger, args.run):
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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo

    return demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planrun", description="Plans of command steps, run as pytest items")
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="Check plans without running anything")
    validate.add_argument("plans", nargs="+", metavar="PLAN")
    validate.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    validate.set_defaults(func=cmd_validate)
    sub.add_parser("schema", help="Print the JSON Schema of the plan format").set_defaults(func=cmd_schema)
    graph = sub.add_parser("graph", help="Print a plan's DAG as Mermaid or DOT")
    graph.add_argument("plan")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    graph.set_defaults(func=cmd_graph)
    runs = sub.add_parser("runs", help="List recent runs from the ledger")
    runs.add_argument("--ledger", default=DEFAULT_LEDGER)
    runs.add_argument("--state")
    runs.add_argument("--plan-id")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=cmd_runs)
    show = sub.add_parser("show", help="Show one run: steps, attempts, reasons, logs")
    show.add_argument("run")
    show.add_argument("--ledger", default=DEFAULT_LEDGER)
    show.add_argument("--events", action="store_true")
    show.set_defaults(func=cmd_show)
    cancel = sub.add_parser("cancel", help="Cancel a running run (as Ctrl-C would) or one step of it")
    cancel.add_argument("run")
    cancel.add_argument("step", nargs="?", help="cancel only this step: its dependents are skipped, the rest goes on")
    cancel.add_argument("--ledger", default=DEFAULT_LEDGER)
    cancel.set_defaults(func=cmd_cancel)
    sub.add_parser(
        "demo", help="Run the safe-merge gate against a throwaway origin and clone in a temp directory"
    ).set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PLANRUN_PYTHON", sys.executable)  # as the pytest plugin does
    try:
        return int(args.func(args))
    except (FileNotFoundError, LookupError) as error:
        print(f"planrun: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
