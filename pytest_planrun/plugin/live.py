"""A run while it runs: heartbeats of the running attempts, and a terminal line saying what runs.

Lives on the controller. An attempt's output is drained to its log files (on a worker too), so the
controller measures progress from those files: bytes so far and the time of the last write. xdist
3.8 rejects worker events it does not know (workermanage.py ``process_from_remote``), so the files
are the channel; a beat is either the serial runner's (its poll wakes for it) or a timer's, handed
to xdist's controller loop through the same queue as a wake (``xdist_seam.ControllerLoop``).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Protocol

import pytest

from ..run.observer import Progress
from ..run.records import AttemptRecord
from ..run.step import log_paths
from .controller import PlanController


class HeartbeatSink(Protocol):
    def heartbeat(self, progress: Progress, now: float) -> None: ...


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def status_line(running: list[Progress], now: float) -> str:
    """``planrun: running build (2m05s, last output 40s ago), test (12s, no output yet)``."""
    parts = []
    for p in sorted(running, key=lambda p: p.started_at):
        quiet = "no output yet" if p.last_output_at is None else f"last output {_duration(now - p.last_output_at)} ago"
        parts.append(f"{p.step_id} ({_duration(now - p.started_at)}, {quiet})")
    return "planrun: running " + ", ".join(parts)


class LiveRun:
    """A ``RunObserver`` that knows which attempts run; ``beat()`` sends their heartbeats and, once no
    step has ended for ``status_after`` seconds, shows them on the terminal."""

    def __init__(
        self,
        config: pytest.Config,
        controller: PlanController,
        sinks: list[HeartbeatSink],
        status_after: float,
    ) -> None:
        self.config = config
        self.controller = controller
        self.sinks = sinks
        self.status_after = status_after
        self.running: dict[str, tuple[int, str, float]] = {}  # step -> attempt, worker, started (wall)
        self.quiet_since = time.time()  # the last time a step ended (or the run began)
        self.shown_at: float | None = None  # when the status was last shown, since quiet_since
        self.back: str | None = None  # a TTY line of ours is on screen: how to return to pytest's line

    # -- RunObserver ----------------------------------------------------------------------------

    def run_started(self, run: object, now: float) -> None:
        self.quiet_since = now

    def attempt_started(self, step_id: str, attempt: int, worker: str, now: float) -> None:
        self.running[step_id] = (attempt, worker, now)

    def attempt_ended(self, record: AttemptRecord, will_retry: bool) -> None:
        self.running.pop(record.step_id, None)
        self.quiet_since = time.time()
        self.shown_at = None
        self._erase()

    def step_waiting(self, step_id: str, reason: str, now: float) -> None:
        pass

    def step_finished(self, result: object, now: float) -> None:
        pass

    def run_finished(self, state: object, exit_code: int, message: str | None, now: float) -> None:
        self._erase()

    # -- beats ----------------------------------------------------------------------------------

    def progress(self) -> list[Progress]:
        run_dir = self.controller.context.run_dir
        found = []
        for step_id, (attempt, worker, started) in list(self.running.items()):
            size, last = 0, None
            for path in log_paths(run_dir, step_id, attempt):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                size += stat.st_size
                if stat.st_size:
                    last = max(last or 0.0, stat.st_mtime)
            found.append(Progress(step_id, attempt, worker, started, size, last))
        return found

    def beat(self) -> None:
        """Heartbeats for every running attempt, then the status line if it is due."""
        now = time.time()
        running = self.progress()
        for sink in self.sinks:
            for progress in running:
                sink.heartbeat(progress, now)
        if running:
            self._show(running, now)

    def _show(self, running: list[Progress], now: float) -> None:
        if self.config.option.verbose < 0 or now - self.quiet_since < self.status_after:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        line = status_line(running, now)
        with self._uncaptured():
            if terminal.isatty:
                self._draw(terminal, line)
            elif self.shown_at is None or now - self.shown_at >= self.status_after:
                # a CI log: appended, once per quiet interval
                terminal.ensure_newline()
                terminal.write_line(line, flush=True)
                self.shown_at = now

    def _draw(self, terminal: Any, line: str) -> None:
        """On a line of its own below pytest's progress, rewritten in place. It is written past
        pytest's writer, which so keeps its idea of the progress line, where ``_erase`` returns to."""
        terminal._tw.flush()
        if self.back is None:
            column = terminal._tw.width_of_current_line  # -1: unknown (xdist's rewrites leave a '\r')
            if column == 0:
                self.back = ""  # pytest's line is empty: ours goes there
            else:
                _raw("\n")
                # back up to the end of pytest's line; where that is unknown, pytest goes on below
                self.back = f"\x1b[A\x1b[{column}C" if column > 0 else ""
        width = terminal._tw.fullwidth  # one line: a longer one would wrap and not be rewritten
        _raw("\r" + line[: width - 1] + "\x1b[K")

    def _erase(self) -> None:
        back, self.back = self.back, None
        if back is None:
            return
        with self._uncaptured():
            _raw("\r\x1b[K" + back)

    def _uncaptured(self) -> Any:
        """In a serial run the beat comes while the step's item runs, under pytest's capture."""
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        return capman.global_and_fixture_disabled() if capman is not None else nullcontext()


def _raw(text: str) -> None:
    """Straight to the terminal pytest writes to (uncaptured: see ``_uncaptured``)."""
    sys.stdout.write(text)
    sys.stdout.flush()


class BeatTimer:
    """Calls ``post`` every ``every`` seconds on its own thread, until stopped (xdist runs)."""

    def __init__(self, every: float, post: Callable[[], None]) -> None:
        self._every = every
        self._post = post
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="planrun-beat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            self._post()

    def stop(self) -> None:
        self._stopped.set()
