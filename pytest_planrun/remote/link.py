"""A remote worker's end: stream each attempt's output and provided files to the controller, and
receive the files its consumers need.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ..run.process import Forward
from ..run.provided import Arriving, kept_path
from ..run.records import AttemptRecord
from .messages import file_pieces, pieces

log = logging.getLogger(__name__)


class WorkerLink:
    """Sends on the side channel (from any attempt's thread); receives files on execnet's thread."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._channel: Any = None
        self._attached = threading.Event()
        self._incoming: dict[str, Arriving] = {}

    def attach(self, channel: Any) -> None:
        self._channel = channel
        self._attached.set()

    def _send(self, message: tuple[object, ...]) -> None:
        # The channel is the controller's first command, so it is here before any step is.
        if not self._attached.wait(timeout=60):
            raise RuntimeError("planrun: the controller never opened its channel to this worker")
        self._channel.send(message)

    def forwarder(self, step_id: str, attempt: int) -> Forward:
        def forward(stream: str, data: bytes) -> None:
            for piece in pieces(data):
                self._send(("out", step_id, attempt, stream, piece))

        return forward

    def attempt_done(self, record: AttemptRecord) -> None:
        """Send the files the attempt provided, then the end of its logs; its report follows."""
        for file in record.provided:
            for data, end in file_pieces(kept_path(self.run_dir, file.path)):
                self._send(("file", file.path, data, end))
        self._send(("logs_end", record.step_id, record.attempt))

    def receive_file(self, path: str, data: bytes, end: bool) -> None:
        """A piece of a file a consumer on this worker needs, kept where ``deliver`` looks for it."""
        arriving = self._incoming.get(path)
        if arriving is None:
            arriving = self._incoming[path] = Arriving(kept_path(self.run_dir, path))
        arriving.write(data)
        if end:
            del self._incoming[path]
            arriving.finish()
