"""The real server (uvicorn) against live runs: state changes arrive as events, cancel buttons cancel."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
from planhelpers import eventually, sh
from webhelpers import EventStream, LiveRun, Server, step_state


def test_a_state_change_arrives_as_an_event_with_one_watcher_for_all_viewers(
    start_run: Callable[..., LiveRun], serve: Callable[[Path], Server]
) -> None:
    run = start_run([sh("gate", "echo waiting; while [ ! -f go ]; do sleep 0.05; done; echo through")])
    server = serve(run.ledger)
    url = f"{server.url}/runs/{run.run_id}/events"
    viewers = [EventStream(url) for _ in range(3)]
    runs_list = EventStream(f"{server.url}/events")
    runs_list.wait_for(lambda p: [r["state"] for r in p["runs"]] == ["running"], "the list showing the run")
    for viewer in viewers:
        viewer.wait_for(lambda p: step_state(p, "gate") == "running", "gate running")
    feeds = server.app.state.broadcaster.feeds
    assert sorted(feeds) == [f"run:{run.run_id}", "runs"] and len(feeds[f"run:{run.run_id}"].subscribers) == 3
    (run.root / "go").touch()
    seen = [viewer.wait_for(lambda p: step_state(p, "gate") == "succeeded", "gate succeeded") for viewer in viewers]
    assert all(done["steps"][0]["log"]["stdout"] == "waiting\nthrough\n" for done in seen)
    # the step's end and the run's end may arrive in one snapshot (a run in one process ends at once)
    final = seen[0]
    if final["run"]["state"] != "succeeded":
        final = viewers[0].wait_for(lambda p: p["run"]["state"] == "succeeded", "the run's end")
    assert final["live"] is False and [e["type"] for e in final["events"]][-1] == "run_completed"
    runs_list.wait_for(lambda p: [r["state"] for r in p["runs"]] == ["succeeded"], "the list showing its end")


def test_cancel_buttons_cancel_a_running_step_and_then_the_run(
    start_run: Callable[..., LiveRun], serve: Callable[[Path], Server]
) -> None:
    run = start_run(
        [
            sh("long", "echo $$ > long.pid; sleep 60"),
            sh("after", "true", depends_on=["long"]),
            sh("other", "echo $$ > other.pid; sleep 60"),
        ],
        "-n",
        "2",
    )
    server = serve(run.ledger)
    stream = EventStream(f"{server.url}/runs/{run.run_id}/events")
    stream.wait_for(lambda p: step_state(p, "long") == step_state(p, "other") == "running", "both running")
    long_pid = int(eventually(lambda: (run.root / "long.pid").is_file() and (run.root / "long.pid").read_text(), "pid"))
    with server.client() as client:
        refused = client.post(f"/runs/{run.run_id}/steps/long/cancel")
        assert refused.status_code == 403
        answer = client.post(
            f"/runs/{run.run_id}/steps/long/cancel",
            headers={"x-planrun-token": server.token, "accept": "application/json", "origin": server.url},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"ok": True, "message": f"cancelling step 'long' of run {run.run_id}"}
        stream.wait_for(lambda p: step_state(p, "long") == "canceled", "long cancelled")
        eventually(lambda: not psutil.pid_exists(long_pid) or psutil.Process(long_pid).status() == "zombie", "exit")
        assert run.outcome("after") == "skipped" and run.running("other")
        whole = client.post(f"/runs/{run.run_id}/cancel", data={"token": server.token}, headers={"origin": server.url})
        assert whole.status_code == 303 and whole.headers["location"] == f"/runs/{run.run_id}"
    end = stream.wait_for(lambda p: p["run"]["state"] == "canceled", "the run cancelled")
    assert step_state(end, "other") == "canceled"
    assert run.proc.wait(timeout=60) == 2


def test_planrun_serve_prints_its_address_and_stops_with_open_streams(finished: tuple[Path, str]) -> None:
    ledger, run_id = finished
    command = [sys.executable, "-m", "pytest_planrun.cli", "serve", "--ledger", str(ledger), "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = re.match(r"planrun serve: (http://127\.0\.0\.1:\d+)/ ", proc.stdout.readline())
        assert address, "no address printed"
        stream = EventStream(f"{address.group(1)}/runs/{run_id}/events")
        assert stream.wait_for(lambda p: p["run"]["run_id"] == run_id, "the run", timeout=30)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=15) == 0
        stream.thread.join(timeout=15)
        assert not stream.thread.is_alive()  # the server ended the stream instead of waiting on it
        assert "Traceback" not in proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
