"""What a remote xdist worker costs against a local one (not a test).

python bench/remote.py [--repeat 5] [--steps 100] [--megabytes 200] [--markdown]

The remote worker is execnet's socket server on this machine (``--tx socket=127.0.0.1:PORT//chdir=DIR``,
its own directory, so the plan reaches it over the channel); the local one is ``-n 1``. Two figures, each
the median of ``--repeat`` alternating runs:
- per-step overhead: a chain of ``--steps`` ``true`` steps, first step's start to last step's end in the
  ledger, divided by the number of steps (pytest's start-up is left out);
- streaming throughput: one step writing ``--megabytes`` MB of 100-byte lines to stdout, MB per second of
  the attempt (its start in the ledger to the last write of its log on the controller).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import execnet

SOCKET_SERVER = Path(execnet.__file__).parent / "script" / "socketserver.py"
LISTENING = re.compile(r"Entering Accept loop \('127\.0\.0\.1', (\d+)\)")
# 100-byte lines: a step's output as a build or test log has it, not one line of 200 MB
LINE = "x" * 99


@dataclass(frozen=True)
class Worker:
    process: subprocess.Popen[bytes]
    tx: str


def start_worker(directory: Path) -> Worker:
    """A socket server serving one pytest run after another, in ``directory``."""
    directory.mkdir()
    log = directory.parent / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-u", str(SOCKET_SERVER), "127.0.0.1:0"],
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while not (found := LISTENING.search(log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the socket server did not start: {log.read_text()}")
        time.sleep(0.01)
    return Worker(process, f"socket=127.0.0.1:{found.group(1)}//chdir={directory}")


def write_plan(path: Path, steps: list[dict[str, object]]) -> None:
    doc = {"plan_id": "BENCH", "version": "1", "globals": {"max_concurrency": 1, "default_timeout_sec": 600}}
    path.write_text(json.dumps({**doc, "steps": steps}))


def run(project: Path, where: list[str]) -> None:
    # --plan=plan.json, one argument: xdist 3.8 maps each argument naming an existing file onto an rsync root
    # for a remote worker and fails on a separate plan.json
    command = [sys.executable, "-m", "pytest", "--plan=plan.json", "-q", "-p", "no:cacheprovider", *where]
    done = subprocess.run(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}")


def latest_attempts(project: Path) -> list[tuple[float, float]]:
    """Start and end of every attempt of the ledger's latest run."""
    with closing(sqlite3.connect(project / ".ledger" / "framework.db")) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        rows = conn.execute("SELECT started_at, ended_at FROM step_attempts WHERE run_id = ?", (run_id,)).fetchall()
    return [(datetime.fromisoformat(s).timestamp(), datetime.fromisoformat(e).timestamp()) for s, e in rows]


def per_step_ms(project: Path, where: list[str]) -> float:
    run(project, where)
    attempts = latest_attempts(project)
    return (max(e for _, e in attempts) - min(s for s, _ in attempts)) / len(attempts) * 1000


def throughput(project: Path, where: list[str], megabytes: int) -> float:
    run(project, where)
    ((start, end),) = latest_attempts(project)
    logs = sorted((project / ".ledger" / "runs").glob("*/steps/flood/attempt-1.stdout.log"), key=os.path.getmtime)
    size = logs[-1].stat().st_size
    if size != megabytes * 10**6:
        raise RuntimeError(f"the controller's log holds {size} bytes, not {megabytes * 10**6}")
    # until the last byte is in the controller's log (a remote attempt's end is the worker's)
    landed = max(end, logs[-1].stat().st_mtime)
    logs[-1].unlink()  # the next run writes as many again
    return megabytes / (landed - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        worker = start_worker(root / "worker")
        try:
            where = {"local -n 1": ["-n", "1"], "remote socket": ["--tx", worker.tx, "--dist", "load"]}
            chain, flood = root / "chain", root / "flood"
            chain.mkdir()
            flood.mkdir()
            write_plan(
                chain / "plan.json",
                [
                    {"id": f"s{i}", "command": "true", "depends_on": [f"s{i - 1}"] if i else []}
                    for i in range(args.steps)
                ],
            )
            lines = args.megabytes * 10**6 // (len(LINE) + 1)
            write_plan(
                flood / "plan.json", [{"id": "flood", "command": "sh", "args": ["-c", f"yes {LINE} | head -n {lines}"]}]
            )
            steps_ms: dict[str, list[float]] = {name: [] for name in where}
            rates: dict[str, list[float]] = {name: [] for name in where}
            for _ in range(args.repeat):  # alternating, so a change of load hits both alike
                for name, options in where.items():
                    steps_ms[name].append(per_step_ms(chain, options))
                    rates[name].append(throughput(flood, options, args.megabytes))
        finally:
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.wait()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    rows = [
        (f"per-step overhead, chain of {args.steps} `true` (ms)", steps_ms, "{:.1f}"),
        (f"stdout throughput, one step writing {args.megabytes} MB (MB/s)", rates, "{:.0f}"),
    ]
    header = ["median of " + str(args.repeat), *where]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print("  ".join(header))
    for title, values, fmt in rows:
        cells = [title, *(fmt.format(statistics.median(values[name])) for name in where)]
        print("| " + " | ".join(cells) + " |" if args.markdown else "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
