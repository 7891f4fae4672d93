"""The controller's end of a remote worker's side channel: its steps' logs and provided files are
written into the controller's run directory, where every reader (reports, JUnit, the ledger, the
live view) finds them as if the step had run here.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

from ..run.provided import Arriving, kept_path
from ..run.step import log_paths

log = logging.getLogger(__name__)


class Inbox:
    """Called on execnet's receiver thread, one message at a time, in the order the worker sent them."""

    def __init__(self, run_dir: Path, worker: str) -> None:
        self.run_dir = run_dir
        self.worker = worker
        self._logs: dict[tuple[str, int, str], IO[bytes]] = {}
        self._files: dict[str, Arriving] = {}
        self.received: dict[str, str] = {}  # path -> sha256 of each provided file received whole

    def receive(self, message: object) -> None:
        try:
            self._receive(message)
        except Exception:  # a bad message must not kill execnet's receiver thread
            log.exception("planrun: bad message from worker %s", self.worker)

    def _receive(self, message: object) -> None:
        assert isinstance(message, tuple) and message, message
        kind = message[0]
        if kind == "out":
            _, step_id, attempt, stream, data = message
            self._log(step_id, attempt, stream).write(data)
        elif kind == "logs_end":
            _, step_id, attempt = message
            for stream in ("stdout", "stderr"):
                self._log(step_id, attempt, stream).close()
                del self._logs[(step_id, attempt, stream)]
        elif kind == "file":
            _, path, data, end = message
            self._file_piece(path, data, end)
        else:
            raise ValueError(f"unknown message {kind!r}")

    def _log(self, step_id: str, attempt: int, stream: str) -> IO[bytes]:
        key = (step_id, attempt, stream)
        handle = self._logs.get(key)
        if handle is None:
            stdout, stderr = log_paths(self.run_dir, step_id, attempt)
            path = stdout if stream == "stdout" else stderr
            path.parent.mkdir(parents=True, exist_ok=True)
            # unbuffered: a reader of the log (the live view, `planrun serve`) sees output as it arrives
            handle = self._logs[key] = path.open("wb", buffering=0)
        return handle

    def _file_piece(self, path: str, data: bytes, end: bool) -> None:
        arriving = self._files.get(path)
        if arriving is None:
            arriving = self._files[path] = Arriving(kept_path(self.run_dir, path))
        arriving.write(data)
        if end:
            del self._files[path]
            self.received[path] = arriving.finish()

    def close(self) -> None:
        for handle in self._logs.values():
            handle.close()
        for arriving in self._files.values():
            arriving.abandon()  # cut off: never put in place
        self._logs.clear()
        self._files.clear()
