"""Remote xdist workers on this machine for planrun's tests: execnet socket servers, each with its own
directory (its cwd, HOME and TMPDIR) and environment, and, where the machine allows it, its own mount
namespace in which the controller's files are hidden and its own files are out of the controller's sight.

Isolated, a worker behaves like another machine for every file: anything planrun passes through the shared
disk instead of the xdist channel (the plan, logs, provided files, locks) fails. Its directory is a bind
mount, in its namespace only, of a backing directory the test reads (``files()``), during the worker's life
and after it. The controller then runs in
its own PID namespace (``CONTROLLER_PREFIX``), so it cannot see or signal the workers' processes either, as
it could not on another machine: a step a lost worker leaves running is not cleaned up by the controller's
sweep of its own machine. The test itself sees every process. A socket server serves one connection at a
time and accepts the next when it ends, so one worker can serve several pytest runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import execnet
import psutil
from planhelpers import processes_of_run

# execnet's own server: ``python -u socketserver.py HOST:PORT`` execs each connection's gateway in its process,
# so the xdist worker (and every step it starts) runs inside the server process.
SOCKET_SERVER = Path(execnet.__file__).parent / "script" / "socketserver.py"
LISTENING = re.compile(r"Entering Accept loop \('127\.0\.0\.1', (\d+)\)")
# Inside the new mount namespace: the worker's directory ($1) becomes its backing directory ($2), then each
# of "$@" (the controller's files, the backing directories) is hidden under an empty tmpfs, and the server
# starts in that directory (exec: the pid stays the same).
ISOLATED_START = (
    'worker="$1"; backing="$2"; python="$3"; server="$4"; shift 4; '
    'mount --bind "$backing" "$worker" || exit 90; '
    'for hidden in "$@"; do mount -t tmpfs tmpfs "$hidden" || exit 91; done; '
    'cd "$worker" && exec "$python" -u "$server" 127.0.0.1:0'
)


# The controller of an isolated run: PID 1 of a new PID namespace with its own /proc, killed with ``unshare``
# (which the test starts and may kill). Workers stay in the test's namespace: a killed worker's steps must
# not be cleaned up by the kernel ending a namespace, as nothing would on another machine.
CONTROLLER_PREFIX = ["unshare", "--pid", "--kill-child", "--mount-proc"]
BACKING = "backing"  # under the pool's base: the isolated workers' files, hidden from every worker


def isolation_available(scratch: Path) -> bool:
    """Whether runs can be isolated here: root, ``unshare`` present, a tmpfs mount inside a private mount
    namespace works (for the workers) and so does a PID namespace with its own /proc (for the controller);
    containers often refuse one or the other."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = Path(tempfile.mkdtemp(dir=scratch, prefix="probe-"))
    try:
        mount = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$1"', "sh", str(probe)]
        pid_namespace = [*CONTROLLER_PREFIX, "true"]
        return all(
            subprocess.run(argv, capture_output=True, timeout=30).returncode == 0 for argv in (mount, pid_namespace)
        )
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@dataclass
class RemoteWorker:
    """One socket server standing for a remote machine; ``tx`` is its ``--tx`` value."""

    name: str
    directory: Path  # where it works, as the worker sees it (empty to the test when isolated)
    backing: Path  # the same files as the test sees them (``directory`` itself when not isolated)
    log: Path
    isolated: bool
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def tx(self) -> str:
        return f"socket=127.0.0.1:{self.port}//chdir={self.directory}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (and so the xdist worker running in it), by pid; reap it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def seen(self, path: Path) -> Path:
        """Where the test finds what the worker sees at ``path``: for a path in its directory (its HOME and
        TMPDIR too) even after the worker ended, elsewhere through its mount namespace while it lives."""
        if path.is_relative_to(self.directory):
            return self.backing / path.relative_to(self.directory)
        return Path(f"/proc/{self.pid}/root") / path.relative_to("/") if self.isolated else path

    def files(self) -> Path:
        """The worker's directory as the worker sees it."""
        return self.backing

    def clear(self) -> None:
        """Remove what earlier runs left in the worker's directory, so a test sees only its own files."""
        # tolerant: the worker's previous session may still be removing its own temporary folders
        for entry in self.files().iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def worker_environment(name: str, directory: Path) -> dict[str, str]:
    """A worker's own environment: none of the test's variables (PYTEST_ADDOPTS, PLANRUN_LOCK_DIR, ...),
    its own HOME and TMPDIR, and ``PLANRUN_TEST_WORKER`` naming it so a step can say where it ran."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(directory),
        "TMPDIR": str(directory),
        "PLANRUN_TEST_WORKER": name,
    }


def start_worker(name: str, base: Path, hidden: list[Path], isolate: bool, timeout: float = 30.0) -> RemoteWorker:
    """Start one socket server with its directory ``base/name`` and wait until it listens.

    ``hidden``: the controller's directories the worker must not see (only when ``isolate``)."""
    directory = base / name
    directory.mkdir(parents=True, exist_ok=True)
    backing = base / BACKING / name if isolate else directory
    backing.mkdir(parents=True, exist_ok=True)
    log = base / f"{name}.server.log"
    python = sys.executable
    if isolate:
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", ISOLATED_START, "sh"]
        argv += [str(directory), str(backing), python, str(SOCKET_SERVER), *map(str, [*hidden, base / BACKING])]
    else:
        argv = [python, "-u", str(SOCKET_SERVER), "127.0.0.1:0"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=directory,
            env=worker_environment(name, directory),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the test's process group is not one to the remote machine
        )
    deadline = time.monotonic() + timeout
    while not (found := LISTENING.search(log.read_text(errors="replace"))):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
            raise RuntimeError(f"worker {name} did not start (exit {process.returncode}): {log.read_text()}")
        time.sleep(0.01)  # polls the server's first line; the interval sets no order
    return RemoteWorker(name, directory, backing, log, isolate, process, int(found.group(1)))


Workers = Callable[[int], list[RemoteWorker]]  # the ``remote_workers`` fixture: n live, cleared workers


@dataclass
class WorkerPool:
    """Remote workers shared by the tests of one process: ``get(n)`` hands out ``n`` live, cleared
    workers, starting new ones in place of those a test killed."""

    base: Path
    hidden: list[Path]
    isolated: bool
    workers: list[RemoteWorker] = field(default_factory=list)
    started: int = 0

    def get(self, count: int) -> list[RemoteWorker]:
        for index, worker in enumerate(self.workers):
            if not worker.alive():
                worker.kill()  # reaps it
                self.workers[index] = self._start()
        while len(self.workers) < count:
            self.workers.append(self._start())
        chosen = self.workers[:count]
        for worker in chosen:
            worker.clear()
        return chosen

    def _start(self) -> RemoteWorker:
        self.started += 1
        return start_worker(f"w{self.started}", self.base, self.hidden, self.isolated)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers.clear()
        shutil.rmtree(self.base, ignore_errors=True)


def processes_left(run_id: str, timeout: float = 10.0) -> list[str]:
    """The run's processes (PLANRUN_RUN_ID in their environment, on the controller's side or a worker's)
    still alive after up to ``timeout`` s (a killed tree may take a moment to go): pid, step, command."""
    deadline = time.monotonic() + timeout
    while (left := processes_of_run(run_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = []
    for proc in left:
        try:
            step = proc.environ().get("PLANRUN_STEP_ID")
            described.append(f"{proc.pid} (step {step}): {' '.join(proc.cmdline())}")
        except psutil.Error:
            continue  # gone meanwhile
    return described


def controller_prefix(workers: list[RemoteWorker]) -> list[str]:
    """What the controller's command starts with for a run on ``workers``: its own PID namespace if they
    are isolated."""
    return CONTROLLER_PREFIX if workers and workers[0].isolated else []


def tx_args(workers: list[RemoteWorker]) -> list[str]:
    """``--tx`` options for ``workers``, in order: the first is gw0, the second gw1, ..."""
    return [arg for worker in workers for arg in ("--tx", worker.tx)]
