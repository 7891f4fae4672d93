"""The in-process concurrent driver: up to ``slots`` step processes at once, supervised by threads.

Steps are subprocesses, so one pytest process can wait on several: each attempt runs on a thread
(the process, its output and its deadline are ``run_attempt``'s), and the main thread runs the
item's pytest protocol when the attempt ends — reports, hooks and the core's decisions stay on the
main thread, in the order the processes end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ..core.state import Cancel, Start
from .process import CancelToken
from .serial import Drivable

Result = TypeVar("Result")
INTERRUPTED = "cancelled: interrupted"


class _Attempt(Generic[Result]):
    """One attempt running on its own thread."""

    def __init__(self, start: Start, run: Callable[[Start, CancelToken], Result], done: queue.SimpleQueue[object]):
        self.start = start
        self.token = CancelToken()
        self._result: Result | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(run, done), name=f"planrun-{start.step_id}", daemon=True)

    def _run(self, run: Callable[[Start, CancelToken], Result], done: queue.SimpleQueue[object]) -> None:
        try:
            self._result = run(self.start, self.token)
        except BaseException as error:  # raised again where the report is made, with its traceback
            self._error = error
        finally:
            done.put(self)

    def outcome(self) -> Result:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def drive_concurrently(
    controller: Drivable,
    run: Callable[[Start, CancelToken], Result],
    report: Callable[[Start, CancelToken, Callable[[], Result]], None],
    *,
    track: Callable[[str, CancelToken | None], None],
    wake_me: Callable[[Callable[[], None]], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run the plan to its end with every start the core gives running at once (the core keeps
    them within its slots): ``run(start, token)`` on a thread, then ``report(start, token, outcome)``
    on this one (``outcome()`` returns the result or raises what ``run`` raised). ``track`` makes
    an attempt's token known to cancel requests; ``wake_me(callback)`` registers what ends the wait
    when a request arrives from another thread.

    A ``BaseException`` here (Ctrl-C, SIGTERM) cancels every running attempt at once — each thread
    then stops its process tree — and waits for them before it propagates.
    """
    done: queue.SimpleQueue[object] = queue.SimpleQueue()
    wake_me(lambda: done.put(None))
    running: dict[str, _Attempt[Result]] = {}
    starts: deque[Start] = deque()

    def take() -> None:
        for action in controller.take_actions():
            if isinstance(action, Start):
                starts.append(action)
            elif isinstance(action, Cancel) and action.step_id in running:
                running[action.step_id].token.cancel(action.reason)

    try:
        take()
        while True:
            while starts:
                start = starts.popleft()
                if controller.claim(start, "main"):
                    attempt = _Attempt(start, run, done)
                    running[start.step_id] = attempt
                    track(start.step_id, attempt.token)
                    attempt.thread.start()
            if controller.final is not None and not running:
                return
            due = controller.next_wake()
            if due is None and not running:
                raise RuntimeError("the run is not finished but nothing is running or waiting")
            try:
                ended = done.get(timeout=None if due is None else max(0.0, due - clock()))
            except queue.Empty:
                ended = None
            if isinstance(ended, _Attempt):
                ended.thread.join()
                del running[ended.start.step_id]
                try:
                    report(ended.start, ended.token, ended.outcome)
                finally:
                    track(ended.start.step_id, None)
            controller.wake()
            take()
    except BaseException:
        for attempt in running.values():
            attempt.token.cancel(INTERRUPTED)
        for attempt in running.values():
            attempt.thread.join()
        raise
