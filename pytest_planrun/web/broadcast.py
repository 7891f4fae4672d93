"""One watcher per watched thing (a run, the runs list), however many pages watch it.

A ``Feed`` asks its source every ``interval`` whether anything changed (a few ``stat`` calls), and
only then builds one payload, in a thread, for all its subscribers. Each subscriber holds at most
the newest payload: a slow page skips states instead of queueing them, so memory stays flat.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from ..run.step import log_paths
from .snapshot import list_runs, run_dag, run_snapshot

log = logging.getLogger(__name__)

REFRESH_LIVE_SEC = 5.0  # a live run is rebuilt this often anyway: its controller may die silently


class Source(Protocol):
    def changed(self) -> bool:
        """Cheap (called on the event loop every interval): may the payload differ from the last one?"""

    def build(self) -> str:
        """The payload as JSON text (called in a worker thread)."""


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


class RunSource:
    """A run: its ``events.jsonl`` and the logs of its running steps are watched.

    The writer appends an event's line inside its transaction, so the line can be seen before the
    commit: a snapshot that has fewer events than the file has lines is rebuilt on the next tick.
    """

    def __init__(self, ledger: Path, run_id: str) -> None:
        self.ledger, self.run_id = ledger, run_id
        run, self.dag = run_dag(ledger, run_id)
        self.events_file = Path(run["run_dir"]) / "events.jsonl" if run.get("run_dir") else None
        self._lines = 0
        self._offset = 0
        self._built: object = None
        self._pending: object = None
        self._settled = False
        self._live = True
        self._logs: list[Path] = []

    def _signature(self) -> object:
        files = [self.events_file] if self.events_file else []
        bucket = int(time.monotonic() // REFRESH_LIVE_SEC) if self._live else 0
        return (tuple(_stat(p) for p in [*files, *self._logs]), bucket)

    def changed(self) -> bool:
        self._pending = self._signature()
        return not (self._settled and self._pending == self._built)

    def _count_lines(self) -> int:
        if self.events_file is None:
            return 0
        with suppress(OSError), self.events_file.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
            complete = chunk.rfind(b"\n") + 1  # a line still being written is counted once whole
            self._lines += chunk.count(b"\n", 0, complete)
            self._offset += complete
        return self._lines

    def build(self) -> str:
        signature = self._pending
        snapshot = run_snapshot(self.ledger, self.run_id, self.dag)
        self._settled = snapshot["event_count"] >= self._count_lines()
        self._built = signature
        self._live = bool(snapshot["live"])
        self._logs = []
        if self.events_file is not None:
            for step in snapshot["steps"]:
                if step["state"] == "running" and step["attempts"]:
                    attempt = int(step["attempts"][-1]["attempt"])
                    self._logs += log_paths(self.events_file.parent, step["step_id"], attempt)
        return json.dumps(snapshot)


class RunsSource:
    """The runs list: the ledger file and its write-ahead log are watched."""

    def __init__(self, ledger: Path, limit: int = 50) -> None:
        self.ledger, self.limit = ledger, limit
        self._built: object = None
        self._pending: object = None

    def changed(self) -> bool:
        wal = self.ledger.with_name(self.ledger.name + "-wal")
        self._pending = (_stat(self.ledger), _stat(wal), int(time.monotonic() // REFRESH_LIVE_SEC))
        return self._pending != self._built

    def build(self) -> str:
        signature = self._pending
        payload = json.dumps({"runs": list_runs(self.ledger, self.limit)})
        self._built = signature
        return payload


class Feed:
    def __init__(self, source: Source, interval: float) -> None:
        self.source = source
        self.interval = interval
        self.latest: str | None = None
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.builds = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            if self.source.changed():
                try:
                    payload = await anyio.to_thread.run_sync(self.source.build)
                except (OSError, LookupError, ValueError) as error:  # ledger busy or moved: try next tick
                    log.warning("planrun serve: %s", error)
                else:
                    self.builds += 1
                    if payload != self.latest:
                        self.latest = payload
                        for queue in self.subscribers:
                            offer(queue, payload)
            await asyncio.sleep(self.interval)


def offer(queue: asyncio.Queue[str], payload: str) -> None:
    """Leave only the newest payload in a subscriber's queue."""
    with suppress(asyncio.QueueEmpty):
        if queue.full():
            queue.get_nowait()
    queue.put_nowait(payload)


CLOSED = ""  # the payload that ends a stream: the server is stopping


class Broadcaster:
    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.feeds: dict[str, Feed] = {}
        self.closed = False
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        """End every stream, so a stopping server need not wait for pages that never hang up."""
        self.closed = True
        for feed in self.feeds.values():
            for queue in feed.subscribers:
                offer(queue, CLOSED)

    def close_threadsafe(self) -> None:
        """``close`` from a signal handler or another thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)

    @asynccontextmanager
    async def subscribe(self, key: str, make_source: Callable[[], Source]) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of payloads for ``key``, whose feed starts with its first subscriber and stops
        with its last. ``make_source`` may raise (an unknown run) before anything is subscribed."""
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                feed = Feed(await anyio.to_thread.run_sync(make_source), self.interval)
                self.feeds[key] = feed
                feed.start()
            queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
            if self.closed:
                queue.put_nowait(CLOSED)
            elif feed.latest is not None:
                queue.put_nowait(feed.latest)
            feed.subscribers.add(queue)
        try:
            yield queue
        finally:
            feed.subscribers.discard(queue)
            if not feed.subscribers and self.feeds.get(key) is feed:
                del self.feeds[key]
                assert feed.task is not None
                feed.task.cancel()
