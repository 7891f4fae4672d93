"""The in-process concurrent driver: up to ``slots`` step processes at once, supervised by threads.

Steps are subprocesses, so one pytest process can wait on several: each attempt runs on a thread
(the process, its output and its deadline are ``run_attempt``'s), and the main thread runs the
item's pytest protocol when the attempt ends — reports, hooks and the core's decisions stay on the
main thread, in the order the processes end.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Generic, TypeVar

from ..core.state import Cancel, Start
from .process import CancelToken
from .serial import Drivable

Result = TypeVar("Result")
INTERRUPTED = "cancelled: interrupted"


class AttemptThread(Generic[Result]):
    """One attempt running on its own thread; ``on_end(self)`` is called from it when it ends."""

    def __init__(
        self, name: str, run: Callable[[], Result], token: CancelToken, on_end: Callable[[AttemptThread[Result]], None]
    ) -> None:
        self.token = token
        self._result: Result | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(run, on_end), name=f"planrun-{name}", daemon=True)

    def _run(self, run: Callable[[], Result], on_end: Callable[[AttemptThread[Result]], None]) -> None:
        try:
            self._result = run()
        except BaseException as error:  # raised again where the report is made, with its traceback
            self._error = error
        finally:
            on_end(self)

    def outcome(self) -> Result:
        """The attempt's result (once it ended), or what it raised."""
        self.thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def stop_all(attempts: Iterable[AttemptThread[Any]], reason: str = INTERRUPTED) -> None:
    """Cancel every attempt at once (each thread stops its own tree), then wait for them all."""
    attempts = list(attempts)
    for attempt in attempts:
        attempt.token.cancel(reason)
    for attempt in attempts:
        attempt.thread.join()


def drive_concurrently(
    controller: Drivable,
    run: Callable[[Start, CancelToken], Result],
    report: Callable[[Start, CancelToken, Callable[[], Result]], None],
    *,
    track: Callable[[str, CancelToken | None], None],
    wake_me: Callable[[Callable[[], None]], None],
    clock: Callable[[], float] = time.monotonic,
    beat: Callable[[], None] | None = None,
    beat_every: float = 5.0,
) -> None:
    """Run the plan to its end with every start the core gives running at once (the core keeps
    them within its slots): ``run(start, token)`` on a thread, then ``report(start, token, outcome)``
    on this one (``outcome()`` returns the result or raises what ``run`` raised). ``track`` makes
    an attempt's token known to cancel requests; ``wake_me(callback)`` registers what ends the wait
    when a request arrives from another thread. ``beat()`` is called on this thread every
    ``beat_every`` seconds while attempts run (heartbeats and the status line write from here only).

    A ``BaseException`` here (Ctrl-C, SIGTERM) cancels every running attempt at once — each thread
    then stops its process tree — and waits for them before it propagates.
    """
    done: queue.SimpleQueue[object] = queue.SimpleQueue()
    wake_me(lambda: done.put(None))
    running: dict[str, tuple[Start, AttemptThread[Result]]] = {}
    starts: deque[Start] = deque()
    next_beat = clock() + beat_every

    def take() -> None:
        for action in controller.take_actions():
            if isinstance(action, Start):
                starts.append(action)
            elif isinstance(action, Cancel) and action.step_id in running:
                running[action.step_id][1].token.cancel(action.reason)

    try:
        take()
        while True:
            while starts:
                start = starts.popleft()
                if controller.claim(start, "main"):
                    token = CancelToken()
                    attempt = AttemptThread(start.step_id, partial(run, start, token), token, done.put)
                    running[start.step_id] = (start, attempt)
                    track(start.step_id, token)
                    attempt.thread.start()
            if controller.final is not None and not running:
                return
            due = controller.next_wake()
            if due is None and not running:
                raise RuntimeError("the run is not finished but nothing is running or waiting")
            if beat is not None and running:
                due = next_beat if due is None else min(due, next_beat)
            try:
                ended = done.get(timeout=None if due is None else max(0.0, due - clock()))
            except queue.Empty:
                ended = None
            if beat is not None and clock() >= next_beat:
                next_beat = clock() + beat_every
                if running:
                    beat()
            if isinstance(ended, AttemptThread):
                start = next(s for s, a in running.values() if a is ended)
                del running[start.step_id]
                try:
                    report(start, ended.token, ended.outcome)
                finally:
                    track(start.step_id, None)
            controller.wake()
            take()
    except BaseException:
        stop_all(a for _, a in running.values())
        raise
