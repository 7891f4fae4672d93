"""A remote worker's watchdog: when the worker ends, however it ends, nothing its steps started on
that machine goes on, and its temporary folder goes too.

The controller's sweep of leftover processes (``sweep_orphans`` at the end of a run, or when a
worker is lost) sees only the controller's machine. A remote worker therefore starts a small process
of its own that waits for end of file on a pipe only the worker holds: the worker's exit closes it,
a ``kill -9`` or a crash included, and the watchdog then sweeps that machine for the run's processes.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# (a process of its own: the worker may be gone when it acts)
WATCH = """
import shutil, sys
sys.stdin.buffer.read()  # end of file: the worker is gone
from pytest_planrun.run.process import sweep_orphans
sweep_orphans(sys.argv[1], grace=float(sys.argv[2]))
shutil.rmtree(sys.argv[3], ignore_errors=True)
"""


def start_watchdog(run_id: str, grace: float, folder: Path) -> int:
    """Start the watchdog for ``run_id``, which also removes the worker's temporary ``folder`` (its
    run directory: a killed worker cannot); returns the pipe's write end, to keep open while the
    worker lives (closing it also sets the watchdog off)."""
    read_end, write_end = os.pipe()  # not inherited by the steps: Python makes both ends close-on-exec
    # not itself part of the run (a sweep would kill it), and out of the worker's process group
    env = {name: value for name, value in os.environ.items() if not name.startswith("PLANRUN_")}
    try:
        subprocess.Popen(
            [sys.executable, "-c", WATCH, run_id, str(grace), str(folder)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(read_end)
    return write_end
