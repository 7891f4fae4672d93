"""Step locks across concurrent runs on one machine: OS file locks, released even if the holder dies.

Within one run the scheduling core already keeps holders of a lock apart; these file locks extend
that to other pytest runs on the same machine (two gates pushing the same repository).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .process import CancelToken

# filelock retries a held lock every poll interval; this is the only wait in planrun that polls,
# and only while another run holds the lock.
POLL_SECONDS = 0.05


class LockTimeout(Exception):
    """The attempt's deadline passed while waiting for a lock."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class LockCancelled(Exception):
    """The attempt was cancelled while waiting for a lock."""


def lock_dir() -> Path:
    """Where lock files live: ``PLANRUN_LOCK_DIR``, else a per-user folder in the temp directory."""
    configured = os.environ.get("PLANRUN_LOCK_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"planrun-locks-{os.getuid()}"


def lock_path(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return lock_dir() / f"{safe}.lock"


@contextmanager
def holding(
    names: Sequence[str],
    *,
    deadline: float | None,
    token: CancelToken | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[float]:
    """Hold every lock in ``names`` (sorted, so two steps never deadlock) for the block.

    Yields the seconds spent waiting. The wait counts toward ``deadline`` (the attempt's own timeout)
    and ends early when ``token`` is cancelled. ``on_wait(name)`` is called once when a lock is busy.
    """
    started = time.monotonic()
    with ExitStack() as stack:
        for name in sorted(set(names)):
            path = lock_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path))
            told = False
            while True:
                if token is not None and token.reason is not None:
                    raise LockCancelled(token.reason)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise LockTimeout(name)
                slice_ = 0.25 if remaining is None else min(0.25, remaining)
                try:
                    lock.acquire(timeout=slice_, poll_interval=POLL_SECONDS)
                    break
                except Timeout:
                    if not told and on_wait is not None:
                        on_wait(name)
                    told = True
            stack.callback(lock.release)
        yield time.monotonic() - started
