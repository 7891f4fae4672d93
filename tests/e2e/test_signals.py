"""Ctrl-C and SIGTERM to pytest during a step: its process tree dies, nothing is left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from planhelpers import kill_run_processes, processes_of_run, sh, stop, survivors, wait_for, write_pid

from pytest_planrun.ledger import queries


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize(
    ("mode", "cap"), [([], 1), ([], 2), (["-n", "2"], 1)], ids=["serial", "in-process-concurrent", "xdist"]
)
def test_interrupt_kills_the_running_tree(
    pytester: pytest.Pytester,
    write_plan: Callable[..., Path],
    request: pytest.FixtureRequest,
    sig: signal.Signals,
    mode: list[str],
    cap: int,
) -> None:
    grandchild = f"sh -c '{write_pid('grandchild.pid')}; exec sleep 300'"
    script = f"{grandchild} & {write_pid('child.pid', '$!')}; wait"
    write_plan([sh("long", script), sh("after", "touch after.ran", depends_on=["long"])], max_concurrency=cap)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--plan", "plan.json", "-p", "no:cacheprovider", *mode],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    request.addfinalizer(lambda: stop(proc))
    tree = [psutil.Process(int(wait_for(pytester.path / n))) for n in ("child.pid", "grandchild.pid")]
    # the run's id reached the bottom of the tree: what lets the run find a process that escaped it
    run_id = tree[1].environ()["PLANRUN_RUN_ID"]
    request.addfinalizer(lambda: kill_run_processes(run_id))  # only if the run failed to
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not (pytester.path / "after.ran").exists()
    assert survivors([p.pid for p in tree]) == [], out
    assert processes_of_run(run_id) == [], out
    run = queries.get_run_status(pytester.path / ".ledger" / "framework.db", run_id)
    assert run is not None and run["state"] == "canceled"
