"""Time ``pytest --plan`` against ``make -jN`` on the same DAGs, side by side (not a test).

python bench/bench.py [--cases 1,2,3,4,5] [--repeat 5] [--bytecode cached,none] [--mode in-process|xdist] [--markdown]

Each figure is taken under two bytecode conditions: ``cached`` (Python's default: a warm
``__pycache__``) and ``none`` (``PYTHONDONTWRITEBYTECODE=1`` with an empty ``PYTHONPYCACHEPREFIX``:
what a fresh CI container sees, where every start compiles, and assertion-rewrites, every module).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

Step = tuple[str, str, list[str]]  # id, shell command, dependencies


@dataclass(frozen=True)
class Case:
    number: int
    title: str
    workers: int
    steps: Callable[[], list[Step]]


def chain(n: int, command: str) -> list[Step]:
    return [(f"s{i}", command, [f"s{i - 1}"] if i else []) for i in range(n)]


def layers(count: int, width: int, command: str, fan_in: int | None = None) -> list[Step]:
    steps: list[Step] = []
    for layer in range(count):
        for i in range(width):
            if layer == 0:
                deps: list[str] = []
            elif fan_in is None:
                deps = [f"l{layer - 1}_{j}" for j in range(width)]
            else:
                deps = [f"l{layer - 1}_{(i + k) % width}" for k in range(fan_in)]
            steps.append((f"l{layer}_{i}", command, deps))
    return steps


def critical_path() -> list[Step]:
    shorts: list[Step] = [(f"short{i}", "sleep 0.01", []) for i in range(100)]
    return shorts + [(f"c{i}", "sleep 0.1", [f"c{i - 1}"] if i else []) for i in range(20)]


CASES = [
    Case(1, "chain of 200 `true`", 1, lambda: chain(200, "true")),
    Case(2, "64 independent `sleep 0.5`", 8, lambda: [(f"s{i}", "sleep 0.5", []) for i in range(64)]),
    Case(
        3, "10 layers x 20 `sleep 0.05`, each needs the whole previous layer", 4, lambda: layers(10, 20, "sleep 0.05")
    ),
    Case(4, "10,000 `true` in 100 layers (2 deps each)", 2, lambda: layers(100, 100, "true", fan_in=2)),
    Case(5, "100 short steps declared before a 20 x 0.1 s chain", 4, critical_path),
]


def write_plan(path: Path, steps: list[Step], workers: int) -> None:
    doc = {
        "plan_id": "BENCH",
        "version": "1",
        "globals": {"max_concurrency": workers, "default_timeout_sec": 600},
        "steps": [
            {"id": sid, "command": "sh", "args": ["-c", cmd], "depends_on": deps}
            if cmd != "true"
            else {"id": sid, "command": "true", "depends_on": deps}
            for sid, cmd, deps in steps
        ],
    }
    path.write_text(json.dumps(doc))


def write_makefile(path: Path, steps: list[Step]) -> None:
    users = {d for _, _, deps in steps for d in deps}
    sinks = [sid for sid, _, _ in steps if sid not in users]
    lines = [".PHONY: all " + " ".join(sid for sid, _, _ in steps), f"all: {' '.join(sinks)}"]
    for sid, cmd, deps in steps:
        lines += [f"{sid}: {' '.join(deps)}", f"\t@{cmd}"]
    path.write_text("\n".join(lines) + "\n")


# Python's default: bytecode is cached. Without a cache every pytest start (and every xdist worker)
# compiles and rewrites the assertions of each plugin module again.
CACHED_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}


def uncached_env(empty_dir: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE alone still reads a __pycache__ left by an earlier run; the empty
    # prefix makes every start find none, as in a fresh container
    return {**CACHED_ENV, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(empty_dir)}


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}")
    return elapsed


def step_span(ledger: Path) -> float:
    """From the first step's start to the last step's end in the ledger's latest run: the run
    without pytest's start-up and shutdown, what make's wall time is to make."""
    with closing(sqlite3.connect(ledger)) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        first, last = conn.execute(
            "SELECT MIN(started_at), MAX(ended_at) FROM step_attempts WHERE run_id = ?", (run_id,)
        ).fetchone()
    return datetime.fromisoformat(last).timestamp() - datetime.fromisoformat(first).timestamp()


def pytest_command(workers: int, ledger: Path | None = None, mode: str = "in-process") -> list[str]:
    # in-process: no -n, the plan's max_concurrency steps at once in one pytest; xdist: N workers
    workers_args = ["-n", str(workers if workers > 1 else 0)] if mode == "xdist" else []
    return [
        sys.executable,
        "-m",
        "pytest",
        "--plan",
        "plan.json",
        "-q",
        "-p",
        "no:cacheprovider",
        *(["--planrun-ledger", str(ledger)] if ledger else ["--planrun-no-ledger"]),
        *workers_args,
    ]


def cpu_timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """CPU seconds (user + system) the command used: steadier than wall time on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed(command, cwd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def unused_plugin_startup(root: Path, repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """Median CPU time of ``pytest --collect-only`` on a 3-test project with planrun installed but
    not used, and with it disabled (``-p no:planrun``); the runs alternate, so load changes hit both
    alike."""
    project = root / "three-tests"
    project.mkdir(exist_ok=True)
    (project / "test_three.py").write_text("def test_a(): pass\ndef test_b(): pass\ndef test_c(): pass\n")
    base = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    with_plugin, without = [], []
    for _ in range(repeat):
        with_plugin.append(cpu_timed(base, project, env))
        without.append(cpu_timed([*base, "-p", "no:planrun"], project, env))
    return statistics.median(with_plugin), statistics.median(without)


def peak_rss_mb(command: list[str], cwd: Path) -> float:
    """Peak resident memory of the controller process (the pytest we start; not its workers)."""
    proc = psutil.Popen(command, cwd=cwd, env=CACHED_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="1,2,3,4,5")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bytecode", default="cached,none", help="conditions to measure: cached, none or both")
    parser.add_argument("--mode", choices=["in-process", "xdist"], default="in-process")
    parser.add_argument("--startup-repeat", type=int, default=11, help="runs of the unused-plugin start-up")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    wanted = {int(c) for c in args.cases.split(",") if c}
    conditions = [c for c in args.bytecode.split(",") if c]
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for condition in conditions:
            empty = root / f"pycache-{condition}"
            empty.mkdir()
            env = CACHED_ENV if condition == "cached" else uncached_env(empty)
            if condition == "cached":  # warm the cache first, as a user's second run finds it
                timed([sys.executable, "-m", "pytest", "--version"], root, env)
            print(f"\n## bytecode {condition}, mode {args.mode}")
            measure(root / condition, wanted, args, env)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    return 0


def measure(root: Path, wanted: set[int], args: argparse.Namespace, env: dict[str, str]) -> None:
    root.mkdir()
    with_plugin, without = unused_plugin_startup(root, args.startup_repeat, env)
    print(
        f"pytest --collect-only, 3 tests, CPU time, median of {args.startup_repeat}: "
        f"planrun installed {with_plugin * 1000:.0f} ms, -p no:planrun {without * 1000:.0f} ms, "
        f"difference {(with_plugin - without) * 1000:+.0f} ms"
    )
    rows = []
    write_plan(root / "plan.json", [("only", "true", [])], 1)
    # pytest's own cost to start and stop a plan, with as much concurrency as a case uses
    startups = {}
    for n in sorted({c.workers for c in CASES if c.number in wanted} | {1}):
        write_plan(root / "plan.json", [("only", "true", [])], n)
        startups[n] = min(
            timed(pytest_command(n, root / "ledger.db", args.mode), root, env) for _ in range(args.repeat)
        )
    for case in CASES:
        if case.number not in wanted:
            continue
        work = root / f"case{case.number}"
        work.mkdir()
        steps = case.steps()
        write_plan(work / "plan.json", steps, case.workers)
        write_makefile(work / "Makefile", steps)
        make_times, pytest_times, spans = [], [], []
        ledger = work / "ledger.db"  # recorded as a user's run is: the ledger is on by default
        for _ in range(args.repeat if case.number != 4 else max(1, args.repeat // 2)):
            make_times.append(timed(["make", f"-j{case.workers}", "-s", "all"], work, env))
            pytest_times.append(timed(pytest_command(case.workers, ledger, args.mode), work, env))
            spans.append(step_span(ledger))
        rows.append((case, len(steps), make_times, pytest_times, spans))
        print(f"case {case.number} done: make {min(make_times):.2f}s pytest {min(pytest_times):.2f}s", file=sys.stderr)
    extra = []
    if 4 in wanted:
        work = root / "case4"
        collect_only = [sys.executable, "-m", "pytest", "--plan", "plan.json", "--collect-only", "-q"]
        collect = min(
            timed([*collect_only, "-p", "no:cacheprovider", "--planrun-no-ledger"], work, env)
            for _ in range(max(1, args.repeat // 2))
        )
        extra.append(f"validate+collect of the 10,000-step plan: {collect:.2f} s (pytest start-up included)")
        rss = peak_rss_mb(pytest_command(2, mode=args.mode), work)
        extra.append(f"controller peak memory on case 4: {rss:.0f} MB")
    print("pytest start-up and shutdown (1-step plan): " + ", ".join(f"N={n}: {t:.2f} s" for n, t in startups.items()))
    if args.markdown:
        print(
            "\n| case | steps | N | make min / median | pytest --plan min / median | ratio to make (median) "
            "| after start-up (min) | first step start to last step end (min / median) |"
        )
        print("|---|---|---|---|---|---|---|---|")
    for case, count, make_times, pytest_times, spans in rows:
        after_startup = min(pytest_times) - startups[case.workers]
        cells = (
            f"{case.number}. {case.title}",
            str(count),
            str(case.workers),
            f"{min(make_times):.2f} / {statistics.median(make_times):.2f} s",
            f"{min(pytest_times):.2f} / {statistics.median(pytest_times):.2f} s",
            f"{statistics.median(pytest_times) / statistics.median(make_times):.2f}x",
            f"{after_startup:.2f} s",
            f"{min(spans):.2f} / {statistics.median(spans):.2f} s",
        )
        print("| " + " | ".join(cells) + " |" if args.markdown else "  ".join(cells))
        if case.number in (1, 4):
            per_step = (min(pytest_times) - min(make_times) - startups[case.workers]) / count * 1000
            extra.append(f"case {case.number}: per-step overhead above make after start-up: {per_step:.2f} ms")
    for line in extra:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
