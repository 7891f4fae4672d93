"""The serial driver: carries out the core's actions one step at a time, in this process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..core.state import Action, Cancel, Start


class Drivable(Protocol):
    """What the serial driver needs of the controller (``plugin.controller.PlanController``)."""

    @property
    def final(self) -> object | None: ...

    def take_actions(self) -> list[Action]: ...

    def next_wake(self) -> float | None: ...

    def wake(self) -> None: ...

    def interrupt(self, reason: str) -> None: ...

    def on_unsent(self, step_id: str, attempt: int) -> None: ...


def drive_serially(
    controller: Drivable,
    run_step: Callable[[str, int], None],
    should_stop: Callable[[], str | None],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run the plan to its end: start what the core says, feed it outcomes (through the reports
    ``run_step`` produces), and sleep only until the next retry is due — never a polling loop."""
    todo: deque[Action] = deque()

    def take() -> None:
        while batch := controller.take_actions():  # taking one batch may decide more (on_unsent)
            for action in batch:
                place(action)

    def place(action: Action) -> None:
        if not isinstance(action, Cancel):
            todo.append(action)
            return
        # One step runs at a time and it has ended: a cancelled step is one still queued.
        queued = next((a for a in todo if isinstance(a, Start) and a.step_id == action.step_id), None)
        if queued is not None:
            todo.remove(queued)
            controller.on_unsent(queued.step_id, queued.attempt)

    take()
    while True:
        while todo:
            action = todo.popleft()
            if isinstance(action, Start):
                run_step(action.step_id, action.attempt)
                reason = should_stop()
                if reason is not None:
                    controller.interrupt(reason)
            take()
        if controller.final is not None:
            return
        due = controller.next_wake()
        if due is None:
            raise RuntimeError("the run is not finished but nothing is running or waiting")
        sleep(max(0.0, due - clock()))
        controller.wake()
        take()
