"""The serial driver: carries out the core's actions one step at a time, in this process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..core.state import Action, Start


class Drivable(Protocol):
    """What the serial driver needs of the controller (``plugin.controller.PlanController``)."""

    final: object | None

    def take_actions(self) -> list[Action]: ...

    def next_wake(self) -> float | None: ...

    def wake(self) -> None: ...

    def interrupt(self, reason: str) -> None: ...


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
    todo: deque[Action] = deque(controller.take_actions())
    while True:
        while todo:
            action = todo.popleft()
            if isinstance(action, Start):
                run_step(action.step_id, action.attempt)
                reason = should_stop()
                if reason is not None:
                    controller.interrupt(reason)
            # Cancel(running=True) needs nothing here: one step runs at a time and it has ended.
            todo.extend(controller.take_actions())
        if controller.final is not None:
            return
        due = controller.next_wake()
        if due is None:
            raise RuntimeError("the run is not finished but nothing is running or waiting")
        sleep(max(0.0, due - clock()))
        controller.wake()
        todo.extend(controller.take_actions())
