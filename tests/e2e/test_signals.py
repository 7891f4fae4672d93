"""Ctrl-C and SIGTERM to pytest during a step: its process tree dies, nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from planhelpers import sh


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_interrupt_kills_the_running_tree(
    pytester: pytest.Pytester, write_plan: Callable[..., Path], sig: signal.Signals, mode: list[str]
) -> None:
    script = "sh -c 'sleep 300 & echo $! > grandchild.pid; wait' & echo $! > child.pid; wait"
    write_plan([sh("long", script), sh("after", "touch after.ran", depends_on=["long"])])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--plan", "plan.json", "-p", "no:cacheprovider", *mode],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(pytester.path / "grandchild.pid")
        pids = [int((pytester.path / n).read_text()) for n in ("child.pid", "grandchild.pid")]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not (pytester.path / "after.ran").exists()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], out
    assert os.environ.get("PLANRUN_RUN_ID") is None
