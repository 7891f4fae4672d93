"""``planrun serve`` under viewers: its memory and CPU with 1 and with 20 pages following a live run.

Starts a run whose step prints a line every 0.1 s, then ``planrun serve --port 0`` on its ledger,
connects N event-stream clients to the run and samples the server's RSS and CPU time over a window.
Not a test: figures depend on the machine. ``python bench/serve_viewers.py --viewers 1 20 --window 10``
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
import psutil

from pytest_planrun.ledger import queries

PLAN = {
    "plan_id": "BENCH-SERVE",
    "version": "1.0",
    "globals": {"max_concurrency": 1, "default_timeout_sec": 600},
    "steps": [{"id": "chatty", "command": "sh", "args": ["-c", "while true; do echo tick; sleep 0.1; done"]}],
}


def follow(url: str, stop: threading.Event, counts: list[int], index: int) -> None:
    with httpx.Client(trust_env=False, timeout=60) as client, client.stream("GET", url) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                counts[index] += 1
            if stop.is_set():
                return


def measure(base: str, run_id: str, server: psutil.Process, viewers: int, window: float) -> dict[str, float]:
    stop = threading.Event()
    counts = [0] * viewers
    url = f"{base}/runs/{run_id}/events"
    threads = [threading.Thread(target=follow, args=(url, stop, counts, i), daemon=True) for i in range(viewers)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # let every viewer connect and get its first snapshot
    cpu0, received0, start = server.cpu_times(), sum(counts), time.monotonic()
    peak = 0
    while time.monotonic() - start < window:
        peak = max(peak, server.memory_info().rss)
        time.sleep(0.2)
    cpu1, elapsed = server.cpu_times(), time.monotonic() - start
    stop.set()
    return {
        "viewers": viewers,
        "rss_mib": round(peak / 2**20, 1),
        "cpu_percent": round(100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed, 1),
        "snapshots_per_viewer_per_sec": round((sum(counts) - received0) / viewers / elapsed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "plan.json").write_text(json.dumps(PLAN))
        run = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--plan", "plan.json", "-p", "no:cacheprovider", "-q"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ledger = root / ".ledger" / "framework.db"
        while not (ledger.exists() and queries.list_runs(ledger, state="running")):
            time.sleep(0.1)
        run_id = queries.list_runs(ledger, state="running")[0]["run_id"]
        serve = subprocess.Popen(
            [sys.executable, "-m", "pytest_planrun.cli", "serve", "--ledger", str(ledger), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert serve.stdout is not None
            base = re.search(r"http://\S+:\d+", serve.stdout.readline())
            assert base, "no address printed"
            server = psutil.Process(serve.pid)
            print(f"idle server: rss {server.memory_info().rss / 2**20:.1f} MiB")
            for viewers in args.viewers:
                print(json.dumps(measure(base.group().rstrip("/"), run_id, server, viewers, args.window)))
        finally:
            serve.terminate()
            serve.wait(timeout=30)
            run.terminate()
            run.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
