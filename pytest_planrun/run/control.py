"""Requests from outside a run (``planrun cancel RUN STEP``), through a FIFO in the run directory.

The controller reads the FIFO on a thread that sleeps in ``read`` until a line arrives, so a
request takes effect at once and an idle run costs nothing. Lines are ``cancel <step id>``; a
writer's line is atomic (shorter than ``PIPE_BUF``).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from .process import CancelToken

log = logging.getLogger(__name__)

FIFO_NAME = "control"
_STOP = b"stop"


class ControlChannel:
    """The reading end, owned by the controller; ``on_cancel(step_id)`` runs on its thread."""

    def __init__(self, run_dir: Path, on_cancel: Callable[[str], None]) -> None:
        self.path = run_dir / FIFO_NAME
        self._on_cancel = on_cancel
        self._fd: int | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> bool:
        """Create the FIFO and start listening; False where the platform has no FIFOs."""
        if not hasattr(os, "mkfifo"):
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink(missing_ok=True)
            os.mkfifo(self.path, 0o600)
            # read-write: the FIFO always has a writer (us), so reads block instead of seeing EOF
            self._fd = os.open(self.path, os.O_RDWR)
        except OSError as error:
            log.warning("planrun: no control channel at %s: %s", self.path, error)
            return False
        self._thread = threading.Thread(target=self._listen, name="planrun-control", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        if self._fd is None:
            return
        os.write(self._fd, _STOP + b"\n")
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._fd)
        self._fd = None
        self.path.unlink(missing_ok=True)

    def _listen(self) -> None:
        assert self._fd is not None
        pending = b""
        while True:
            chunk = os.read(self._fd, 4096)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line == _STOP:
                    return
                verb, _, step_id = line.decode("utf-8", errors="replace").partition(" ")
                if verb == "cancel" and step_id:
                    try:
                        self._on_cancel(step_id)
                    except Exception:  # a bad request must not end the channel
                        log.exception("planrun: control request %r failed", line)


def send_cancel(run_dir: Path, step_id: str) -> None:
    """Ask the controller of the run in ``run_dir`` to cancel ``step_id``.

    Raises ``ConnectionError`` when no controller listens (the run ended, or runs elsewhere).
    """
    path = run_dir / FIFO_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENXIO):
            raise ConnectionError(f"no controller listens on {path}") from None
        raise
    try:
        os.write(fd, f"cancel {step_id}\n".encode())
    finally:
        os.close(fd)


class CancelRequests:
    """Cancel requests between the thread that receives them and the main thread that decides.

    ``post`` (any thread) stops an attempt running in this process at once — its token is known
    through ``track`` — and wakes a waiter; ``drain`` (main thread) hands the requests to the core.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._lock = threading.Lock()
        self._new: list[str] = []
        self._asked: set[str] = set()
        self._tokens: dict[str, CancelToken] = {}
        self._arrived = threading.Event()

    def post(self, step_id: str) -> None:
        with self._lock:
            self._new.append(step_id)
            self._asked.add(step_id)
            token = self._tokens.get(step_id)
        if token is not None:
            token.cancel(self.reason)
        self._arrived.set()

    def track(self, step_id: str, token: CancelToken | None) -> None:
        """The token of the attempt of ``step_id`` about to run in this process (None: it ended)."""
        with self._lock:
            if token is None:
                self._tokens.pop(step_id, None)
                return
            self._tokens[step_id] = token
            asked = step_id in self._asked
        if asked:  # asked for before it started
            token.cancel(self.reason)

    def drain(self) -> list[str]:
        with self._lock:
            new, self._new = self._new, []
        return new

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if a request arrives."""
        self._arrived.wait(seconds)
        self._arrived.clear()
