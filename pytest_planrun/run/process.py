"""One attempt of a step as a process: spawn, save output, wait without polling, kill the whole tree."""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import psutil

log = logging.getLogger(__name__)

CHUNK = 65536


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    argv: tuple[str, ...]
    shell: bool
    cwd: Path
    env: Mapping[str, str]
    timeout: float | None
    stdout_path: Path
    stderr_path: Path
    secrets: tuple[str, ...] = ()
    kill_grace: float = 3.0


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    exit_code: int | None
    timed_out: bool
    cancelled: str | None
    error: str | None
    started_at: float
    ended_at: float
    duration: float
    pid: int | None


class CancelToken:
    """Cancel a running attempt from any thread: its process tree is killed at once.

    The wake-up pipe exists only while an attempt waits on the token (``watching``), so tokens kept
    for thousands of steps hold no file descriptors.
    """

    def __init__(self) -> None:
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._pipe: tuple[int, int] | None = None

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            if self._pipe is not None:
                os.write(self._pipe[1], b"x")

    @property
    def reason(self) -> str | None:
        return self._reason

    @contextmanager
    def watching(self) -> Iterator[int]:
        """A file descriptor that becomes readable once the token is cancelled."""
        read_end, write_end = os.pipe()
        with self._lock:
            self._pipe = (read_end, write_end)
            if self._reason is not None:
                os.write(write_end, b"x")
        try:
            yield read_end
        finally:
            with self._lock:
                self._pipe = None
            os.close(read_end)
            os.close(write_end)


def _seconds(value: float) -> str:
    return f"{value:g}"


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _send(processes: list[psutil.Process], sig: signal.Signals) -> None:
    """Signal each process, ignoring those already gone."""
    for process in processes:
        try:
            process.send_signal(sig)
        except psutil.Error:
            pass


def _stop(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM our child, its group and every descendant (collected before the child dies), wait
    ``grace``, SIGKILL what is left. Popen reaps the child, so its exit status (the signal) is kept."""
    descendants = _descendants(proc.pid)
    _signal_group(proc.pid, signal.SIGTERM)
    _send(descendants, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    _signal_group(proc.pid, signal.SIGKILL)
    _send(alive, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def sweep_orphans(run_id: str, step_id: str | None = None, grace: float = 1.0) -> list[int]:
    """Kill every process whose environment marks it as part of ``run_id`` (and ``step_id``)."""
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in spared:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("PLANRUN_RUN_ID") != run_id:
            continue
        if step_id is not None and env.get("PLANRUN_STEP_ID") != step_id:
            continue
        found.append(proc)
    _send(found, signal.SIGTERM)
    _, alive = psutil.wait_procs(found, timeout=grace)
    _send(alive, signal.SIGKILL)
    return [p.pid for p in found]


def tail(path: Path, max_bytes: int = 65536, secrets: tuple[str, ...] = ()) -> str:
    """The end of a log file (at most ``max_bytes``), starting at a line boundary when it can."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            if size > max_bytes:
                handle.seek(size - max_bytes)
            data = handle.read(max_bytes)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        newline = text.find("\n")
        if 0 <= newline < len(text) - 1:
            text = text[newline + 1 :]
        text = f"[{size - len(text.encode('utf-8', errors='replace'))} earlier bytes in {path}]\n" + text
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def _drain(source: IO[bytes], target: IO[bytes], secrets: list[bytes]) -> None:
    """Copy a pipe to a file, masking secrets, even when one straddles two chunks."""
    keep = max(len(s) for s in secrets) - 1
    carry = b""
    fd = source.fileno()
    while True:
        chunk = os.read(fd, CHUNK)
        buffer = carry + chunk
        for secret in secrets:
            buffer = buffer.replace(secret, b"***")
        if not chunk:
            target.write(buffer)
            break
        cut = max(0, len(buffer) - keep)
        target.write(buffer[:cut])
        carry = buffer[cut:]
    target.flush()


def _exit_signal(proc: subprocess.Popen[bytes]) -> tuple[int, Callable[[], None]]:
    """A file descriptor that becomes readable when ``proc`` exits, and how to close it.

    Linux gives a pidfd; elsewhere a thread blocked in ``wait`` writes to a pipe. Either way the
    waiter sleeps in ``select`` until something happens: no polling interval sets the pace.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        read_end, write_end = os.pipe()

        def wait_then_signal() -> None:
            proc.wait()
            os.write(write_end, b"x")

        def close_pipe() -> None:
            os.close(read_end)
            os.close(write_end)

        threading.Thread(target=wait_then_signal, daemon=True).start()
        return read_end, close_pipe
    return pidfd, lambda: os.close(pidfd)


WaitEnd = Literal["exit", "timeout", "cancel"]


def _wait(proc: subprocess.Popen[bytes], deadline: float | None, token: CancelToken | None) -> WaitEnd:
    """Wait for the process to exit, the deadline to pass or the token to fire."""
    exit_fd, close = _exit_signal(proc)
    with ExitStack() as stack:
        stack.callback(close)
        poller = select.poll()  # not select(): descriptors above 1024 are fine
        poller.register(exit_fd, select.POLLIN)
        cancel_fd = stack.enter_context(token.watching()) if token is not None else -1
        if token is not None:
            poller.register(cancel_fd, select.POLLIN)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = {fd for fd, _ in poller.poll(None if remaining is None else remaining * 1000)}
            if exit_fd in ready:
                return "exit"
            if cancel_fd in ready:
                return "cancel"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"


def run_attempt(spec: AttemptSpec, token: CancelToken | None = None) -> AttemptOutcome:
    """Run one attempt to its end; never raises for the step's own failures."""
    spec.stdout_path.parent.mkdir(parents=True, exist_ok=True)
    spec.stderr_path.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    start = time.monotonic()

    def outcome(
        code: int | None,
        error: str | None,
        *,
        timed_out: bool = False,
        pid: int | None = None,
        cancelled: str | None = None,
    ) -> AttemptOutcome:
        return AttemptOutcome(code, timed_out, cancelled, error, started_at, time.time(), time.monotonic() - start, pid)

    with spec.stdout_path.open("wb") as out, spec.stderr_path.open("wb") as err:
        if token is not None and token.reason is not None:
            return outcome(None, f"cancelled: {token.reason}", cancelled=token.reason)
        argv = ["/bin/sh", "-c", spec.argv[0]] if spec.shell else list(spec.argv)
        secrets = [s.encode() for s in spec.secrets if s]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if secrets else out,
                stderr=subprocess.PIPE if secrets else err,
                start_new_session=True,
            )
        except FileNotFoundError:
            message = (
                f"cwd does not exist: '{spec.cwd}'" if not spec.cwd.is_dir() else f"executable not found: '{argv[0]}'"
            )
            err.write((message + "\n").encode())
            return outcome(None, message)
        except PermissionError:
            message = f"permission denied: '{argv[0]}'"
            err.write((message + "\n").encode())
            return outcome(None, message)
        except OSError as start_error:
            message = f"cannot start '{argv[0]}': {os.strerror(start_error.errno or errno.EIO)}"
            err.write((message + "\n").encode())
            return outcome(None, message)
        drains = []
        if secrets:
            assert proc.stdout is not None and proc.stderr is not None
            drains = [
                threading.Thread(target=_drain, args=(proc.stdout, out, secrets), daemon=True),
                threading.Thread(target=_drain, args=(proc.stderr, err, secrets), daemon=True),
            ]
            for thread in drains:
                thread.start()
        deadline = None if spec.timeout is None else start + spec.timeout
        try:
            how = _wait(proc, deadline, token)
        except BaseException:
            _stop(proc, spec.kill_grace)
            raise
        if how == "exit":
            # A step must not leave anything behind in its session (a backgrounded daemon). The
            # exited leader stays a zombie until Popen reaps it, so its group id cannot have been
            # reused by another process when the group is killed. (Its children were reparented
            # when it exited; one that left the session is found by the run's sweep.)
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            _signal_group(proc.pid, signal.SIGKILL)
            code = proc.wait()
        else:
            code = _stop(proc, spec.kill_grace)
        for thread in drains:
            thread.join()
        for pipe in (proc.stdout, proc.stderr):  # present only when output was masked
            if pipe is not None:
                pipe.close()
        if how == "timeout":
            assert spec.timeout is not None
            message = f"timed out after {_seconds(spec.timeout)} s"
            return outcome(code, message, timed_out=True, pid=proc.pid)
        if how == "cancel":
            assert token is not None
            return outcome(code, f"cancelled: {token.reason}", pid=proc.pid, cancelled=token.reason)
        failure = None if code == 0 else (f"exit code {code}" if code > 0 else f"killed by signal {-code}")
        return outcome(code, failure, pid=proc.pid)
