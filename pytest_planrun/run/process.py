"""One attempt of a step as a process: spawn, save output, wait without polling, kill the whole tree.

PYTEST_DONT_REWRITE
"""

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
from functools import partial
from pathlib import Path
from typing import IO, Literal

import psutil

log = logging.getLogger(__name__)

CHUNK = 65536


Forward = Callable[[str, bytes], None]  # ("stdout" | "stderr", masked bytes)


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
    # also hands each piece of output, masked as written to the log, to its stream's callback
    # (a remote worker streams it to the controller); output then always goes through a pipe
    forward: Forward | None = None


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
    silent: bool = False  # timed out by the no-output timeout (``timed_out`` is set too)


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


def no_output_reason(silence: float) -> str:
    """The reason of an attempt killed for its silence (the wall-clock one says "timed out after")."""
    return f"no output for {_seconds(silence)}s"


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


def stop_tree(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM our child, its group and every descendant (collected before the child dies), wait
    ``grace``, SIGKILL what is left. Popen reaps the child, so its exit status (the signal) is kept."""
    descendants = _descendants(proc.pid)
    signal_group(proc.pid, signal.SIGTERM)
    _send(descendants, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    signal_group(proc.pid, signal.SIGKILL)
    _send(alive, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group, if it still exists."""
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


class _Log:
    """A log file that also hands what is written to it to a callback (see ``AttemptSpec.forward``)."""

    def __init__(self, target: IO[bytes], forward: Callable[[bytes], None] | None) -> None:
        self.target = target
        self.forward = forward

    def write(self, data: bytes) -> None:
        if data:
            self.target.write(data)
            if self.forward is not None:
                self.forward(data)

    def flush(self) -> None:
        self.target.flush()


class _Sink:
    """One output pipe copied to its log file, masking secrets even when one straddles two chunks."""

    def __init__(self, target: _Log, secrets: list[bytes]) -> None:
        self.target = target
        self.secrets = secrets
        self.keep = max((len(s) for s in secrets), default=1) - 1
        self.carry = b""

    def feed(self, chunk: bytes) -> None:
        buffer = self.carry + chunk
        for secret in self.secrets:
            buffer = buffer.replace(secret, b"***")
        cut = max(0, len(buffer) - self.keep)
        self.target.write(buffer[:cut])
        self.carry = buffer[cut:]
        self.target.flush()  # the log file is what heartbeats and `planrun` readers look at

    def close(self) -> None:
        self.target.write(self.carry)
        self.carry = b""
        self.target.flush()


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


WaitEnd = Literal["exit", "timeout", "silent", "cancel"]


@dataclass(frozen=True, slots=True)
class Watch:
    """What the wait also watches besides the exit: silence, and a steady beat for the caller."""

    silence: float | None = None  # seconds without output before the attempt is killed
    beat_every: float | None = None
    on_beat: Callable[[], None] | None = None


class _Streams:
    """The step's output pipes, drained by the waiting loop itself: output wakes it like an exit does."""

    def __init__(self, sinks: dict[int, _Sink]) -> None:
        self.sinks = sinks
        self.last_output = time.monotonic()
        self.poller = select.poll()

    def watch_on(self, poller: select.poll) -> None:
        self.poller = poller
        for fd in self.sinks:
            poller.register(fd, select.POLLIN)

    def read(self, fd: int) -> None:
        chunk = os.read(fd, CHUNK)
        if chunk:
            self.sinks[fd].feed(chunk)
            self.last_output = time.monotonic()
            return
        self.poller.unregister(fd)  # end of file: whoever held the write end is gone
        self.sinks.pop(fd).close()

    def finish(self, patience: float) -> None:
        """Copy what is left after the process tree has ended. A process that escaped the tree may
        hold a pipe open; after ``patience`` seconds without end of file its output is given up."""
        give_up = time.monotonic() + patience
        self.watch_on(select.poll())
        while self.sinks and (left := give_up - time.monotonic()) > 0:
            for fd, _ in self.poller.poll(left * 1000):
                if fd in self.sinks:
                    self.read(fd)
        for sink in self.sinks.values():
            sink.close()
        if self.sinks:
            log.warning("planrun: a process outside the step's tree holds its output open; stopped reading")


def _wait(
    proc: subprocess.Popen[bytes],
    deadline: float | None,
    token: CancelToken | None,
    streams: _Streams,
    watch: Watch,
) -> WaitEnd:
    """Wait for the process to exit, the deadline to pass, the output to stay silent too long or the
    token to fire, copying output as it comes; the poll sleeps until the earliest of the deadlines."""
    exit_fd, close = _exit_signal(proc)
    with ExitStack() as stack:
        stack.callback(close)
        poller = select.poll()  # not select(): descriptors above 1024 are fine
        poller.register(exit_fd, select.POLLIN)
        cancel_fd = stack.enter_context(token.watching()) if token is not None else -1
        if token is not None:
            poller.register(cancel_fd, select.POLLIN)
        streams.watch_on(poller)
        beat_every = watch.beat_every if watch.on_beat is not None else None
        next_beat = None if beat_every is None else time.monotonic() + beat_every
        while True:
            silent_at = None if watch.silence is None else streams.last_output + watch.silence
            wake_at = min((t for t in (deadline, silent_at, next_beat) if t is not None), default=None)
            remaining = None if wake_at is None else max(0.0, wake_at - time.monotonic())
            ready = {fd for fd, _ in poller.poll(None if remaining is None else remaining * 1000)}
            for fd in ready & streams.sinks.keys():
                streams.read(fd)
            if exit_fd in ready:
                return "exit"
            if cancel_fd in ready:
                return "cancel"
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "timeout"
            if watch.silence is not None and now >= streams.last_output + watch.silence:
                return "silent"
            if next_beat is not None and beat_every is not None and watch.on_beat is not None and now >= next_beat:
                next_beat = now + beat_every
                watch.on_beat()


def run_attempt(spec: AttemptSpec, token: CancelToken | None = None, watch: Watch = Watch()) -> AttemptOutcome:
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
        silent: bool = False,
    ) -> AttemptOutcome:
        duration = time.monotonic() - start
        return AttemptOutcome(code, timed_out, cancelled, error, started_at, time.time(), duration, pid, silent)

    with spec.stdout_path.open("wb") as out_file, spec.stderr_path.open("wb") as err_file:
        forward = spec.forward
        out = _Log(out_file, None if forward is None else partial(forward, "stdout"))
        err = _Log(err_file, None if forward is None else partial(forward, "stderr"))
        if token is not None and token.reason is not None:
            return outcome(None, f"cancelled: {token.reason}", cancelled=token.reason)
        argv = ["/bin/sh", "-c", spec.argv[0]] if spec.shell else list(spec.argv)
        secrets = [s.encode() for s in spec.secrets if s]
        # Output goes through a pipe when it must be masked or its silence timed; else straight to the file.
        piped = bool(secrets) or watch.silence is not None or forward is not None
        try:
            proc = subprocess.Popen(
                argv,
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if piped else out_file,
                stderr=subprocess.PIPE if piped else err_file,
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
        streams = _Streams({})
        if piped:
            assert proc.stdout is not None and proc.stderr is not None
            streams = _Streams({proc.stdout.fileno(): _Sink(out, secrets), proc.stderr.fileno(): _Sink(err, secrets)})
        deadline = None if spec.timeout is None else start + spec.timeout
        try:
            how = _wait(proc, deadline, token, streams, watch)
        except BaseException:
            stop_tree(proc, spec.kill_grace)
            streams.finish(0.0)
            raise
        if how == "exit":
            # A step must not leave anything behind in its session (a backgrounded daemon). The
            # exited leader stays a zombie until Popen reaps it, so its group id cannot have been
            # reused by another process when the group is killed. (Its children were reparented
            # when it exited; one that left the session is found by the run's sweep.)
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            signal_group(proc.pid, signal.SIGKILL)
            code = proc.wait()
        else:
            code = stop_tree(proc, spec.kill_grace)
        streams.finish(spec.kill_grace)  # the tree is gone: the pipes are at their end
        for pipe in (proc.stdout, proc.stderr):  # present only when output was masked
            if pipe is not None:
                pipe.close()
        if how == "timeout":
            assert spec.timeout is not None
            message = f"timed out after {_seconds(spec.timeout)} s"
            return outcome(code, message, timed_out=True, pid=proc.pid)
        if how == "silent":
            assert watch.silence is not None
            return outcome(code, no_output_reason(watch.silence), timed_out=True, pid=proc.pid, silent=True)
        if how == "cancel":
            assert token is not None
            return outcome(code, f"cancelled: {token.reason}", pid=proc.pid, cancelled=token.reason)
        failure = None if code == 0 else (f"exit code {code}" if code > 0 else f"killed by signal {-code}")
        return outcome(code, failure, pid=proc.pid)
