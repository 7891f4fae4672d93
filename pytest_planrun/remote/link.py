"""A remote worker's end: stream each attempt's output and provided files to the controller, and
receive the files its consumers need.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

from ..run.process import Forward
from ..run.provided import blocks, kept_path
from ..run.records import AttemptRecord
from .messages import CHUNK, pieces

log = logging.getLogger(__name__)


class WorkerLink:
    """Sends on the side channel (from any attempt's thread); receives files on execnet's thread."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._channel: Any = None
        self._attached = threading.Event()
        self._incoming: dict[str, IO[bytes]] = {}

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
            kept = kept_path(self.run_dir, file.path)
            with kept.open("rb") as handle:
                for block in blocks(handle, CHUNK):
                    self._send(("file", file.path, block, False))
            self._send(("file", file.path, b"", True))
        self._send(("logs_end", record.step_id, record.attempt))

    def receive_file(self, path: str, data: bytes, end: bool) -> None:
        """A piece of a file a consumer on this worker needs, kept where ``deliver`` looks for it."""
        target = kept_path(self.run_dir, path)
        handle = self._incoming.get(path)
        if handle is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = self._incoming[path] = target.with_name(f".{target.name}.part").open("wb")
        handle.write(data)
        if end:
            handle.close()
            del self._incoming[path]
            os.replace(handle.name, target)
