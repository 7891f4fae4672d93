"""Helpers for the web view's tests: live runs, a real server in a thread, event streams."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import uvicorn
from planhelpers import eventually, plan_doc
from starlette.applications import Starlette

from pytest_planrun.ledger import queries
from pytest_planrun.web.server import bind

HOSTILE_NAME = "<script>window.pwnedName=1</script>"
HOSTILE_OUTPUT = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


def write_plan(root: Path, steps: list[dict[str, Any]], **globals_: Any) -> None:
    doc = plan_doc(steps, **globals_)
    doc["plan_id"] = "WEB<b>plan</b>"
    doc["variables"] = {"WHO": {"default": "<i>me</i>"}}
    (root / "plan.json").write_text(json.dumps(doc))


def planrun_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "--plan", "plan.json", "-p", "no:cacheprovider", *args]


class LiveRun:
    """A run in a subprocess this test started; ``stop`` ends it if the test did not."""

    def __init__(self, root: Path, steps: list[dict[str, Any]], *args: str) -> None:
        self.root = root
        write_plan(root, steps, max_concurrency=3)
        self.proc = subprocess.Popen(planrun_command(*args), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.ledger = root / ".ledger" / "framework.db"
        runs = eventually(lambda: self.ledger.exists() and queries.list_runs(self.ledger, state="running"), "the run")
        self.run_id = str(runs[0]["run_id"])

    def running(self, step_id: str) -> bool:
        return any(
            r["step_id"] == step_id and r["state"] == "running" for r in queries.get_run_steps(self.ledger, self.run_id)
        )

    def outcome(self, step_id: str) -> str | None:
        rows = [r for r in queries.get_run_steps(self.ledger, self.run_id) if r["step_id"] == step_id]
        return str(rows[-1]["outcome"]) if rows and rows[-1]["outcome"] else None

    def event_time(self, event_type: str, step_id: str) -> float:
        """When the run wrote an event (wall clock), from its events.jsonl."""
        run_dir = Path(queries.get_run_status(self.ledger, self.run_id)["run_dir"])
        for line in (run_dir / "events.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event["event_type"] == event_type and event["data"].get("step_id") == step_id:
                return datetime.fromisoformat(event["timestamp"]).timestamp()
        raise AssertionError(f"no {event_type} event for {step_id}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()  # the controller cancels its steps as on Ctrl-C
        out = self.proc.communicate(timeout=60)[0]
        return out.decode(errors="replace")


class Server:
    """The app served by uvicorn on 127.0.0.1, on a free port, in a thread of this process."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        eventually(lambda: self.server.started, "the server to start", timeout=30)

    @property
    def token(self) -> str:
        return str(self.app.state.token)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def stop(self) -> None:
        self.app.state.broadcaster.close_threadsafe()  # as `planrun serve` does on Ctrl-C
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


class EventStream:
    """The payloads of one server-sent event stream, read on a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.payloads: queue.Queue[dict[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=httpx.Timeout(60)) as client:
                with client.stream("GET", self.url) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            self.payloads.put(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError:
            pass  # the server stopped

    def wait_for(self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60) -> dict[str, Any]:
        """The first payload that passes ``check``; fails after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no event with {what} within {timeout}s"
            try:
                payload = self.payloads.get(timeout=remaining)
            except queue.Empty:
                continue
            if check(payload):
                return payload


def step_state(payload: dict[str, Any], step_id: str) -> str:
    return str(next(s["state"] for s in payload["steps"] if s["step_id"] == step_id))
